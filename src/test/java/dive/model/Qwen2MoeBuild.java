package dive.model;

import dive.tensor.Tensor;
import dive.tensor.TensorArena;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/**
 * Test helper: a Qwen2-MoE (config and weights under transformers' names) built from a dense Llama with
 * {@link SharedExpertMoeFfn#fromChannels}: per layer the shared expert keeps {@code shared} channels, each of
 * {@code experts} routed experts a random set of {@code expertWidth} channels, the router is random (std 0.5).
 */
final class Qwen2MoeBuild {
    private Qwen2MoeBuild() {}

    record Built(LlamaConfig config, Map<String, Tensor> weights) {}

    /**
     * @param zeroExpertDown the routed experts' down projections all zero (they add nothing)
     * @param randomGate     a random shared_expert_gate (std 0.5) instead of the ungated-exact zero gate
     */
    static Built fromDense(LlamaModel dense, int shared, int experts, int expertWidth, int topK, boolean zeroExpertDown,
                           boolean randomGate, long seed, TensorArena arena) {
        LlamaConfig c = dense.config();
        int f = c.intermediateSize(), d = c.hiddenSize();
        Random random = new Random(seed);
        Map<String, Tensor> weights = new LinkedHashMap<>();
        dense.namedWeights().forEach((name, t) -> { if (!name.contains(".mlp.")) weights.put(name, t); });
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            String p = "model.layers." + l + ".";
            int[] sharedChannels = new int[shared];
            for (int i = 0; i < shared; i++) sharedChannels[i] = i;
            int[][] expertChannels = new int[experts][];
            for (int e = 0; e < experts; e++)
                expertChannels[e] = random.ints(0, f).distinct().limit(expertWidth).sorted().toArray();
            Tensor router = gaussian(p + "mlp.gate.weight", random, 0.5f, experts, d);
            SharedExpertMoeFfn ffn = SharedExpertMoeFfn.fromChannels((DenseFfn) dense.feedForward(l), sharedChannels, expertChannels,
                    router, topK, p, arena);
            Map<String, Tensor> block = new LinkedHashMap<>();
            ffn.collectWeights(p, block);
            if (zeroExpertDown)
                for (int e = 0; e < experts; e++) {
                    String n = p + "mlp.experts." + e + ".down_proj.weight";
                    block.put(n, Tensor.allocate(n, block.get(n).dtype(), block.get(n).shape(), arena));
                }
            if (randomGate) block.put(p + "mlp.shared_expert_gate.weight", gaussian(p + "mlp.shared_expert_gate.weight", random, 0.5f, 1, d));
            weights.putAll(block);
        }
        return new Built(c.toQwen2Moe(expertWidth, shared, experts, topK), weights);
    }

    static Tensor gaussian(String name, Random random, float std, int rows, int cols) {
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) v[i] = (float) random.nextGaussian() * std;
        return Tensor.ofFloats(name, v, rows, cols);
    }
}
