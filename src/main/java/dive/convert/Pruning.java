package dive.convert;

import dive.model.DenseFfn;
import dive.model.FeedForward;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;

import java.util.Arrays;

/**
 * Uniform structured FFN pruning (FLAP style, same ratio in every layer): keep the {@code keptWidth(F, r)}
 * highest-scoring channels, i.e. those rows of gate_proj and up_proj and those columns of down_proj; optionally
 * compensate the removed channels with an output bias b = W_down[:, removed] · mean_n(h_removed).
 */
public final class Pruning {
    private Pruning() {}

    /** writes {@code kept}[e][l] (a dense method: one "expert") as {"kept_channels": …} to {@code file}, atomically */
    static void writeKeptChannels(java.nio.file.Path file, int[][][] kept) throws java.io.IOException {
        dive.util.AtomicFiles.writeString(file, new com.fasterxml.jackson.databind.ObjectMapper()
                .writeValueAsString(java.util.Map.of("kept_channels", kept)) + "\n");
    }

    /** round(F·(1 − r)) (halves up): the channels kept of F at pruning ratio r; checks r ∈ (0, 1) and that it removes at least one channel and keeps at least one */
    public static int keptWidth(int width, double ratio) {
        if (!(ratio > 0 && ratio < 1)) throw new IllegalArgumentException("ratio " + ratio + ": expected a share of FFN channels to remove in (0, 1)");
        int kept = (int) Math.floor(width * (1 - ratio) + 0.5);
        if (kept < 1 || kept >= width)
            throw new IllegalArgumentException("ratio " + ratio + " removes " + (width - kept) + " of " + width
                    + " FFN channels: expected a ratio that removes at least one and keeps at least one");
        return kept;
    }

    /** the {@code kept} channels with the highest scores (ties → lower index), in ascending index order */
    public static int[] topChannels(double[] scores, int kept) {
        if (kept < 1 || kept > scores.length) throw new IllegalArgumentException("keeping " + kept + " of " + scores.length + " channels");
        for (int j = 0; j < scores.length; j++)
            if (Double.isNaN(scores[j])) throw new IllegalArgumentException("channel score " + j + " is NaN");
        Integer[] order = new Integer[scores.length];
        for (int j = 0; j < order.length; j++) order[j] = j;
        Arrays.sort(order, (a, b) -> scores[a] != scores[b] ? Double.compare(scores[b], scores[a]) : Integer.compare(a, b));
        int[] out = new int[kept];
        for (int i = 0; i < kept; i++) out[i] = order[i];
        Arrays.sort(out);
        return out;
    }

    /** kept channels per layer (L × keptWidth) for {@code score} at ratio r */
    public static int[][] keptChannels(LlamaModel dense, CalibrationStatistics stats, ChannelScore score, double ratio) {
        int layers = dense.config().numHiddenLayers();
        int[][] kept = new int[layers][];
        for (int l = 0; l < layers; l++) {
            DenseFfn ffn = denseBlock(dense, l);
            kept[l] = topChannels(score.score(l, stats.layers()[l], ffn.down()), keptWidth(ffn.intermediateSize(), ratio));
        }
        return kept;
    }

    /** b = W_down[:, removed] · mean_n(h_removed) → (d), removed = the channels not in {@code kept} (ascending) */
    public static float[] biasCompensation(Tensor down, int[] kept, double[] mean) {
        int d = down.rows(), width = down.cols();
        boolean[] keep = new boolean[width];
        for (int j : kept) keep[j] = true;
        float[] values = down.toFloatArray();
        float[] bias = new float[d];
        for (int i = 0; i < d; i++) {
            double sum = 0;
            for (int j = 0; j < width; j++) if (!keep[j]) sum += values[i * width + j] * mean[j];
            bias[i] = (float) sum;
        }
        return bias;
    }

    /**
     * the FFN of {@code dense} narrowed to {@code kept} channels: new read-only tensors in the dense weights' own dtype
     * (BF16 stays BF16: a pruned weight is a selection of the dense one's elements, copied bit for bit) in off-heap
     * memory freed when they are no longer reachable, plus an optional F32 bias (d)
     */
    public static DenseFfn prune(DenseFfn dense, int[] kept, float[] bias) { return prune(dense, kept, bias, TensorArena.auto()); }

