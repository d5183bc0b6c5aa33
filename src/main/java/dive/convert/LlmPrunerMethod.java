package dive.convert;

import dive.model.LlamaModel;

import java.util.List;

/**
 * LLM-Pruner (DIVE-METHOD.md section 6): the dense model pruned to the active width by first-order Taylor importance
 * ({@link TaylorScore}) on the pooled calibration windows, then LoRA recovery.
 */
public final class LlmPrunerMethod extends DensePruningMethod {
    public static final String NAME = "llm_pruner";

    @Override public String name() { return NAME; }

    @Override ChannelScore score(LlamaModel dense, List<int[]> pooled) { return TaylorScore.compute(dense, pooled); }

    @Override boolean needsStatistics() { return false; }

    @Override String scoreName() { return "first-order Taylor"; }
}
