package dive.train;

import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.io.SafetensorsFile;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * TrainableLlama beyond the PyTorch reference ({@link TrainableLlamaReferenceTest}): initialization statistics,
 * checkpoint export read back by {@link LlamaModel}, and LoRA (merge equals unmerged; gradients of A and B by
 * central finite differences of the loss).
 */
class TrainableLlamaTest {
    static final Path GQA = Path.of("src/test/resources/llama/gqa"), TIED = Path.of("src/test/resources/llama/tiny_bpe");
    /** transformers' LlamaForCausalLM with mlp_bias=True (random gate/up/down biases), hidden 48, intermediate 80 */
    static final Path MLP_BIAS = Path.of("src/test/resources/llama/mlp_bias");
    private final ScalarBackend scalar = new ScalarBackend();

    static int[][] randomBatch(long seed, int B, int T1, int vocab) {
        Random r = new Random(seed);
        int[][] batch = new int[B][T1];
        for (int[] row : batch) for (int t = 0; t < T1; t++) row[t] = r.nextInt(vocab);
        return batch;
    }

    @Test
    void initializeFollowsTransformersInitAndSharesTiedEmbeddings() throws Exception {
        LlamaConfig config = LlamaConfig.load(TIED);
        TrainableLlama model = TrainableLlama.initialize(config, scalar, 5);
        assertFalse(model.parameters().stream().anyMatch(p -> p.name().equals("lm_head.weight")), "tied: no separate lm_head");
        assertEquals(2 + 9 * config.numHiddenLayers(), model.parameters().size());
        for (Parameter p : model.parameters()) {
            float[] v = p.value().toFloatArray();
            if (p.name().endsWith("norm.weight")) {
                for (float x : v) assertEquals(1f, x, p.name());
                continue;
            }
            double sum = 0, sq = 0;
            for (float x : v) { sum += x; sq += (double) x * x; }
            double mean = sum / v.length, std = Math.sqrt(sq / v.length - mean * mean);
            assertEquals(0.0, mean, 5 * 0.02 / Math.sqrt(v.length), p.name() + " mean");
            assertEquals(0.02, std, 0.02 * 6 / Math.sqrt(v.length) + 0.02 * 0.02, p.name() + " std"); // std of the std estimate ≈ σ/√(2n)
        }
        TrainableLlama same = TrainableLlama.initialize(config, scalar, 5), other = TrainableLlama.initialize(config, scalar, 6);
        assertArrayEquals(model.parameters().get(1).value().toFloatArray(), same.parameters().get(1).value().toFloatArray(), "same seed");
        assertFalse(java.util.Arrays.equals(model.parameters().get(1).value().toFloatArray(), other.parameters().get(1).value().toFloatArray()), "other seed");
        // tied: one parameter receives both the embedding and the LM-head gradient; the head alone gives every row some
        model.lossAndGradients(randomBatch(1, 2, 6, config.vocabSize()), 1f);
        float[] g = model.parameter("model.embed_tokens.weight").gradValues();
        int d = config.hiddenSize();
        for (int row = 0; row < config.vocabSize(); row++) {
            double norm = 0;
            for (int i = 0; i < d; i++) norm += Math.abs(g[row * d + i]);
            assertTrue(norm > 0, "row " + row + " of the tied embedding got no LM-head gradient");
        }
    }