    /** as {@link #prune(DenseFfn, int[], float[])}, the weights in memory owned by {@code arena} (a shared one: backends read from many threads) */
    public static DenseFfn prune(DenseFfn dense, int[] kept, float[] bias, TensorArena arena) {
        int width = dense.intermediateSize(), d = dense.down().rows();
        for (int i = 0; i < kept.length; i++)
            if (kept[i] < 0 || kept[i] >= width || (i > 0 && kept[i] <= kept[i - 1]))
                throw new IllegalArgumentException("kept channels must be ascending and in [0, " + width + "): " + Arrays.toString(kept));
        int k = kept.length;
        Tensor g = keptRows(dense.gate(), kept, d, arena), u = keptRows(dense.up(), kept, d, arena);
        Tensor down = dense.down();
        Tensor w = Tensor.allocate(down.name(), down.dtype(), new long[] {d, k}, arena);
        for (int i = 0; i < d; i++)
            for (int c = 0; c < k; c++)  // w[i, c] = down[i, kept[c]]
                w.copyFrom(down, (long) i * width + kept[c], (long) i * k + c, 1);
        Tensor biasTensor = null;
        if (bias != null) {
            if (bias.length != d) throw new IllegalArgumentException("bias of " + bias.length + " values for hidden size " + d);
            biasTensor = readOnly(dense.down().name().replace(".weight", ".bias"), bias, d);
        }
        return new DenseFfn(g, u, w.asReadOnly(), null, null, biasTensor);
    }

    /** rows {@code kept} of {@code w} (·, d), copied bit for bit into a new read-only tensor (kept.length, d) of w's dtype */
    private static Tensor keptRows(Tensor w, int[] kept, int d, TensorArena arena) {
        Tensor out = Tensor.allocate(w.name(), w.dtype(), new long[] {kept.length, d}, arena);
        for (int r = 0; r < kept.length; r++) out.copyFrom(w, (long) kept[r] * d, (long) r * d, d);
        return out.asReadOnly();
    }

    /**
     * A dense model whose every FFN keeps only {@code kept[l]} (equal widths); with {@code biases[l]} (d) added to
     * the FFN outputs when not null. Shares the dense model's other tensors: valid while {@code dense} is open.
     */
    public static LlamaModel prunedModel(LlamaModel dense, int[][] kept, float[][] biases, String source) {
        return prunedModel(dense, kept, biases, source, TensorArena.auto());
    }

    /** as above, the pruned weights in memory owned by {@code arena}: the model is valid while it and {@code dense} are open */
    public static LlamaModel prunedModel(LlamaModel dense, int[][] kept, float[][] biases, String source, TensorArena arena) {
        int layers = dense.config().numHiddenLayers();
        if (kept.length != layers) throw new IllegalArgumentException(kept.length + " channel masks for " + layers + " layers");
        FeedForward[] ffns = new FeedForward[layers];
        for (int l = 0; l < layers; l++) {
            if (kept[l].length != kept[0].length)
                throw new IllegalArgumentException("layer " + l + " keeps " + kept[l].length + " channels, layer 0 keeps " + kept[0].length + " (uniform pruning expected)");
            ffns[l] = prune(denseBlock(dense, l), kept[l], biases == null ? null : biases[l], arena);
        }
        return dense.withFeedForwards(withIntermediateSize(dense.config(), kept[0].length), ffns, source);
    }

    /** the whole pruning step for one calibration set: masks from {@code score}, optional bias compensation */
    public static LlamaModel prunedModel(LlamaModel dense, CalibrationStatistics stats, ChannelScore score, double ratio,
                                         boolean biasCompensation, String source) {
        return prunedModel(dense, stats, score, ratio, biasCompensation, source, TensorArena.auto());
    }

    /** as above, the pruned weights in memory owned by {@code arena} */
    public static LlamaModel prunedModel(LlamaModel dense, CalibrationStatistics stats, ChannelScore score, double ratio,
                                         boolean biasCompensation, String source, TensorArena arena) {
        int[][] kept = keptChannels(dense, stats, score, ratio);
        float[][] biases = null;
        if (biasCompensation) {
            biases = new float[kept.length][];
            for (int l = 0; l < kept.length; l++) biases[l] = biasCompensation(denseBlock(dense, l).down(), kept[l], stats.layers()[l].mean());
        }
        return prunedModel(dense, kept, biases, source, arena);
    }

    public static LlamaConfig withIntermediateSize(LlamaConfig c, int intermediateSize) {
        return c.withIntermediateSize(intermediateSize);
    }

    static DenseFfn denseBlock(LlamaModel model, int layer) {
        if (!(model.feedForward(layer) instanceof DenseFfn ffn))
            throw new IllegalArgumentException(model.source() + ": layer " + layer + " is not a dense FFN (pruning needs a llama model)");
        if (ffn.hasBias())
            throw new IllegalArgumentException(model.source() + ": layer " + layer + " has MLP biases (config.json mlp_bias: true); pruning and "
                    + "expert construction need a bias-free Llama MLP (expected mlp_bias false)");
        return ffn;
    }

    private static Tensor readOnly(String name, float[] values, long... shape) {
        return Tensor.ofFloats(name, values, shape).asReadOnly();
    }
}
