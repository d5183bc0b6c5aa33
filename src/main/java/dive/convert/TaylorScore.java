package dive.convert;

import dive.model.LlamaModel;
import dive.tensor.Tensor;
import dive.train.Parameter;
import dive.train.TrainableLlama;

import java.util.List;

/**
 * LLM-Pruner's first-order Taylor importance of each coupled FFN channel j (gate row j, up row j, down column j):
 * <pre>
 * I_j = | Σ_k gate[j,k]·∂L/∂gate[j,k] + Σ_k up[j,k]·∂L/∂up[j,k] + Σ_i down[i,j]·∂L/∂down[i,j] |
 * </pre>
 * L = the mean causal-LM cross-entropy over all calibration windows (every window's last token is only a target).
 * Gradients come from a {@link TrainableLlama} over the dense model's weights (FFN weights trainable, F32 gradients), accumulated over batches of windows
 * (each batch's gradient scaled by its share of the windows, so the sum is the gradient of the overall mean).
 * Ignores the activation statistics it is given.
 */
public final class TaylorScore implements ChannelScore {
    private final double[][] importance;  // (L, F)

    private TaylorScore(double[][] importance) { this.importance = importance; }

    /** importance from {@code windows} (each of the same length ≥ 2) through a trainable copy of {@code dense} */
    public static TaylorScore compute(LlamaModel dense, List<int[]> windows) {
        if (windows.isEmpty()) throw new IllegalArgumentException("Taylor importance: no calibration windows");
        var weights = dense.namedWeights();
        try (TrainableLlama model = TrainableLlama.copyOf(dense.config(), weights::get, dense.source(), dense.backend())) {
            return new TaylorScore(importance(dense, model, windows));
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static double[][] importance(LlamaModel dense, TrainableLlama model, List<int[]> windows) {
        // only the FFN weights need gradients: the rest stays frozen (no gradient memory; the dense weights are read in place)
        for (Parameter p : model.parameters()) p.setTrainable(p.name().contains(".mlp."));
        List<List<int[]>> batches = CalibrationStatistics.batches(windows, batchTokens(dense.config()));
        for (List<int[]> batch : batches)
            model.lossAndGradients(batch.toArray(int[][]::new), (float) batch.size() / windows.size());
        int layers = dense.config().numHiddenLayers();
        double[][] importance = new double[layers][];
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".mlp.";
            Parameter gate = model.parameter(p + "gate_proj.weight"), up = model.parameter(p + "up_proj.weight"), down = model.parameter(p + "down_proj.weight");
            int ffn = gate.value().rows(), d = gate.value().cols();
            float[] gw = gate.value().toFloatArray(), uw = up.value().toFloatArray(), dw = down.value().toFloatArray();
            float[] gg = gate.gradValues(), ug = up.gradValues(), dg = down.gradValues();  // statistics out, once per layer
            double[] sum = new double[ffn];
            for (int j = 0; j < ffn; j++)
                for (int k = 0; k < d; k++) sum[j] += (double) gw[j * d + k] * gg[j * d + k] + (double) uw[j * d + k] * ug[j * d + k];
            for (int i = 0; i < d; i++)
                for (int j = 0; j < ffn; j++) sum[j] += (double) dw[i * ffn + j] * dg[i * ffn + j];
            for (int j = 0; j < ffn; j++) sum[j] = Math.abs(sum[j]);
            importance[l] = sum;
        }
        return importance;
    }

    /** the activations one training forward keeps are kept below this many bytes by batching fewer windows */
    public static final long ACTIVATION_BUDGET_BYTES = 1_000_000_000L;

    /**
     * tokens per gradient batch: {@link CalibrationStatistics#TOKENS_PER_BATCH}, or fewer where a batch's kept
     * activations (every layer's, F32, plus the logits and their gradient) would exceed {@link #ACTIVATION_BUDGET_BYTES}
     * (a 1.1B model: about 350 tokens); at least one window per batch
     */
    public static int batchTokens(dive.model.LlamaConfig c) {
        return (int) Math.max(1, Math.min(CalibrationStatistics.TOKENS_PER_BATCH, ACTIVATION_BUDGET_BYTES / bytesPerToken(c)));
    }

    /** F32 bytes a training forward keeps per token: per layer the residual, norms, q/k/v/attention and the FFN's three products, plus logits and their gradient */
    public static long bytesPerToken(dive.model.LlamaConfig c) {
        long perLayer = 4L * c.hiddenSize() + 2L * c.queryDim() + 2L * c.kvDim() + 3L * c.intermediateSize();
        return 4 * (perLayer * (c.numHiddenLayers() + 1) + 2L * c.vocabSize());
    }

    @Override public String name() { return "taylor"; }

    @Override public double[] score(int layer, ChannelStatistics stats, Tensor down) {
        if (layer < 0 || layer >= importance.length) throw new IllegalArgumentException("Taylor importance has " + importance.length + " layers, asked for layer " + layer);
        return importance[layer].clone();
    }

    @Override public String toString() { return "taylor"; }
}