    @Test
    void savedCheckpointLoadsInLlamaModelWithTheSameLogits(@TempDir Path tmp) throws Exception {
        for (Path fixture : new Path[] {GQA, TIED}) {
            TrainableLlama model = TrainableLlama.fromCheckpoint(fixture, scalar);
            model.lossAndGradients(randomBatch(2, 1, 5, model.config().vocabSize()), 1f); // gradients do not leak into the export
            Path dir = tmp.resolve(fixture.getFileName() + "-f32");
            model.saveCheckpoint(dir, fixture.resolve("tokenizer.json").toFile().exists() ? fixture.resolve("tokenizer.json") : null, DType.F32);
            LlamaConfig reread = LlamaConfig.load(dir), original = model.config();
            assertEquals(original.hiddenSize(), reread.hiddenSize());
            assertEquals(original.numKeyValueHeads(), reread.numKeyValueHeads());
            assertEquals(original.tieWordEmbeddings(), reread.tieWordEmbeddings());
            assertEquals(original.rope(), reread.rope());
            assertArrayEquals(original.eosTokenIds(), reread.eosTokenIds());
            int[] ids = {3, 17, 5, 99, 42, 7, 0};
            float[] ours = model.logits(ids);
            try (LlamaModel loaded = LlamaModel.load(dir, scalar); LlamaModel source = LlamaModel.load(fixture, scalar)) {
                assertArrayEquals(source.logits(ids), loaded.logits(ids), "F32 export is the same weights");
                float[] theirs = loaded.logits(ids);
                for (int i = 0; i < ours.length; i++) assertEquals(theirs[i], ours[i], 1e-5 * (1 + Math.abs(theirs[i])), "logit " + i);
            }
            // BF16: every weight is the parameter rounded to bfloat16
            Path bf16 = tmp.resolve(fixture.getFileName() + "-bf16");
            model.saveCheckpoint(bf16, null, DType.BF16);
            try (SafetensorsFile file = SafetensorsFile.open(bf16.resolve("model.safetensors"))) {
                assertEquals(original.tieWordEmbeddings() ? List.of() : List.of("lm_head.weight"),
                        file.names().stream().filter(n -> n.equals("lm_head.weight")).toList());
                for (Parameter p : model.parameters()) {
                    Tensor t = file.tensor(p.name());
                    assertEquals(DType.BF16, t.dtype());
                    for (int i = 0; i < p.numel(); i++)
                        assertEquals(DType.floatToBf16(p.value().getFloat(i)), t.data().getAtIndex(Tensor.I16, i), p.name());
                }
            }
            assertTrue(Files.readString(bf16.resolve("config.json")).contains("\"bfloat16\""));
        }
    }

