package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import dive.api.Engine;
import dive.backend.Backends;
import dive.backend.ScalarBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;

import static dive.model.LlamaFixtureTest.relativeError;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The sparse-MoE path against Hugging Face transformers' MixtralForCausalLM (F32, eager experts) on the fixtures of
 * src/test/python/make_mixtral_fixtures.py, on the scalar reference backend and the vector backend.
 * Relative error = max|engine − reference| / max|reference| over the whole array.
 */
class MixtralFixtureTest {
    static final Path ROOT = Path.of("src/test/resources/mixtral");
    static final String[] NAMES = {"k1", "k2_i40", "bf16_k2"};
    static final double TOL = 1e-4;
    private static final Map<String, LlamaModel> MODELS = new ConcurrentHashMap<>();

    static Stream<Arguments> cases() {
        return Stream.of(NAMES).flatMap(n -> Stream.of(Arguments.of(n, "scalar"), Arguments.of(n, "vector")));
    }

    static Path dir(String name) { return ROOT.resolve(name); }

    static JsonNode expected(String name) throws IOException { return Fixtures.JSON.readTree(dir(name).resolve("expected.json").toFile()); }

    static LlamaModel model(String name, String backend) { return cached(dir(name), backend); }

    /** the model of folder {@code dir} on {@code backend}, loaded once per test run and shared by the fixture tests */
    static LlamaModel cached(Path dir, String backend) {
        return MODELS.computeIfAbsent(dir + "/" + backend, k -> {
            try {
                return LlamaModel.load(dir, Backends.create(backend));
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        });
    }

    static float[] referenceLogits(String name, int tokens, int vocab) throws IOException {
        return Fixtures.readNpy(dir(name).resolve("logits.npy"), tokens, vocab);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void logitsMatchTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        assertTrue(model.isMoe() && model.feedForward(0) instanceof MoeFfn, model.toString());
        int[] ids = Fixtures.ints(expected(name).get("input_ids"));
        float[] reference = referenceLogits(name, ids.length, model.config().vocabSize());
        double rel = relativeError(model.logits(ids), reference, 0, reference.length);
        assertTrue(rel <= TOL, name + " " + backend + ": logits relative error " + rel);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void batchedPrefillMatchesTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        JsonNode exp = expected(name);
        int[][] batch = {Fixtures.ints(exp.get("batch_input_ids").get(0)), Fixtures.ints(exp.get("batch_input_ids").get(1))};
        int T = batch[0].length, vocab = model.config().vocabSize();
        float[] reference = Fixtures.readNpy(dir(name).resolve("batch_logits.npy"), 2, T, vocab);
        float[][] logits = model.forwardBatch(batch, new KVCache[] {model.newCache(T), model.newCache(T)}, true);
        for (int b = 0; b < 2; b++) {
            double rel = relativeError(logits[b], reference, b * T * vocab, T * vocab);
            assertTrue(rel <= TOL, name + " " + backend + ": sequence " + b + " relative error " + rel);
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void greedyGenerationMatchesTransformers(String name, String backend) throws IOException {
        assertGreedyGeneration(model(name, backend), expected(name), name + " " + backend);
    }

    /** greedy generation from the fixture's prompt gives transformers' ids */
    static void assertGreedyGeneration(LlamaModel model, JsonNode exp, String label) {
        int[] generated = Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")), GenerateOptions.greedy(exp.get("greedy_max_new_tokens").asInt()));
        assertArrayEquals(Fixtures.ints(exp.get("greedy_new_ids")), generated, label);
    }

    /** the fixture's windowed perplexity within TOL relative of transformers' */
    static void assertPerplexity(LlamaModel model, JsonNode exp, String label) {
        Perplexity.Result r = Perplexity.compute(model, Fixtures.ints(exp.get("perplexity_ids")), exp.get("perplexity_window").asInt());
        double reference = exp.get("perplexity").asDouble();
        assertEquals(exp.get("perplexity_predicted_tokens").asInt(), r.predictedTokens());
        assertTrue(Math.abs(r.perplexity() - reference) / reference <= TOL, label + ": " + r.perplexity() + " vs " + reference);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void perplexityMatchesTransformers(String name, String backend) throws IOException {
        assertPerplexity(model(name, backend), expected(name), name + " " + backend);
    }

    /** decoding in pieces with a KV cache gives what one full prefill gives (the experts see 1, 2 or 3 rows) */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void kvCacheDecodeEqualsFullPrefill(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        int[] ids = Fixtures.ints(expected(name).get("input_ids"));
        int vocab = model.config().vocabSize();
        float[] full = model.logits(ids);
        KVCache cache = model.newCache(ids.length);
        int[] pieces = {3, 1, 2};
        for (int i = 0, pos = 0; pos < ids.length; i++) {
            int n = Math.min(pieces[i % pieces.length], ids.length - pos);
            float[] part = model.forward(Arrays.copyOfRange(ids, pos, pos + n), cache);
            double rel = relativeError(part, full, pos * vocab, n * vocab);
            assertTrue(rel <= 1e-5, name + " " + backend + ": positions " + pos + ".." + (pos + n) + " relative error " + rel);
            pos += n;
        }
    }

    /** the observer sees layer 0's router logits, top-k ids and renormalised weights as transformers computes them */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void routingObserverMatchesTransformersRouter(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        JsonNode exp = expected(name);
        int[] ids = Fixtures.ints(exp.get("input_ids"));
        int E = exp.get("num_local_experts").asInt(), k = exp.get("num_experts_per_tok").asInt();
        float[] refLogits = Fixtures.readNpy(dir(name).resolve("router_logits_layer0.npy"), ids.length, E);
        int[] calls = new int[model.config().numHiddenLayers()];
        model.forward(ids, model.newCache(ids.length), (layer, tokens, routerLogits, expertIds, weights) -> {
            calls[layer]++;
            assertEquals(ids.length, tokens);
            if (layer != 0) return;
            assertTrue(relativeError(routerLogits, refLogits, 0, refLogits.length) <= TOL, "router logits");
            for (int t = 0; t < tokens; t++)
                for (int s = 0; s < k; s++) {
                    assertEquals(exp.get("layer0_topk_ids").get(t).get(s).asInt(), expertIds[t * k + s], "token " + t + " slot " + s);
                    assertEquals(exp.get("layer0_topk_weights").get(t).get(s).asDouble(), weights[t * k + s], 1e-5, "token " + t + " slot " + s);
                }
        });
        assertArrayEquals(new int[] {1, 1}, calls, "one call per MoE layer");
    }

    /**
     * Jlama's MoEBlock bug: summing the experts' outputs without the routing weights. A backend that does exactly that
     * (in this test only) must fail the logits check that the correct engine passes: the check catches the bug.
     */
    @Test
    void summingExpertsWithoutRoutingWeightsFailsTheCheck() throws Exception {
        String name = "k2_i40";
        JsonNode exp = expected(name);
        assertTrue(exp.get("num_experts_per_tok").asInt() == 2 && exp.get("min_top2_weight_gap").asDouble() > 0.05,
                "the fixture's routing weights must be unequal for this test to mean something");
        ScalarBackend unweighted = new ScalarBackend() {
            @Override
            public void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d) {
                float[] ones = new float[n * k];
                Arrays.fill(ones, 1f);
                super.combineExperts(y, expertOut, slotRow, ones, n, k, d); // the bug: weights ignored
            }
        };
        int[] ids = Fixtures.ints(exp.get("input_ids"));
        try (LlamaModel wrong = LlamaModel.load(dir(name), unweighted)) {
            float[] reference = referenceLogits(name, ids.length, wrong.config().vocabSize());
            double relWrong = relativeError(wrong.logits(ids), reference, 0, reference.length);
            double relRight = relativeError(model(name, "scalar").logits(ids), reference, 0, reference.length);
            assertTrue(relRight <= TOL, "correct engine " + relRight);
            assertTrue(relWrong > 100 * TOL, "the unweighted sum should be far off, got relative error " + relWrong);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"k2_i40"})
    void engineLoadsMixtral(String name) throws Exception {
        try (Engine engine = Engine.load(dir(name), new ScalarBackend())) {
            assertEquals("mixtral", engine.config().modelType());
            assertTrue(engine.model().isMoe());
            int[] ids = Fixtures.ints(expected(name).get("input_ids"));
            float[] reference = referenceLogits(name, ids.length, engine.config().vocabSize());
            assertTrue(relativeError(engine.logits(ids), reference, 0, reference.length) <= TOL);
        }
    }
}
