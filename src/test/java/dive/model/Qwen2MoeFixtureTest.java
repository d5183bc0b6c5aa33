package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import dive.backend.Backend;
import dive.backend.ScalarBackend;
import dive.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Stream;

import static dive.model.LlamaFixtureTest.relativeError;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The shared-expert MoE path against Hugging Face transformers' Qwen2MoeForCausalLM (F32 arithmetic, eager experts) on
 * the checkpoints transformers saved (src/test/python/make_qwen2moe_fixtures.py: k2 F32 top-2 of 4, bf16_k2 BF16 top-2
 * of 3, random shared expert gates), on the scalar reference backend and the vector backend: logits, greedy generation,
 * perplexity, KV-cache decoding and batched prefill. Relative error = max|engine − reference| / max|reference|.
 */
class Qwen2MoeFixtureTest {
    static final Path ROOT = Path.of("src/test/resources/qwen2_moe");
    static final double TOL = 1e-4;

    static Stream<Arguments> cases() {
        return Stream.of("k2", "bf16_k2").flatMap(n -> Stream.of(Arguments.of(n, "scalar"), Arguments.of(n, "vector")));
    }

    static Path dir(String name) { return ROOT.resolve(name); }

    static JsonNode expected(String name) throws IOException { return Fixtures.JSON.readTree(dir(name).resolve("expected.json").toFile()); }

    static LlamaModel model(String name, String backend) { return MixtralFixtureTest.cached(dir(name), backend); }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void logitsMatchTransformers(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        assertTrue(model.isMoe() && model.feedForward(1) instanceof SharedExpertMoeFfn, model.toString());
        int[] ids = Fixtures.ints(expected(name).get("input_ids"));
        float[] reference = Fixtures.readNpy(dir(name).resolve("logits.npy"), ids.length, model.config().vocabSize());
        double rel = relativeError(model.logits(ids), reference, 0, reference.length);
        System.out.printf("qwen2_moe %s %s: logits relative error %.2e%n", name, backend, rel);
        assertTrue(rel <= TOL, name + " " + backend + ": logits relative error " + rel);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void greedyGenerationAndPerplexityMatchTransformers(String name, String backend) throws IOException {
        MixtralFixtureTest.assertGreedyGeneration(model(name, backend), expected(name), name + " " + backend);
        MixtralFixtureTest.assertPerplexity(model(name, backend), expected(name), name + " " + backend);
    }

    /** decoding in pieces with a KV cache, and a batch of two sequences, give what one full prefill gives */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void kvCacheDecodeAndBatchesEqualFullPrefill(String name, String backend) throws IOException {
        LlamaModel model = model(name, backend);
        int[] ids = Fixtures.ints(expected(name).get("input_ids"));
        int vocab = model.config().vocabSize();
        float[] full = model.logits(ids);
        KVCache cache = model.newCache(ids.length);
        for (int pos = 0, i = 0; pos < ids.length; i++) {
            int n = Math.min(1 + i % 3, ids.length - pos);
            float[] part = model.forward(Arrays.copyOfRange(ids, pos, pos + n), cache);
            double rel = relativeError(part, full, pos * vocab, n * vocab);
            assertTrue(rel <= 1e-5, name + " " + backend + ": positions " + pos + ".." + (pos + n) + " relative error " + rel);
            pos += n;
        }
        int[] other = Fixtures.ints(expected(name).get("perplexity_ids"));
        int[][] batch = {ids, Arrays.copyOf(other, ids.length)};
        float[][] logits = model.forwardBatch(batch, new KVCache[] {model.newCache(ids.length), model.newCache(ids.length)}, true);
        float[] alone = model.logits(batch[1]);
        assertTrue(relativeError(logits[0], full, 0, full.length) <= 1e-5, "batched sequence 0");
        assertTrue(relativeError(logits[1], alone, 0, alone.length) <= 1e-5, "batched sequence 1");
    }

    @Test
    void weightsKeepTheirDtypeAndTransformersNames() throws IOException {
        LlamaModel model = model("bf16_k2", "scalar");
        var names = model.namedWeights();
        for (var t : names.values()) assertEquals(DType.BF16, t.dtype(), t.name());
        assertTrue(names.containsKey("model.layers.0.mlp.shared_expert_gate.weight"));
        assertTrue(names.containsKey("model.layers.1.mlp.experts.2.down_proj.weight"));
        assertTrue(names.containsKey("model.layers.1.mlp.shared_expert.up_proj.weight"));
        assertFalse(names.containsKey("lm_head.weight"), "tied");
    }

    /** the shared expert's gate matters: a backend whose gated add drops the sigmoid (adds the branch as is) fails the check */
    @Test
    void anUngatedSharedExpertFailsTheCheck() throws Exception {
        Backend ungated = new ScalarBackend() {
            @Override public void sigmoidGatedAdd(dive.backend.DeviceTensor out, dive.backend.DeviceTensor x, dive.backend.DeviceTensor gate, int rows, int width) {
                float[] o = download(out), xs = download(x);
                for (int i = 0; i < rows * width; i++) o[i] += xs[i];
                write(out, 0, o, rows * width);
            }
        };
        try (LlamaModel model = LlamaModel.load(dir("k2"), ungated)) {
            int[] ids = Fixtures.ints(expected("k2").get("input_ids"));
            float[] reference = Fixtures.readNpy(dir("k2").resolve("logits.npy"), ids.length, model.config().vocabSize());
            double rel = relativeError(model.logits(ids), reference, 0, reference.length);
            assertTrue(rel > 1e-2, "an ungated shared expert gives relative error " + rel);
        }
    }
}
