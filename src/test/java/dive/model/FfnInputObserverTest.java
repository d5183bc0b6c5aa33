package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.backend.TestBackends;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** {@link RoutingObserver#onFfnInput}: every layer's FFN input x, checked against a forward written out by hand here. */
class FfnInputObserverTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");

    @Test
    void theObservedFfnInputIsThePostAttentionRmsNormOutput() throws Exception {
        int[][] ids = {{5, 17, 250, 3, 99, 42, 7}, {11, 300, 2}};
        try (LlamaModel model = LlamaModel.load(MODEL, TestBackends.backend())) {
            LlamaConfig c = model.config();
            int d = c.hiddenSize(), layers = c.numHiddenLayers(), rows = ids[0].length + ids[1].length;
            List<List<float[]>> inputs = new ArrayList<>(), intermediates = new ArrayList<>();
            for (int l = 0; l < layers; l++) { inputs.add(new ArrayList<>()); intermediates.add(new ArrayList<>()); }
            RoutingObserver observer = new RoutingObserver() {
                @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
                @Override public void onDenseIntermediate(int layer, int tokens, int width, float[] h) {
                    intermediates.get(layer).add(java.util.Arrays.copyOf(h, tokens * width));
                }
                @Override public void onFfnInput(Backend b, int layer, int tokens, int hidden, DeviceTensor x) {
                    assertEquals(d, hidden);
                    float[] host = new float[tokens * hidden];
                    b.read(x, 0, host, host.length);
                    inputs.get(layer).add(host);
                }
            };
            KVCache[] caches = {model.newCache(ids[0].length), model.newCache(ids[1].length)};
            try {
                model.observe(ids, caches, observer);
            } finally {
                for (KVCache k : caches) k.close();
            }
            Map<String, Tensor> w = model.namedWeights();
            for (int l = 0; l < layers; l++) {
                assertEquals(1, inputs.get(l).size(), "one call per layer and forward");
                assertEquals(rows * d, inputs.get(l).getFirst().length);
            }

            // by hand, the first token of each sequence (attention over one key is its value, so no rope or softmax):
            // r = embedding; per layer r += W_o·heads(W_v·rmsNorm(r, input_layernorm)); x = rmsNorm(r, post_attention_layernorm);
            // r += W_down·(SiLU(W_gate·x) ⊙ W_up·x)
            int heads = c.numAttentionHeads(), kvHeads = c.numKeyValueHeads(), hd = c.headDim();
            for (int s = 0; s < 2; s++) {
                int row = s == 0 ? 0 : ids[0].length;
                double[] r = new double[d];
                for (int i = 0; i < d; i++) r[i] = w.get("model.embed_tokens.weight").getFloat((long) ids[s][0] * d + i);
                for (int l = 0; l < layers; l++) {
                    String p = "model.layers." + l + ".";
                    double[] v = matVec(w.get(p + "self_attn.v_proj.weight"), rmsNorm(r, w.get(p + "input_layernorm.weight"), c.rmsNormEps()));
                    double[] o = new double[heads * hd];
                    for (int h = 0; h < heads; h++) System.arraycopy(v, h / (heads / kvHeads) * hd, o, h * hd, hd);
                    double[] attn = matVec(w.get(p + "self_attn.o_proj.weight"), o);
                    for (int i = 0; i < d; i++) r[i] += attn[i];
                    double[] x = rmsNorm(r, w.get(p + "post_attention_layernorm.weight"), c.rmsNormEps());
                    float[] seen = inputs.get(l).getFirst();
                    for (int i = 0; i < d; i++) assertEquals(x[i], seen[row * d + i], 1e-4 * (1 + Math.abs(x[i])), "layer " + l + " sequence " + s + " x[" + i + "]");
                    double[] g = matVec(w.get(p + "mlp.gate_proj.weight"), x), u = matVec(w.get(p + "mlp.up_proj.weight"), x);
                    double[] h = new double[g.length];
                    for (int j = 0; j < g.length; j++) h[j] = g[j] / (1 + Math.exp(-g[j])) * u[j];
                    double[] down = matVec(w.get(p + "mlp.down_proj.weight"), h);
                    for (int i = 0; i < d; i++) r[i] += down[i];
                }
            }

            // every row: the FFN the model ran on x is SiLU(W_gate·x) ⊙ W_up·x of the observed x (the dense hook's h)
            for (int l = 0; l < layers; l++) {
                String p = "model.layers." + l + ".";
                Tensor gate = w.get(p + "mlp.gate_proj.weight"), up = w.get(p + "mlp.up_proj.weight");
                int width = gate.rows();
                float[] xs = inputs.get(l).getFirst(), hs = intermediates.get(l).getFirst();
                for (int n = 0; n < rows; n++) {
                    double[] x = new double[d];
                    for (int i = 0; i < d; i++) x[i] = xs[n * d + i];
                    double[] g = matVec(gate, x), u = matVec(up, x);
                    for (int j = 0; j < width; j++) {
                        double h = g[j] / (1 + Math.exp(-g[j])) * u[j];
                        assertEquals(h, hs[n * width + j], 1e-4 * (1 + Math.abs(h)), "layer " + l + " row " + n + " h[" + j + "]");
                    }
                }
            }
        }
    }

    /** W (rows, cols) · v in double */
    private static double[] matVec(Tensor w, double[] v) {
        int rows = w.rows(), cols = w.cols();
        double[] out = new double[rows];
        for (int r = 0; r < rows; r++) for (int i = 0; i < cols; i++) out[r] += w.getFloat((long) r * cols + i) * v[i];
        return out;
    }

    /** γ ⊙ r / sqrt(mean(r²) + eps) */
    private static double[] rmsNorm(double[] r, Tensor gamma, double eps) {
        double ms = 0;
        for (double v : r) ms += v * v;
        double scale = 1 / Math.sqrt(ms / r.length + eps);
        double[] out = new double[r.length];
        for (int i = 0; i < r.length; i++) out[i] = gamma.getFloat(i) * r[i] * scale;
        return out;
    }
}
