package dive.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.ScalarBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Checkpoint/config consistency both ways, finite weights and the context length: what used to load or run silently
 * wrong is refused with a message naming the tensor, option or limit.
 */
class LoadChecksTest {
    @TempDir Path tmp;

    /** the fixture copied into {@code tmp/sub}, its tensors and config edited */
    private Path copy(String sub, String fixture, Consumer<Map<String, Tensor>> tensors, Consumer<ObjectNode> config) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve(sub));
        Path src = Fixtures.dir(fixture);
        ObjectNode c = (ObjectNode) Fixtures.JSON.readTree(src.resolve("config.json").toFile());
        config.accept(c);
        Files.writeString(dir.resolve("config.json"), c.toPrettyString());
        Map<String, Tensor> t = Fixtures.readSafetensors(src.resolve("model.safetensors"));
        tensors.accept(t);
        Fixtures.writeSafetensors(dir.resolve("model.safetensors"), t);
        return dir;
    }

    private static String loadError(Path dir) {
        return assertThrows(ModelException.class, () -> LlamaModel.load(dir, new ScalarBackend())).getMessage();
    }

    // ---------------------------------------------------------------- tensors nothing reads

    @Test
    void configWithFewerLayersThanTheCheckpointIsRefused() throws Exception {
        Path dir = copy("fewer", "gqa", t -> {}, c -> c.put("num_hidden_layers", 1));
        String msg = loadError(dir);
        assertTrue(msg.contains("model.layers.1.") && msg.contains("not read"), msg);
        assertTrue(msg.contains("model.safetensors") && msg.contains("--allow-unused-tensors"), msg);
        assertTrue(msg.matches("(?s).*\\b9 tensors\\b.*"), "the count of unused tensors: " + msg);
        assertTrue(msg.contains("…") || msg.contains("more"), "only the first few are named: " + msg);
        // the library option loads it anyway, with a warning that lists them
        var warnings = new java.util.ArrayList<String>();
        var logger = java.util.logging.Logger.getLogger(LlamaModel.class.getName());
        var handler = new java.util.logging.Handler() {
            @Override public void publish(java.util.logging.LogRecord r) { warnings.add(r.getMessage()); }
            @Override public void flush() {}
            @Override public void close() {}
        };
        logger.addHandler(handler);
        try (LlamaModel model = LlamaModel.load(dir, new ScalarBackend(), LoadOptions.DEFAULT.withAllowUnusedTensors(true))) {
            assertEquals(1, model.config().numHiddenLayers());
        } finally {
            logger.removeHandler(handler);
        }
        assertEquals(1, warnings.size(), warnings.toString());
        assertTrue(warnings.getFirst().contains("model.layers.1.") && warnings.getFirst().contains("loading anyway"), warnings.getFirst());
    }

    @Test
    void aTensorNothingReadsIsRefusedByName() throws Exception {
        Path dir = copy("extra", "gqa", t -> t.put("model.extra.weight", Tensor.ofFloats("model.extra.weight", new float[4], 4)), c -> {});
        String msg = loadError(dir);
        assertTrue(msg.contains("'model.extra.weight'") && msg.contains("1 tensor"), msg);
        // rotary inverse frequencies (old transformers buffers) are derived from the config, not weights: accepted
        Path rope = copy("rope", "gqa", t -> t.put("model.layers.0.self_attn.rotary_emb.inv_freq",
                Tensor.ofFloats("model.layers.0.self_attn.rotary_emb.inv_freq", new float[6], 6)), c -> {});
        assertDoesNotThrow(() -> LlamaModel.load(rope, new ScalarBackend()).close());
    }

    // ---------------------------------------------------------------- NaN / Inf weights

    @Test
    void nanOrInfWeightsAreNamedWithTheirFirstIndex() throws Exception {
        String name = "model.layers.1.mlp.up_proj.weight";
        Path nan = copy("nan", "gqa", t -> t.get(name).setFloat(1234, Float.NaN), c -> {});
        String msg = loadError(nan);
        assertTrue(msg.contains(name) && msg.contains("1234") && msg.contains("NaN"), msg);
        Path inf = copy("inf", "gqa", t -> { t.get(name).setFloat(77, Float.NEGATIVE_INFINITY); t.get(name).setFloat(900, Float.NaN); }, c -> {});
        msg = loadError(inf);
        assertTrue(msg.contains(name) && msg.contains(" 77") && msg.contains("-Infinity"), msg);
        // BF16 weights: the same check on 16-bit words (0x7fc0 is a BF16 NaN)
        String bname = "model.norm.weight";
        Path bf = copy("bf16nan", "bf16", t -> {
            Tensor b = t.get(bname);
            assertEquals(DType.BF16, b.dtype());
            b.data().set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 2L * 5, (short) 0x7f80);
        }, c -> {});
        msg = loadError(bf);
        assertTrue(msg.contains(bname) && msg.contains(" 5") && msg.contains("Infinity"), msg);
        // every fixture is finite
        for (String f : Fixtures.NAMES) assertDoesNotThrow(() -> LlamaModel.load(Fixtures.dir(f), new ScalarBackend()).close(), f);
    }

    @Test
    void nonFiniteScanFindsTheFirstBadIndexAtEveryOffset() {
        for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16})
            for (int n : new int[] {1, 7, 64, 1000, 4099})
                for (int bad : new int[] {0, n / 2, n - 1}) {
                    int width = dt == DType.F32 ? 4 : 2;
                    MemorySegment seg = MemorySegment.ofArray(new byte[n * width]);
                    Tensor t = new Tensor("t", dt, new long[] {n}, seg);
                    assertEquals(-1, dive.io.NonFiniteScan.firstNonFinite(t), dt + " " + n);
                    t.setFloat(bad, Float.POSITIVE_INFINITY);
                    if (bad + 1 < n) t.setFloat(n - 1, Float.NaN);
                    assertEquals(bad, dive.io.NonFiniteScan.firstNonFinite(t), dt + " " + n + " " + bad);
                }
    }

    @Test
    void nonFiniteScanOfLargeTensorsInParallelAndOfConfinedMemory() {
        long n = (1L << 21) + 5;  // more than one parallel chunk
        for (java.lang.foreign.Arena arena : new java.lang.foreign.Arena[] {java.lang.foreign.Arena.ofShared(), java.lang.foreign.Arena.ofConfined()})
            try (arena) {
                Tensor t = new Tensor("big", DType.F32, new long[] {n}, arena.allocate(4 * n, 64));
                Tensor h = new Tensor("half", DType.F16, new long[] {n}, arena.allocate(2 * n, 64));
                assertArrayEquals(new long[] {-1, -1}, dive.io.NonFiniteScan.firstNonFinite(java.util.List.of(t, h)));
                t.setFloat(n - 3, Float.NaN);
                t.setFloat((1L << 20) + 1, Float.POSITIVE_INFINITY);
                h.setFloat(12, Float.NaN);
                assertArrayEquals(new long[] {(1L << 20) + 1, 12}, dive.io.NonFiniteScan.firstNonFinite(java.util.List.of(t, h)));
            }
    }

    // ---------------------------------------------------------------- context length

    @Test
    void positionsBeyondMaxPositionEmbeddingsAreRefused() throws Exception {
        Path dir = copy("short", "gqa", t -> {}, c -> c.put("max_position_embeddings", 8));
        try (LlamaModel model = LlamaModel.load(dir, new ScalarBackend())) {
            IllegalArgumentException g = assertThrows(IllegalArgumentException.class,
                    () -> Generator.generate(model, new int[] {1, 2, 3}, GenerateOptions.greedy(6)));
            assertTrue(g.getMessage().contains("9") && g.getMessage().contains("max_position_embeddings 8"), g.getMessage());
            assertEquals(5, Generator.generate(model, new int[] {1, 2, 3}, GenerateOptions.greedy(5).withEos()).length);
            IllegalArgumentException p = assertThrows(IllegalArgumentException.class,
                    () -> Perplexity.compute(model, new int[20], 9));
            assertTrue(p.getMessage().contains("window 9") && p.getMessage().contains("max_position_embeddings 8"), p.getMessage());
            assertDoesNotThrow(() -> Perplexity.compute(model, new int[20], 8));
            IllegalArgumentException f = assertThrows(IllegalArgumentException.class, () -> model.logits(new int[9]));
            assertTrue(f.getMessage().contains("max_position_embeddings 8"), f.getMessage());
        }
    }

    // ---------------------------------------------------------------- ids the tokenizer cannot decode

    @Test
    void samplingPicksOnlyAllowedIds() {
        float[] logits = {0f, 5f, 1f, 9f, 2f};
        java.util.BitSet allowed = new java.util.BitSet();
        allowed.set(0, 3);  // ids 0..2
        assertEquals(1, Sampler.greedy().sample(logits, 0, 5, allowed));
        Sampler hot = new Sampler(50f, 1f, 7L), nucleus = new Sampler(2f, 0.5f, 7L);
        for (int i = 0; i < 500; i++) {
            assertTrue(hot.sample(logits, 0, 5, allowed) < 3);
            assertTrue(nucleus.sample(logits, 0, 5, allowed) < 3);
        }
        assertArrayEquals(new float[] {0f, 5f, 1f, 9f, 2f}, logits, "the caller's logits are left as they were");
    }
}
