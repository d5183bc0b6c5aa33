package dive.convert;

import dive.model.LlamaModel;

import java.util.List;
import java.util.function.IntConsumer;

/**
 * Perplexity of several groups of windows (e.g. one group per dataset) with every window of every group batched
 * through the same forwards. Each window is scored from an empty context with labels = its ids (its first token is
 * not predicted), as {@link dive.model.Perplexity} does; a group's perplexity = exp(Σ NLL / predicted tokens). The NLL
 * of a window comes from the backend's (vectorised) cross-entropy. The perplexity half of {@link HeldOutEvaluation}.
 */
public final class WindowPerplexity {
    private WindowPerplexity() {}

    /** perplexity per group (G), windows of about {@link CalibrationStatistics#TOKENS_PER_BATCH} tokens a forward */
    public static double[] perGroup(LlamaModel model, List<List<int[]>> groups, IntConsumer windowsDone) {
        return HeldOutEvaluation.run(model, groups, windowsDone).perplexity();
    }

}
