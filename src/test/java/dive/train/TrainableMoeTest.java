package dive.train;

import dive.backend.DeviceScope;
import dive.backend.DeviceTensor;
import dive.backend.Backend;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.io.Checkpoint;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * MoE {@link TrainableLlama}: forward against the inference engine's {@link LlamaModel} (itself checked against
 * transformers' MixtralForCausalLM) with and without expert biases, Mixtral export read back, soft routing (a hand
 * example with E = 2, and the small-temperature limit = top-1), LoRA on the experts, the stage parameter sets, and a
 * few AdamW steps that lower the loss.
 */
class TrainableMoeTest {
    static final Path K2 = Path.of("src/test/resources/mixtral/k2_i40"), K1 = Path.of("src/test/resources/mixtral/k1");
    static final int[] IDS = {5, 17, 99, 3, 64, 127, 0, 42, 8, 77, 21, 13};
    @TempDir Path tmp;

    static void assertClose(float[] expected, float[] actual, double tol, String what) {
        assertEquals(expected.length, actual.length, what);
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(expected[i] - actual[i]));
            maxRef = Math.max(maxRef, Math.abs(expected[i]));
        }
        assertTrue(maxDiff <= tol * maxRef, what + ": max diff " + maxDiff + " vs max " + maxRef);
    }

    static int[][] batch(int seed, int b, int t, int vocab) {
        Random r = new Random(seed);
        int[][] batch = new int[b][t + 1];
        for (int[] row : batch) for (int i = 0; i < row.length; i++) row[i] = r.nextInt(vocab);
        return batch;
    }

    @Test
    void forwardMatchesTheInferenceEngineAndTheExportReadsBack() throws Exception {
        for (Backend backend : new Backend[] {new ScalarBackend(), new VectorBackend(2)}) {
            TrainableLlama model = TrainableLlama.fromCheckpoint(K2, backend);
            float[] ours = model.logits(IDS);
            try (LlamaModel engine = LlamaModel.load(K2, backend)) {
                assertClose(engine.logits(IDS), ours, 1e-5, "logits vs LlamaModel on " + backend.name());
            }
            Path out = tmp.resolve("export-" + backend.name().charAt(0));
            model.saveCheckpoint(out, null, DType.F32);
            assertTrue(Files.readString(out.resolve("config.json")).contains("MixtralForCausalLM"));
            try (LlamaModel back = LlamaModel.load(out, backend)) {
                assertTrue(back.isMoe());
                assertClose(ours, back.logits(IDS), 1e-6, "exported F32 model");
            }
        }
    }

    /** biased experts (DIVE's bias compensation): forward equals the engine's MoeFfn with biases; exported as dive_expert_bias */
    @Test
    void expertBiasesInForwardAndExport() throws Exception {
        LlamaConfig base = LlamaConfig.load(K2);
        LlamaConfig.Moe m = base.moe();
        LlamaConfig biased = base.toMixtral(base.intermediateSize(), new LlamaConfig.Moe(m.numLocalExperts(), m.numExpertsPerTok(),
                m.routerAuxLossCoef(), false, true));
        Map<String, Tensor> weights = new HashMap<>();
        Random r = new Random(5);
        try (Checkpoint ck = Checkpoint.open(K2)) {
            for (String name : ck.names()) weights.put(name, ck.tensor(name));
            for (int l = 0; l < base.numHiddenLayers(); l++)
                for (int e = 0; e < m.numLocalExperts(); e++) {
                    float[] b = new float[base.hiddenSize()];
                    for (int i = 0; i < b.length; i++) b[i] = (float) r.nextGaussian() * 0.3f;
                    String n = "model.layers." + l + ".block_sparse_moe.experts." + e + ".bias";
                    weights.put(n, Tensor.ofFloats(n, b, b.length));
                }
            Backend backend = new VectorBackend(2);
            TrainableLlama model = TrainableLlama.copyOf(biased, weights::get, "test", backend);
            assertNotNull(model.parameter("model.layers.1.block_sparse_moe.experts.3.bias"));
            float[] ours = model.logits(IDS);
            try (LlamaModel engine = LlamaModel.fromWeights(biased, weights::get, "test", backend, null)) {
                assertClose(engine.logits(IDS), ours, 1e-5, "biased logits vs LlamaModel");
            }
            float[] unbiased = TrainableLlama.fromCheckpoint(K2, backend).logits(IDS);
            double diff = 0;
            for (int i = 0; i < ours.length; i++) diff = Math.max(diff, Math.abs(ours[i] - unbiased[i]));
            assertTrue(diff > 1e-2, "the biases change the logits");
            Path out = tmp.resolve("biased");
            model.saveCheckpoint(out, null, DType.F32);
            assertTrue(Files.readString(out.resolve("config.json")).contains("\"dive_expert_bias\" : true"));
            try (LlamaModel back = LlamaModel.load(out, backend)) {
                assertClose(ours, back.logits(IDS), 1e-6, "exported biased model");
            }
        }
    }

    /** E = 2, d = 2, I = 1 worked by hand: soft weights softmax(z / t), top-1 weight 1 */
    @Test
    void softRoutingHandExample() {
        TensorArena arena = TensorArena.auto();
        Backend b = new ScalarBackend();
        Parameter router = Parameter.copyOf("router", Tensor.ofFloats("router", new float[] {1, 0, 0, 1}, 2, 2), arena);
        TrainableLlama.Linear[] w1 = {linear(b, "w1", new float[] {2, 0}, 1, 2, arena), linear(b, "w1", new float[] {0, 1}, 1, 2, arena)};
        TrainableLlama.Linear[] w3 = {linear(b, "w3", new float[] {2, 0}, 1, 2, arena), linear(b, "w3", new float[] {0, 1}, 1, 2, arena)};
        TrainableLlama.Linear[] w2 = {linear(b, "w2", new float[] {1, 0}, 2, 1, arena), linear(b, "w2", new float[] {0, 1}, 2, 1, arena)};
        Parameter[] bias = {Parameter.copyOf("b0", Tensor.ofFloats("b0", new float[] {0, 0}, 2), arena),
                Parameter.copyOf("b1", Tensor.ofFloats("b1", new float[] {0, 3}, 2), arena)};
        MoeBlock block = new MoeBlock(b, "moe", router, w1, w3, w2, bias, 1);
        DeviceScope scope = new DeviceScope(b);
        DeviceTensor x = scope.upload(new float[] {0.5f, 0f}), yT = scope.floats(2), counts = scope.ints(2);
        // z = (0.5, 0); expert 0: a = b = 2·0.5 = 1, h = silu(1)·1 = 1/(1 + e^-1), out = (h, 0); expert 1: a = 0, h = 0, out = bias = (0, 3)
        double h0 = 1 / (1 + Math.exp(-1));
        block.forward(yT, x, 1, RoutingMode.soft(0.5), null, counts, 0, scope); // softmax((0.5, 0)/0.5) = (e, 1)/(e + 1)
        float[] y = b.download(yT);
        double g0 = Math.E / (Math.E + 1), g1 = 1 / (Math.E + 1);
        assertEquals(g0 * h0, y[0], 1e-6);
        assertEquals(g1 * 3, y[1], 1e-6);
        block.forward(yT, x, 1, RoutingMode.TOP_K, null, counts, 0, scope);      // top-1: expert 0 alone, weight 1
        y = b.download(yT);
        assertEquals(h0, y[0], 1e-6);
        assertEquals(0, y[1], 0);
    }

    static TrainableLlama.Linear linear(Backend b, String module, float[] w, int out, int in, TensorArena arena) {
        return new TrainableLlama.Linear(b, module, module, Parameter.copyOf(module, Tensor.ofFloats(module, w, out, in), arena));
    }

    /** as t → 0 softmax(z / t) becomes one-hot on the largest logit: soft routing approaches top-1 (k1 fixture) */
    @Test
    void softRoutingAtSmallTemperatureIsTopOne() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(K1, new VectorBackend(2));
        float[] topOne = model.logits(IDS);
        model.setRouting(RoutingMode.soft(1e-4));
        assertClose(topOne, model.logits(IDS), 1e-5, "soft t = 1e-4 vs top-1");
        model.setRouting(RoutingMode.soft(1.0));
        float[] warm = model.logits(IDS);
        double diff = 0;
        for (int i = 0; i < warm.length; i++) diff = Math.max(diff, Math.abs(warm[i] - topOne[i]));
        assertTrue(diff > 1e-2, "at t = 1 soft routing mixes experts: " + diff);
        assertThrows(IllegalArgumentException.class, () -> RoutingMode.soft(0));
        assertEquals(0.05, RoutingMode.paperSoft(1).temperature());
        assertEquals(0.5, RoutingMode.paperSoft(2).temperature());
    }

    @Test
    void stageOneLoraOnExpertsTrainsTheRightSetAndMerges() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(K2, new VectorBackend(2));
        float[] before = model.logits(IDS);
        model.prepareStage1(4, 8, 0.1, 7);
        assertArrayEquals(before, model.logits(IDS), "B = 0: adapters change nothing at first");
        for (Parameter p : model.parameters()) {
            String n = p.name();
            boolean expected = n.contains(".lora_") || n.endsWith("block_sparse_moe.gate.weight") || n.endsWith("norm.weight");
            assertEquals(expected, p.trainable(), n);
            if (n.contains(".lora_")) assertTrue(n.matches("model\\.layers\\.\\d\\.block_sparse_moe\\.experts\\.\\d\\.w[123]\\.lora_[AB]\\.weight"), n);
        }
        assertEquals(2 * 4 * 3 * 2, model.parameters().stream().filter(p -> p.name().contains(".lora_")).count(), "2 layers × 4 experts × 3 linears × A, B");
        Map<String, float[]> frozen = new HashMap<>();
        for (Parameter p : model.parameters()) if (!p.trainable()) frozen.put(p.name(), p.value().toFloatArray());

        int[][] batch = batch(3, 2, 12, 128);
        AdamW adam = new AdamW(AdamW.Options.DEFAULT);
        double first = Double.NaN, last = Double.NaN;
        model.setAuxLossCoef(0.01);
        for (int step = 0; step < 8; step++) {
            for (Parameter p : model.parameters()) p.zeroGrad();
            double loss = model.lossAndGradients(batch, 1f);
            if (step == 0) first = loss;
            last = loss;
            adam.step(model.parameters(), 1e-2);
        }
        assertTrue(last < first - 0.05, "stage 1 lowers the loss: " + first + " → " + last);
        for (Parameter p : model.parameters())
            if (frozen.containsKey(p.name())) assertArrayEquals(frozen.get(p.name()), p.value().toFloatArray(), "frozen " + p.name());
        int[][] load = model.lastExpertLoad();
        assertEquals(2, load.length);
        assertEquals(2 * 12 * 2, load[0][0] + load[0][1] + load[0][2] + load[0][3]);

        float[] adapted = model.logits(IDS);
        model.mergeLora();
        assertClose(adapted, model.logits(IDS), 1e-5, "merged = adapted");
        assertFalse(model.parameters().stream().anyMatch(p -> p.name().contains("lora")));
        Path out = tmp.resolve("stage1");
        model.saveCheckpoint(out, null, DType.BF16);
        try (LlamaModel back = LlamaModel.load(out, new VectorBackend(2))) {
            assertTrue(back.isMoe());
            assertEquals(Set.of(), Set.copyOf(back.namedWeights().keySet().stream().filter(n -> n.contains("lora")).toList()));
        }
    }

    @Test
    void stageZeroTrainsOnlyRoutersWithSoftRoutingAndLowersTheLoss() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(K2, new VectorBackend(2));
        model.prepareStage0();
        assertEquals(new RoutingMode.Soft(0.5), model.routing());
        List<String> trainable = model.parameters().stream().filter(Parameter::trainable).map(Parameter::name).toList();
        assertEquals(List.of("model.layers.0.block_sparse_moe.gate.weight", "model.layers.1.block_sparse_moe.gate.weight"), trainable);
        Map<String, float[]> start = new HashMap<>();
        for (Parameter p : model.parameters()) start.put(p.name(), p.value().toFloatArray());
        int[][] batch = batch(4, 2, 12, 128);
        AdamW adam = new AdamW(AdamW.Options.DEFAULT);
        double first = Double.NaN, last = Double.NaN;
        for (int step = 0; step < 8; step++) {
            for (Parameter p : model.parameters()) p.zeroGrad();
            double loss = model.lossAndGradients(batch, 1f);
            if (step == 0) first = loss;
            last = loss;
            adam.step(model.parameters(), 3e-2);
        }
        assertTrue(last < first - 0.01, "stage 0 lowers the loss: " + first + " → " + last);
        for (Parameter p : model.parameters()) {
            boolean changed = !java.util.Arrays.equals(start.get(p.name()), p.value().toFloatArray());
            assertEquals(p.trainable(), changed, p.name());
        }
    }
    /**
     * Stage 0 stops the backward at the lowest MoE block and skips its frozen experts: the routers' gradients of both
     * layers still match central finite differences of the (soft-routed) loss along a random direction, and equal those
     * of the full backward (embedding made trainable, so every layer's input gradient is computed).
     */
    @Test
    void stageZeroRouterGradientsMatchFiniteDifferences() throws Exception {
        int[][] batch = batch(6, 2, 10, 128);
        TrainableLlama model = TrainableLlama.fromCheckpoint(K2, new VectorBackend(2));
        model.prepareStage0();
        model.lossAndGradients(batch, 1f);
        TrainableLlama full = TrainableLlama.fromCheckpoint(K2, new VectorBackend(2));
        full.prepareStage0();
        full.parameter("model.embed_tokens.weight").setTrainable(true);
        full.lossAndGradients(batch, 1f);
        Random r = new Random(4);
        for (int l = 0; l < 2; l++) {
            String name = "model.layers." + l + ".block_sparse_moe.gate.weight";
            Parameter p = model.parameter(name);
            assertArrayEquals(full.parameter(name).gradValues(), p.gradValues(), name + ": truncated and full backward");
            float[] original = p.value().toFloatArray();
            double[] u = new double[original.length];
            double analytic = 0, magnitude = 0;
            for (int i = 0; i < u.length; i++) {
                u[i] = r.nextDouble() * 2 - 1;
                analytic += p.gradValues()[i] * u[i];
                magnitude += Math.abs(p.gradValues()[i] * u[i]);
            }
            double eps = 1e-2;
            double[] losses = new double[2];
            for (int side = 0; side < 2; side++) {
                for (int i = 0; i < original.length; i++)
                    p.writableData().setFloat(i, (float) (original[i] + (side == 0 ? eps : -eps) * u[i]));
                losses[side] = model.loss(batch);
            }
            for (int i = 0; i < original.length; i++) p.writableData().setFloat(i, original[i]);
            double numeric = (losses[0] - losses[1]) / (2 * eps);
            assertTrue(magnitude > 1e-4, name + ": gradient (almost) zero");
            assertEquals(numeric, analytic, 1e-2 * magnitude, name + ": analytic " + analytic + " vs finite differences " + numeric);
        }
    }
    /** the eval's expert load (share of top-k assignments, MoE layers pooled) against the inference engine's own routing */
    @Test
    void evalExpertLoadMatchesTheInferenceEnginesRouting() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(K2, new VectorBackend(2));
        int[][] first = batch(11, 2, 9, 128), second = batch(12, 1, 9, 128);
        EvalSet set = new EvalSet("toy", List.of(first, second), 3);
        EvalSet.Result r = set.evaluate(model);
        int experts = model.config().moe().numLocalExperts(), k = model.config().moe().numExpertsPerTok();
        long[] counts = new long[experts];
        try (LlamaModel engine = LlamaModel.load(K2, new ScalarBackend())) {
            dive.model.RoutingObserver observer = (layer, tokens, logits, ids, weights) -> {
                for (int n = 0; n < tokens; n++) for (int j = 0; j < k; j++) counts[ids[n * k + j]]++;
            };
            for (int[][] b : List.of(first, second))
                for (int[] row : b) {
                    int[] inputs = java.util.Arrays.copyOf(row, row.length - 1);  // the eval predicts row[1..] from row[..T)
                    engine.forward(inputs, engine.newCache(inputs.length), observer);
                }
        }
        long total = java.util.Arrays.stream(counts).sum();
        assertEquals(3L * 9 * k * model.config().numHiddenLayers(), total, "every token, every layer, k assignments");
        for (int e = 0; e < experts; e++) assertEquals((double) counts[e] / total, r.expertShare()[e], 1e-12, "expert " + e);
        double mean = 0;
        for (int[][] b : List.of(first, second)) mean += model.loss(b) * b.length;
        assertEquals(mean / 3, r.loss(), 1e-12);
    }
}