    /** gqa fixture with LoRA on q, v and down; B filled with random values so the adapters matter */
    private TrainableLlama loraModel(double dropout) throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(GQA, scalar);
        model.addLora(new TrainableLlama.LoraConfig(4, 8, dropout, Set.of("q_proj", "v_proj", "down_proj"), 9));
        Random r = new Random(3);
        for (Parameter p : model.parameters())
            if (p.name().endsWith("lora_B.weight"))
                for (long i = 0; i < p.numel(); i++) p.writableData().setFloat(i, (float) (r.nextGaussian() * 0.05));
        return model;
    }

    @Test
    void loraParametersAreNamedLikePeftAndOnlyTheyTrain() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(GQA, scalar);
        int before = model.parameters().size();
        model.addLora(new TrainableLlama.LoraConfig(4, 8, 0, Set.of("q_proj", "v_proj"), 9));
        assertEquals(before + 2 * 2 * 2, model.parameters().size());
        Parameter a = model.parameter("model.layers.1.self_attn.v_proj.lora_A.weight"), b = model.parameter("model.layers.1.self_attn.v_proj.lora_B.weight");
        assertArrayEquals(new long[] {4, 48}, a.value().shape());
        assertArrayEquals(new long[] {24, 4}, b.value().shape());
        for (float x : b.value().toFloatArray()) assertEquals(0f, x, "B starts at zero (PEFT)");
        for (float x : a.value().toFloatArray()) assertTrue(Math.abs(x) <= 1 / Math.sqrt(48), "A within the kaiming-uniform bound");
        int[] ids = {1, 2, 3, 4, 5};
        try (LlamaModel base = LlamaModel.load(GQA, scalar)) {
            assertArrayEquals(base.logits(ids), model.logits(ids), 1e-6f, "B = 0: the adapters change nothing");
        }
        model.lossAndGradients(randomBatch(4, 2, 6, 300), 1f);
        for (Parameter p : model.parameters()) {
            boolean lora = p.name().contains("lora_");
            assertEquals(lora, p.trainable(), p.name());
            boolean any = false;
            for (float g : p.gradValues()) any |= g != 0;
            if (!lora) assertFalse(any, p.name() + " is frozen but got a gradient");
        }
        assertTrue(java.util.Arrays.stream(new int[] {0}).allMatch(i -> {
            for (float g : b.gradValues()) if (g != 0) return true;
            return false;
        }), "B gets a gradient even at zero");
        assertThrows(IllegalStateException.class, () -> model.addLora(new TrainableLlama.LoraConfig(2, 2, 0, Set.of("q_proj"), 1)));
        assertThrows(IllegalStateException.class, () -> model.saveCheckpoint(Path.of("unused"), null, DType.F32));
        assertThrows(IllegalArgumentException.class, () -> new TrainableLlama.LoraConfig(2, 2, 0, Set.of("qproj"), 1));
    }

    @Test
    void mergedLoraGivesTheSameLogits() throws Exception {
        for (var backend : List.of(scalar, new VectorBackend(2))) {
            TrainableLlama model = TrainableLlama.fromCheckpoint(GQA, backend);
            model.addLora(new TrainableLlama.LoraConfig(4, 8, 0, Set.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), 9));
            Random r = new Random(3);
            for (Parameter p : model.parameters())
                if (p.name().endsWith("lora_B.weight"))
                    for (long i = 0; i < p.numel(); i++) p.writableData().setFloat(i, (float) (r.nextGaussian() * 0.05));
            int[] ids = {5, 250, 3, 77, 1, 0, 9, 12};
            float[] unmerged = model.logits(ids);
            TrainableLlama plain = TrainableLlama.fromCheckpoint(GQA, backend);
            float[] base = plain.logits(ids);
            double change = 0;
            for (int i = 0; i < base.length; i++) change = Math.max(change, Math.abs(base[i] - unmerged[i]));
            assertTrue(change > 1e-2, "the adapters change the logits (" + change + ")");
            model.mergeLora();
            assertEquals(plain.parameters().size(), model.parameters().size(), "adapters removed");
            assertTrue(model.parameters().stream().allMatch(Parameter::trainable), "trainable flags restored");
            float[] merged = model.logits(ids);
            for (int i = 0; i < merged.length; i++) assertEquals(unmerged[i], merged[i], 1e-5 * Math.max(1, Math.abs(unmerged[i])), "logit " + i + " on " + backend.name());
        }
    }

    @Test
    void loraGradientsMatchFiniteDifferences() throws Exception {
        TrainableLlama model = loraModel(0);
        int[][] batch = randomBatch(8, 2, 7, 300);
        model.lossAndGradients(batch, 1f);
        Random r = new Random(12);
        for (String name : new String[] {"model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.v_proj.lora_B.weight",
                "model.layers.0.mlp.down_proj.lora_A.weight", "model.layers.1.mlp.down_proj.lora_B.weight"}) {
            Parameter p = model.parameter(name);
            float[] original = p.value().toFloatArray(), u = new float[original.length];
            double analytic = 0, magnitude = 0;
            for (int i = 0; i < u.length; i++) {
                u[i] = r.nextFloat() * 2 - 1;
                analytic += p.gradValues()[i] * u[i];
                magnitude += Math.abs(p.gradValues()[i] * u[i]);
            }
            double eps = 1e-2;
            set(p, original, u, eps);
            double plus = model.loss(batch);
            set(p, original, u, -eps);
            double minus = model.loss(batch);
            set(p, original, u, 0);
            double numeric = (plus - minus) / (2 * eps);
            assertTrue(magnitude > 1e-3, name + ": gradient (almost) zero");
            assertEquals(numeric, analytic, 1e-2 * magnitude, name + ": analytic " + analytic + " vs finite differences " + numeric);
        }
    }

    /**
     * mlp_bias (transformers' LlamaMLP with bias=True): the three MLP biases of every layer are Parameters in
     * named_parameters() order; the forward equals LlamaModel's (itself checked against transformers' logits in
     * LlamaFixtureTest); their gradients match central finite differences of the loss; the export keeps them.
     */
    @Test
    void mlpBiasParametersTrainAndExport(@TempDir Path tmp) throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(MLP_BIAS, scalar);
        assertTrue(model.config().mlpBias());
        assertEquals(3 + 12 * 2, model.parameters().size(), "embed, final norm, lm_head; per layer 7 weights + 3 biases + 2 norms");
        List<String> names = model.parameters().stream().map(Parameter::name).toList();
        assertEquals(List.of("model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.gate_proj.bias", "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.mlp.up_proj.bias", "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_proj.bias"),
                names.subList(names.indexOf("model.layers.0.mlp.gate_proj.weight"), names.indexOf("model.layers.0.mlp.down_proj.bias") + 1));
        int[] ids = {5, 250, 3, 77, 1, 0, 9, 12};
        try (LlamaModel engine = LlamaModel.load(MLP_BIAS, scalar)) {
            float[] expected = engine.logits(ids), got = model.logits(ids);
            for (int i = 0; i < got.length; i++) assertEquals(expected[i], got[i], 1e-5 * (1 + Math.abs(expected[i])), "logit " + i);
        }

        int[][] batch = randomBatch(8, 2, 7, 300);
        model.lossAndGradients(batch, 1f);
        Random r = new Random(13);
        for (String name : new String[] {"model.layers.0.mlp.gate_proj.bias", "model.layers.1.mlp.up_proj.bias",
                "model.layers.0.mlp.down_proj.bias", "model.layers.1.mlp.down_proj.bias"}) {
            Parameter p = model.parameter(name);
            assertEquals(name.contains("down") ? 48 : 80, p.numel(), name);
            float[] original = p.value().toFloatArray(), u = new float[original.length];
            double analytic = 0, magnitude = 0;
            for (int i = 0; i < u.length; i++) {
                u[i] = r.nextFloat() * 2 - 1;
                analytic += p.gradValues()[i] * u[i];
                magnitude += Math.abs(p.gradValues()[i] * u[i]);
            }
            double eps = 1e-2;
            set(p, original, u, eps);
            double plus = model.loss(batch);
            set(p, original, u, -eps);
            double minus = model.loss(batch);
            set(p, original, u, 0);
            double numeric = (plus - minus) / (2 * eps);
            assertTrue(magnitude > 1e-3, name + ": gradient (almost) zero");
            assertEquals(numeric, analytic, 1e-2 * magnitude, name + ": analytic " + analytic + " vs finite differences " + numeric);
        }

        // export: config.json says mlp_bias, the biases are in the file, LlamaModel reads back the same logits
        Path dir = tmp.resolve("export");
        model.saveCheckpoint(dir, null, DType.F32);
        assertTrue(dive.model.LlamaConfig.load(dir).mlpBias());
        try (SafetensorsFile file = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
            assertArrayEquals(model.parameter("model.layers.1.mlp.up_proj.bias").value().toFloatArray(),
                    file.tensor("model.layers.1.mlp.up_proj.bias").toFloatArray());
        }
        try (LlamaModel loaded = LlamaModel.load(dir, scalar); LlamaModel source = LlamaModel.load(MLP_BIAS, scalar)) {
            assertArrayEquals(source.logits(ids), loaded.logits(ids), "F32 export is the same weights");
        }
    }

    /** LoRA freezes the MLP biases like every other base parameter (the dense stages train LoRA + norms); merging restores them */
    @Test
    void loraKeepsMlpBiasesFrozen() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(MLP_BIAS, scalar);
        model.addLora(new TrainableLlama.LoraConfig(4, 8, 0, Set.of("gate_proj", "up_proj", "down_proj"), 9));
        ParameterPatterns.apply(model.parameters(), List.of("*.lora_*", "*norm.weight"), List.of());
        model.lossAndGradients(randomBatch(4, 2, 6, 300), 1f);
        int biases = 0;
        for (Parameter p : model.parameters()) {
            if (!p.name().endsWith(".bias")) continue;
            biases++;
            assertFalse(p.trainable(), p.name());
            for (float g : p.gradValues()) assertEquals(0f, g, p.name() + " is frozen but got a gradient");
        }
        assertEquals(6, biases);
        assertTrue(model.parameter("model.layers.0.mlp.down_proj.lora_B.weight").trainable());
        model.mergeLora();
        assertTrue(model.parameter("model.layers.0.mlp.down_proj.bias").trainable(), "trainable flag restored");
        // a fresh mlp_bias model: biases start at zero (transformers' init), weights as before
        TrainableLlama fresh = TrainableLlama.initialize(model.config(), scalar, 5);
        for (String b : new String[] {"model.layers.0.mlp.gate_proj.bias", "model.layers.1.mlp.down_proj.bias"})
            for (float x : fresh.parameter(b).value().toFloatArray()) assertEquals(0f, x, b);
    }

    private static void set(Parameter p, float[] original, float[] u, double eps) {
        for (int i = 0; i < original.length; i++) p.writableData().setFloat(i, (float) (original[i] + eps * u[i]));
    }

    @Test
    void loraDropoutIsSeededAndOnlyInTraining() throws Exception {
        int[][] batch = randomBatch(8, 2, 7, 300);
        TrainableLlama a = loraModel(0.5), b = loraModel(0.5);
        double evalLoss = a.loss(batch);
        double trainA = a.lossAndGradients(batch, 1f), trainB = b.lossAndGradients(batch, 1f);
        assertEquals(trainA, trainB, 0, "same seed, same mask");
        assertNotEquals(evalLoss, trainA, "dropout changes the training loss");
        assertEquals(evalLoss, a.loss(batch), 0, "evaluation has no dropout");
        assertNotEquals(trainA, a.lossAndGradients(batch, 1f), "a new mask each step");
    }

    @Test
    void badBatchesAreRejectedWithTheirPosition() throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(GQA, scalar);
        var e = assertThrows(IllegalArgumentException.class, () -> model.loss(new int[][] {{1, 2, 300}}));
        assertTrue(e.getMessage().contains("300") && e.getMessage().contains("position 2"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> model.loss(new int[][] {{1, 2, 3}, {1, 2}}));
        assertTrue(e.getMessage().contains("sequence 1"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> model.loss(new int[][] {{1}}));
    }
}
