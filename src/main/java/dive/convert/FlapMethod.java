package dive.convert;

import dive.model.LlamaModel;

import java.util.List;

/** FLAP (DIVE-METHOD.md section 6): the dense model pruned to the active width by WIFV on the pooled calibration windows. */
public final class FlapMethod extends DensePruningMethod {
    public static final String NAME = "flap";

    @Override public String name() { return NAME; }

    @Override ChannelScore score(LlamaModel dense, List<int[]> pooled) { return ChannelScore.parse("wifv", "flap score"); }

    @Override boolean needsStatistics() { return true; }

    @Override String scoreName() { return "WIFV"; }
}
