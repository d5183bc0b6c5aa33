package dive.convert;

/**
 * DIVE with a shared expert ({@code dive_shared}): how one layer's FFN channels are split into an always-active shared
 * expert and one routed expert per affinity group, at the active width of the plain DIVE setting it is compared with.
 *
 * <p><b>Widths.</b> The plain setting (E experts, top-k, ratio r) activates A = k·round(I·(1 − r)) channels per token.
 * dive_shared keeps A: a shared expert of S = round(A·s) channels (s = the recipe's {@code shared_share}, default 0.5)
 * and E routed experts of R = (A − S)/k channels each, top-k of them per token (A − S must divide by k; the split is
 * refused otherwise). The paper's settings on I = 1024: top-1, r = 0.5 → A = 512, S = 256, R = 256; top-2, r = 0.75 →
 * A = 512, S = 256, R = 128. Total FFN channels per layer: S + E·R (2304 and 1280 against plain DIVE's 4096 and 2048).
 *
 * <p><b>Which channels.</b> The shared expert holds the S channels with the highest score on every group's calibration
 * windows pooled (the statistics of all groups merged; the recipe's score, WIFV by default) — the channels every
 * domain needs, which every group's own pruning tends to keep. Routed expert g holds the R channels with the highest
 * score on group g's own windows among the channels not shared: what is specific to its domains. Ties go to the lower
 * index (as {@link Pruning#topChannels}); routed experts may overlap each other, never the shared expert.
 */
public final class SharedExpertSplit {
    private SharedExpertSplit() {}

    /** the active width A, the shared width S and the routed experts' width R (all in FFN channels) */
    public record Widths(int active, int shared, int routed) {}

    /** one layer's split: the shared channels and each routed expert's channels, ascending */
    public record Split(int[] shared, int[][] routed) {}

    /**
     * The widths for FFN width {@code intermediate} at the plain setting (experts, topK, ratio), with the share
     * {@code sharedShare} ∈ (0, 1) of the active width in the shared expert.
     */
    public static Widths widths(int intermediate, int experts, int topK, double ratio, double sharedShare) {
        if (!(sharedShare > 0 && sharedShare < 1))
            throw new IllegalArgumentException("shared_share " + sharedShare + ": expected the share of the active width in the shared expert, in (0, 1)");
        int active = topK * Pruning.keptWidth(intermediate, ratio);
        int shared = (int) Math.floor(active * sharedShare + 0.5);
        if (shared < 1 || shared >= active)
            throw new IllegalArgumentException("shared_share " + sharedShare + " gives a shared expert of " + shared + " of the " + active
                    + " active channels: expected at least one shared and one routed channel");
        if ((active - shared) % topK != 0)
            throw new IllegalArgumentException("shared_share " + sharedShare + ": the " + (active - shared) + " routed active channels ("
                    + active + " active − " + shared + " shared) do not split into top_k " + topK + " equal experts; choose a share that does");
        int routed = (active - shared) / topK;
        if (shared + routed > intermediate)
            throw new IllegalArgumentException("shared_share " + sharedShare + ": a shared expert of " + shared + " and routed experts of "
                    + routed + " channels exceed the FFN's " + intermediate);
        return new Widths(active, shared, routed);
    }

    /**
     * Splits one layer: {@code pooledScore} (I) scores the channels on all groups' windows pooled, {@code groupScores}[g]
     * (I) on group g's windows.
     */
    public static Split split(double[] pooledScore, double[][] groupScores, Widths w) {
        int[] shared = Pruning.topChannels(pooledScore, w.shared());
        int[][] routed = new int[groupScores.length][];
        for (int g = 0; g < groupScores.length; g++) {
            if (groupScores[g].length != pooledScore.length)
                throw new IllegalArgumentException("group " + g + " scores " + groupScores[g].length + " channels, the pooled score " + pooledScore.length);
            double[] masked = groupScores[g].clone();
            for (int j : shared) masked[j] = Double.NEGATIVE_INFINITY;
            routed[g] = Pruning.topChannels(masked, w.routed());
        }
        return new Split(shared, routed);
    }
}
