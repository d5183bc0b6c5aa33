package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import dive.backend.Backends;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The engine against Hugging Face transformers (LlamaForCausalLM, F32) on the fixtures of make_llama_fixtures.py,
 * for the scalar reference backend and the selected fast backend.
 *
 * <p>Relative error = max|engine − reference| / max|reference| over the whole logits array.
 */
class LlamaFixtureTest {
    static final double LOGITS_REL_TOL = 1e-4;
    static final double PPL_REL_TOL = 1e-4;
    private static final Map<String, LlamaModel> MODELS = new ConcurrentHashMap<>();

    static Stream<Arguments> cases() {
        return Stream.of(Fixtures.NAMES).flatMap(n -> Stream.of(Arguments.of(n, "scalar"), Arguments.of(n, "vector")));
    }

    static LlamaModel model(String name, String backend) {
        return MODELS.computeIfAbsent(name + "/" + backend, k -> {
            try {
                return Fixtures.load(Fixtures.dir(name), Backends.create(backend));
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        });
    }

    static double relativeError(float[] actual, float[] expected, int expOff, int n) {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < n; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[expOff + i]));
            maxRef = Math.max(maxRef, Math.abs(expected[expOff + i]));
        }
        return maxDiff / maxRef;
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void logitsMatchTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        JsonNode exp = Fixtures.expected(name);
        int[] ids = Fixtures.ints(exp.get("input_ids"));
        int vocab = model.config().vocabSize();
        float[] reference = Fixtures.readNpy(Fixtures.dir(name).resolve("logits.npy"), ids.length, vocab);
        float[] logits = model.logits(ids);
        assertEquals(reference.length, logits.length);
        double rel = relativeError(logits, reference, 0, reference.length);
        assertTrue(rel <= LOGITS_REL_TOL, name + " " + backend + ": logits relative error " + rel);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void batchedPrefillMatchesTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        JsonNode exp = Fixtures.expected(name);
        int[][] batch = {Fixtures.ints(exp.get("batch_input_ids").get(0)), Fixtures.ints(exp.get("batch_input_ids").get(1))};
        int T = batch[0].length, vocab = model.config().vocabSize();
        float[] reference = Fixtures.readNpy(Fixtures.dir(name).resolve("batch_logits.npy"), 2, T, vocab);
        KVCache[] caches = {model.newCache(T), model.newCache(T)};
        float[][] logits = model.forwardBatch(batch, caches, true);
        for (int b = 0; b < 2; b++) {
            double rel = relativeError(logits[b], reference, b * T * vocab, T * vocab);
            assertTrue(rel <= LOGITS_REL_TOL, name + " " + backend + ": sequence " + b + " relative error " + rel);
            assertEquals(T, caches[b].length());
        }
        // last-position mode gives each sequence's last row
        float[][] last = model.forwardBatch(batch, new KVCache[] {model.newCache(T), model.newCache(T)}, false);
        for (int b = 0; b < 2; b++)
            assertTrue(relativeError(last[b], reference, (b * T + T - 1) * vocab, vocab) <= LOGITS_REL_TOL);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void greedyGenerationMatchesTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        JsonNode exp = Fixtures.expected(name);
        int[] generated = Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")),
                GenerateOptions.greedy(exp.get("greedy_max_new_tokens").asInt()));
        assertArrayEquals(Fixtures.ints(exp.get("greedy_new_ids")), generated, name + " " + backend);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void perplexityMatchesTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        JsonNode exp = Fixtures.expected(name);
        Perplexity.Result r = Perplexity.compute(model, Fixtures.ints(exp.get("perplexity_ids")), exp.get("perplexity_window").asInt());
        double reference = exp.get("perplexity").asDouble();
        assertEquals(exp.get("perplexity_predicted_tokens").asInt(), r.predictedTokens());
        assertTrue(Math.abs(r.perplexity() - reference) / reference <= PPL_REL_TOL,
                name + " " + backend + ": perplexity " + r.perplexity() + " vs transformers " + reference);
    }

    /** decoding in pieces with a KV cache gives what one full prefill gives (no reference needed) */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void kvCacheDecodeEqualsFullPrefill(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        int[] ids = Fixtures.ints(Fixtures.expected(name).get("input_ids"));
        int vocab = model.config().vocabSize();
        float[] full = model.logits(ids);
        KVCache cache = model.newCache(ids.length);
        int pos = 0;
        int[] pieces = {3, 1, 2};  // a short prefill, then single tokens and pairs
        for (int i = 0; pos < ids.length; i++) {
            int n = Math.min(pieces[i % pieces.length], ids.length - pos);
            float[] part = model.forward(Arrays.copyOfRange(ids, pos, pos + n), cache);
            double rel = relativeError(part, full, pos * vocab, n * vocab);
            assertTrue(rel <= 1e-5, name + " " + backend + ": positions " + pos + ".." + (pos + n) + " relative error " + rel);
            pos += n;
        }
        assertEquals(ids.length, cache.length());
    }

    /** the text perplexity a later CLI test will check: HF tokenized eval.txt, scored in windows of 32 */
    @ParameterizedTest(name = "tiny_bpe {0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"scalar", "vector"})
    void evalTextPerplexityMatchesTransformers(String backend) throws IOException {
        JsonNode exp = Fixtures.expected("tiny_bpe");
        // dive's tokenizer gives the ids HF's tokenizer gave for eval.txt (no special tokens added)
        dive.tokenizer.Tokenizer tokenizer = dive.tokenizer.Tokenizer.load(Fixtures.dir("tiny_bpe").resolve("tokenizer.json"));
        String text = java.nio.file.Files.readString(Fixtures.dir("tiny_bpe").resolve(exp.get("eval_text_file").asText()));
        int[] ids = tokenizer.encode(text, false);
        assertArrayEquals(Fixtures.ints(exp.get("eval_text_ids")), ids);
        Perplexity.Result r = Perplexity.compute(model("tiny_bpe", backend), ids, exp.get("eval_text_window").asInt());
        double reference = exp.get("eval_text_perplexity").asDouble();
        assertEquals(exp.get("eval_text_predicted_tokens").asInt(), r.predictedTokens());
        assertTrue(Math.abs(r.perplexity() - reference) / reference <= PPL_REL_TOL, r.perplexity() + " vs " + reference);
    }
}
