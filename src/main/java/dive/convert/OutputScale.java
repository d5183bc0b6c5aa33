package dive.convert;

import dive.backend.Backend;
import dive.backend.DeviceScope;
import dive.backend.DeviceTensor;
import dive.model.DenseFfn;
import dive.model.LlamaModel;
import dive.model.RoutingObserver;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * An option of this engine beyond DIVE's spec (recipe {@code output_scale: true}; off by default): every pruned FFN —
 * each DIVE expert (fitted on the windows it was pruned with), and for the baselines FLAP, LLM-Pruner and the LLaMA-MoE
 * experts (fitted on the pooled calibration windows of all datasets) — has its output multiplied by the least-squares
 * scale that best matches the dense FFN, folded into {@code w2} / {@code down_proj} (and its bias), so the exports stay
 * plain Mixtral / Llama checkpoints.
 *
 * <p>Why (docs/routing-investigation.md, "Top-2"): a pruned FFN computes a partial sum of the dense one, and with
 * top-2 the routing weights sum to 1, so a token's FFN output is the average of two different partial sums — too small,
 * and retraining at a small budget cannot restore the scale. For layer l and an expert keeping the channels S:
 * <pre>
 *   y_t = W_down h_t                      (the dense FFN's output for token t; h_t its SwiGLU activation)
 *   ŷ_t = W_down[:, S] h_t[S] + b         (the expert's, b its bias-compensation vector or 0)
 *   c_l = Σ_t ⟨y_t, ŷ_t⟩ / Σ_t ‖ŷ_t‖²      (argmin_c Σ_t ‖y_t − c ŷ_t‖²)
 * </pre>
 * over every token of the windows, with the dense model's own activations feeding every layer.
 */
public final class OutputScale {
    private OutputScale() {}

    /**
     * Per layer the scale c_l of the expert ({@code down[l]} = its (d, |S|) down projection over the kept channels
     * {@code kept[l]}, {@code bias[l]} its (d) bias or null) against the dense FFN of {@code dense}, over {@code windows}.
     */
    public static double[] fit(LlamaModel dense, List<int[]> windows, int[][] kept, Tensor[] down, float[][] bias) {
        int layers = dense.config().numHiddenLayers(), d = dense.config().hiddenSize();
        if (kept.length != layers || down.length != layers) throw new IllegalArgumentException(kept.length + " channel sets for " + layers + " layers");
        if (windows.isEmpty()) throw new IllegalArgumentException("no calibration windows to fit the expert output scale on");
        Backend backend = dense.backend();
        Tensor[] denseDown = new Tensor[layers];
        for (int l = 0; l < layers; l++) denseDown[l] = Pruning.denseBlock(dense, l).down();
        double[] dot = new double[layers], norm = new double[layers];
        DeviceTensor[] keptOnDevice = new DeviceTensor[layers];
        for (int l = 0; l < layers; l++) keptOnDevice[l] = backend.upload(kept[l]);
        RoutingObserver observer = new RoutingObserver() {
            @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
            @Override public void onDenseIntermediate(Backend b, int layer, int tokens, int width, DeviceTensor h) {
                int[] s = kept[layer];
                try (DeviceScope scope = new DeviceScope(b)) {
                    DeviceTensor hs = scope.floats((long) tokens * s.length), yT = scope.floats((long) tokens * d),
                            yHatT = scope.floats((long) tokens * d);
                    b.gatherColumns(hs, h, keptOnDevice[layer], tokens, width, s.length);
                    b.matmul(yT, h, tokens, denseDown[layer]);
                    b.matmul(yHatT, hs, tokens, down[layer]);
                    // statistics out: both projections come to the host for the two double sums
                    float[] y = new float[tokens * d], yHat = new float[tokens * d];
                    b.read(yT, 0, y, y.length);
                    b.read(yHatT, 0, yHat, yHat.length);
                    float[] bs = bias == null ? null : bias[layer];
                    for (int t = 0; t < tokens; t++)
                        for (int i = 0; i < d; i++) {
                            double e = yHat[t * d + i] + (bs == null ? 0 : bs[i]);
                            dot[layer] += y[t * d + i] * e;
                            norm[layer] += e * e;
                        }
                }
            }
        };
        try {
            CalibrationStatistics.observe(dense, windows, observer, done -> {});
        } finally {
            for (DeviceTensor t : keptOnDevice) t.close();
        }
        double[] scale = new double[layers];
        for (int l = 0; l < layers; l++) {
            scale[l] = dot[l] / norm[l];
            if (!Double.isFinite(scale[l]) || !(scale[l] > 0))
                throw new IllegalStateException("layer " + l + ": expert output scale " + scale[l] + " (⟨y, ŷ⟩ = " + dot[l] + ", ‖ŷ‖² = " + norm[l]
                        + "): the expert's output does not point along the dense FFN's on its calibration windows");
        }
        return scale;
    }

    /**
     * {@code built} with expert e's {@code w2} (and bias) of layer l multiplied by c, fitted by {@link #fit} on
     * {@code groupWindows.get(e)} (the windows expert e was pruned with); returns the new result and, in {@code scales}
     * (E × layers), the scales.
     */
    public static ExpertReconstruction.Result apply(LlamaModel dense, ExpertReconstruction.Result built, List<List<int[]>> groupWindows, double[][] scales) {
        int experts = built.keptChannels().length, layers = dense.config().numHiddenLayers();
        if (groupWindows.size() != experts) throw new IllegalArgumentException(groupWindows.size() + " window sets for " + experts + " experts");
        Map<String, Tensor> weights = new LinkedHashMap<>(built.weights());
        for (int e = 0; e < experts; e++) {
            Tensor[] down = new Tensor[layers];
            float[][] bias = new float[layers][];
            for (int l = 0; l < layers; l++) {
                String p = "model.layers." + l + ".block_sparse_moe.experts." + e + ".";
                down[l] = weights.get(p + "w2.weight");
                Tensor b = weights.get(p + "bias");
                bias[l] = b == null ? null : b.toFloatArray();
            }
            scales[e] = fit(dense, groupWindows.get(e), built.keptChannels()[e], down, bias);
            for (int l = 0; l < layers; l++) {
                String p = "model.layers." + l + ".block_sparse_moe.experts." + e + ".";
                weights.put(p + "w2.weight", scaled(down[l], scales[e][l]));
                if (bias[l] != null) weights.put(p + "bias", scaled(weights.get(p + "bias"), scales[e][l]));
            }
        }
        return new ExpertReconstruction.Result(built.config(), weights, built.keptChannels(), built.expertWidth());
    }

    /** {@link #fit} of {@code pruned[l]}, the dense FFN narrowed to {@code kept[l]} (with its down bias, if any): the dense baselines' scales */
    public static double[] fit(LlamaModel dense, List<int[]> windows, int[][] kept, DenseFfn[] pruned) {
        Tensor[] down = new Tensor[pruned.length];
        float[][] bias = new float[pruned.length][];
        for (int l = 0; l < pruned.length; l++) {
            down[l] = pruned[l].down();
            bias[l] = pruned[l].downBias() == null ? null : pruned[l].downBias().toFloatArray();
        }
        return fit(dense, windows, kept, down, bias);
    }

    /** the file a run records its scales in: {"scale_of_expert_and_layer": [[c, ...], ...]} (a dense baseline: one row) */
    public static final String FILE = "output_scales.json";

    static void write(java.nio.file.Path dir, double[][] scales) throws java.io.IOException {
        dive.util.AtomicFiles.writeString(dir.resolve(FILE), new com.fasterxml.jackson.databind.ObjectMapper()
                .writeValueAsString(java.util.Map.of("scale_of_expert_and_layer", scales)) + "\n");
    }

    /** a new read-only tensor: {@code t} × c, same name, shape and dtype (off-heap; a BF16 weight stays BF16) */
    static Tensor scaled(Tensor t, double c) {
        Tensor out = Tensor.allocate(t.name(), t.dtype(), t.shape(), TensorArena.auto());
        for (long i = 0, n = t.numel(); i < n; i++) out.setFloat(i, (float) (t.getFloat(i) * c));
        return out.asReadOnly();
    }
}
