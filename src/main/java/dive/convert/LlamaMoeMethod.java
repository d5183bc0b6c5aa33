package dive.convert;

import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.TensorArena;
import dive.train.SplitMix64;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * LLaMA-MoE at DIVE's expert width (DIVE-METHOD.md section 6): experts made from FFN channels without regard to data,
 * routers, stages and export as DIVE's. Two splits:
 * <ul>
 * <li>{@link #random()} ({@code llama_moe_random}): expert e of layer l keeps an independent random subset of
 *     round(I·(1 − r)) channels ({@link #randomSubsets}; subsets of different experts may overlap);
 * <li>{@link #kmeans()} ({@code llama_moe_kmeans}): balanced k-means on the rows of each layer's W_gate
 *     ({@link #kmeansExperts}); expert e keeps the round(I·(1 − r)) channels nearest centroid e (overlapping).
 * </ul>
 * With bias compensation each expert gets the output bias of the channels it drops (channel means of all calibration
 * windows pooled, {@code dive_expert_bias}).
 */
public final class LlamaMoeMethod implements Method {
    /** how the channels of the experts are chosen */
    public enum Split { RANDOM, KMEANS }

    private final Split split;

    public LlamaMoeMethod(Split split) { this.split = split; }

    public static LlamaMoeMethod random() { return new LlamaMoeMethod(Split.RANDOM); }

    public static LlamaMoeMethod kmeans() { return new LlamaMoeMethod(Split.KMEANS); }

    @Override public String name() { return split == Split.RANDOM ? "llama_moe_random" : "llama_moe_kmeans"; }

    @Override public Family family() { return Family.MOE; }

    @Override
    public String variant(Context c) {
        int width = Pruning.keptWidth(c.denseConfig().intermediateSize(), c.request().ratio());
        return (split == Split.RANDOM
                ? "an independent seeded random subset of " + width + " channels per expert and layer (overlapping)"
                : "balanced k-means on the rows of W_gate per layer; expert e = the " + width + " channels nearest centroid e (overlapping)")
                + Method.outputScaleNote(c.recipe(), true);
    }

    @Override
    public void build(BuildContext b) throws Exception {
        Context c = b.context();
        DiveConversion.Request q = c.request();
        ConvertRecipe recipe = c.recipe();
        LlamaModel dense = b.dense();
        List<int[]> pooled = c.pooledCalibration();
        int width = Pruning.keptWidth(dense.config().intermediateSize(), q.ratio());
        int[][][] kept = keptChannels(dense, q.experts(), width, recipe.seed());
        ExpertReconstruction.Options options = new ExpertReconstruction.Options(q.experts(), q.topK(), q.ratio(), null,
                recipe.biasCompensation(), 0, recipe.seed(), recipe.routerInitStd(), recipe.seed(), recipe.auxLossCoef());
        List<CalibrationStatistics> biasStats = null;
        if (recipe.biasCompensation()) biasStats = Collections.nCopies(q.experts(), CalibrationStatistics.collect(dense, pooled));
        try (TensorArena arena = TensorArena.shared()) {  // the experts, freed once written
            ExpertReconstruction.Result built = ExpertReconstruction.fromKeptChannels(dense, kept, biasStats, options, arena);
            Pruning.writeKeptChannels(c.dir().resolve("kept_channels.json"), kept);
            b.writeExperts(built, Collections.nCopies(q.experts(), pooled));
        }
    }

    /** kept[e][l] of this split */
    public int[][][] keptChannels(LlamaModel dense, int experts, int width, long seed) {
        LlamaConfig c = dense.config();
        if (split == Split.RANDOM) return randomSubsets(c.intermediateSize(), width, experts, c.numHiddenLayers(), seed);
        int[][][] kept = new int[experts][c.numHiddenLayers()][];
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            int[][] perExpert = kmeansExperts(Pruning.denseBlock(dense, l).gate().toFloatArray(), c.intermediateSize(), c.hiddenSize(), experts, width, seed + l);
            for (int e = 0; e < experts; e++) kept[e][l] = perExpert[e];
        }
        return kept;
    }

    /**
     * LLaMA-MoE "random" at DIVE's expert width: for expert e and layer l, a partial Fisher–Yates shuffle of 0 … I−1
     * by {@link SplitMix64}(seed + e·L + l) (position i swapped with i + nextLong(I − i), i = 0 … width−1); the first
     * {@code width} positions, ascending. → kept[e][l] (width)
     */
    public static int[][][] randomSubsets(int intermediateSize, int width, int experts, int layers, long seed) {
        int[][][] kept = new int[experts][layers][];
        for (int e = 0; e < experts; e++)
            for (int l = 0; l < layers; l++) {
                int[] order = new int[intermediateSize];
                for (int i = 0; i < intermediateSize; i++) order[i] = i;
                SplitMix64 random = new SplitMix64(seed + (long) e * layers + l);
                for (int i = 0; i < width; i++) {
                    int j = i + (int) random.nextLong(intermediateSize - i);
                    int t = order[i]; order[i] = order[j]; order[j] = t;
                }
                int[] subset = Arrays.copyOf(order, width);
                Arrays.sort(subset);
                kept[e][l] = subset;
            }
        return kept;
    }

    /**
     * Balanced k-means on the rows of one W_gate (I, d), then per centroid the {@code width} nearest rows. Variant:
     * <ol>
     * <li>initial centroids: rows order[0 … E−1] of a Fisher–Yates permutation of 0 … I−1 by SplitMix64(seed);
     * <li>balanced assignment (capacity ⌈I/E⌉ per cluster): all (row, centroid) pairs by ascending squared distance
     *     (ties → lower row, then lower centroid), each row given to the first pair's centroid that still has room;
     * <li>centroids = means of their rows; repeat 2–3 until the assignment stops changing (at most 50 rounds);
     * <li>expert e = the {@code width} rows with the smallest squared distance to centroid e (ties → lower index),
     *     ascending; with width &gt; I/E the experts overlap.
     * </ol>
     * @param gate (I, d) row-major
     * @return kept[e] (width)
     */
    public static int[][] kmeansExperts(float[] gate, int intermediateSize, int hidden, int experts, int width, long seed) {
        if (experts > intermediateSize) throw new IllegalArgumentException(experts + " clusters of " + intermediateSize + " rows");
        int[] order = ExpertReconstruction.permutation(intermediateSize, seed);
        double[][] centroids = new double[experts][hidden];  // (E, d)
        for (int e = 0; e < experts; e++) for (int k = 0; k < hidden; k++) centroids[e][k] = gate[order[e] * hidden + k];
        int capacity = (intermediateSize + experts - 1) / experts;
        int[] cluster = new int[intermediateSize];
        Arrays.fill(cluster, -1);
        for (int round = 0; round < 50; round++) {
            double[][] dist = distances(gate, intermediateSize, hidden, centroids);
            Integer[] pairs = new Integer[intermediateSize * experts];  // pair p = row p / E, centroid p % E
            for (int p = 0; p < pairs.length; p++) pairs[p] = p;
            Arrays.sort(pairs, (a, b) -> {
                int c = Double.compare(dist[a / experts][a % experts], dist[b / experts][b % experts]);
                return c != 0 ? c : Integer.compare(a, b);
            });
            int[] next = new int[intermediateSize];
            Arrays.fill(next, -1);
            int[] size = new int[experts];
            for (int p : pairs) {
                int row = p / experts, e = p % experts;
                if (next[row] < 0 && size[e] < capacity) { next[row] = e; size[e]++; }
            }
            boolean same = Arrays.equals(next, cluster);
            cluster = next;
            if (same) break;
            for (int e = 0; e < experts; e++) {
                Arrays.fill(centroids[e], 0);
                for (int i = 0; i < intermediateSize; i++)
                    if (cluster[i] == e) for (int k = 0; k < hidden; k++) centroids[e][k] += gate[i * hidden + k];
                for (int k = 0; k < hidden; k++) centroids[e][k] /= size[e];
            }
        }
        double[][] dist = distances(gate, intermediateSize, hidden, centroids);
        int[][] kept = new int[experts][];
        for (int e = 0; e < experts; e++) {
            double[] closeness = new double[intermediateSize];
            for (int i = 0; i < intermediateSize; i++) closeness[i] = -dist[i][e];
            kept[e] = Pruning.topChannels(closeness, width);
        }
        return kept;
    }

    private static double[][] distances(float[] rows, int count, int hidden, double[][] centroids) {
        double[][] dist = new double[count][centroids.length];  // (I, E) squared Euclidean
        for (int i = 0; i < count; i++)
            for (int e = 0; e < centroids.length; e++) {
                double s = 0;
                for (int k = 0; k < hidden; k++) { double x = rows[i * hidden + k] - centroids[e][k]; s += x * x; }
                dist[i][e] = s;
            }
        return dist;
    }
}
