package dive.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.ScalarBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/** bad checkpoints and bad calls get errors naming the tensor / id / cache and what was expected */
class LlamaModelErrorsTest {
    @TempDir Path tmp;

    /** copies the fixture into tmp with its tensors edited (test safetensors writer) */
    private Path brokenCopy(String fixture, Consumer<Map<String, Tensor>> edit) throws IOException {
        Path src = Fixtures.dir(fixture);
        Files.copy(src.resolve("config.json"), tmp.resolve("config.json"));
        Map<String, Tensor> tensors = Fixtures.readSafetensors(src.resolve("model.safetensors"));
        edit.accept(tensors);
        Fixtures.writeSafetensors(tmp.resolve("model.safetensors"), tensors);
        return tmp;
    }

    private String loadError(Path dir) {
        return assertThrows(ModelException.class, () -> Fixtures.load(dir, new ScalarBackend())).getMessage();
    }

    @Test
    void wrongQProjShapeNamesTensorExpectedAndActual() throws IOException {
        String name = "model.layers.1.self_attn.q_proj.weight";
        String msg = loadError(brokenCopy("gqa", t -> t.put(name, Tensor.ofFloats(name, new float[40 * 48], 40, 48))));
        assertTrue(msg.contains(name) && msg.contains("[40, 48]") && msg.contains("expected [48, 48]"), msg);
        assertTrue(msg.contains(tmp.toString()), msg);
    }

    @Test
    void transposedDownProjIsRejected() throws IOException {
        // gqa: down_proj is [hidden 48, intermediate 80]; its transpose has the same element count
        String name = "model.layers.0.mlp.down_proj.weight";
        String msg = loadError(brokenCopy("gqa", t -> t.put(name, t.get(name).reshape(80, 48))));
        assertTrue(msg.contains(name) && msg.contains("[80, 48]") && msg.contains("expected [48, 80]"), msg);
    }

    @Test
    void unsupportedDtypeIsNamed() throws IOException {
        String name = "model.norm.weight";
        String msg = loadError(brokenCopy("gqa", t -> t.put(name, new Tensor(name, DType.I32, new long[] {48}, MemorySegment.ofArray(new byte[48 * 4])))));
        assertTrue(msg.contains(name) && msg.contains("I32") && msg.contains("F32, BF16 or F16"), msg);
    }

    @Test
    void missingTensorIsNamed() throws IOException {
        String name = "model.layers.1.mlp.up_proj.weight";
        String msg = loadError(brokenCopy("gqa", t -> t.remove(name)));
        assertTrue(msg.contains(name) && msg.contains("missing"), msg);
    }

    @Test
    void mlpBiasTensorsMustMatchTheConfig() throws IOException {
        // mlp_bias: true but a bias is missing → named; a bias of the wrong length → named with both shapes
        String name = "model.layers.1.mlp.gate_proj.bias";
        String msg = loadError(brokenCopy("mlp_bias", t -> t.remove(name)));
        assertTrue(msg.contains(name) && msg.contains("missing") && msg.contains("mlp_bias"), msg);
        String down = "model.layers.0.mlp.down_proj.bias";
        msg = assertThrows(ModelException.class, () -> Fixtures.load(brokenCopyInto(tmp.resolve("short"), "mlp_bias",
                t -> t.put(down, Tensor.ofFloats(down, new float[80], 80))), new ScalarBackend())).getMessage();
        assertTrue(msg.contains(down) && msg.contains("[80]") && msg.contains("expected [48]"), msg);
        // bias tensors under a config without mlp_bias are refused, not ignored
        Path dir = brokenCopyInto(tmp.resolve("unflagged"), "mlp_bias", t -> {});
        ObjectNode c = (ObjectNode) Fixtures.JSON.readTree(dir.resolve("config.json").toFile());
        c.put("mlp_bias", false);
        Files.writeString(dir.resolve("config.json"), c.toPrettyString());
        msg = assertThrows(ModelException.class, () -> Fixtures.load(dir, new ScalarBackend())).getMessage();
        assertTrue(msg.contains("model.layers.0.mlp.gate_proj.bias") && msg.contains("mlp_bias"), msg);
    }

    private Path brokenCopyInto(Path dir, String fixture, Consumer<Map<String, Tensor>> edit) throws IOException {
        Files.createDirectories(dir);
        Path src = Fixtures.dir(fixture);
        Files.copy(src.resolve("config.json"), dir.resolve("config.json"));
        Map<String, Tensor> tensors = Fixtures.readSafetensors(src.resolve("model.safetensors"));
        edit.accept(tensors);
        Fixtures.writeSafetensors(dir.resolve("model.safetensors"), tensors);
        return dir;
    }

    @Test
    void untiedConfigWithoutLmHead() throws IOException {
        // head_dim16 is tied (no lm_head.weight); claiming untied must name the missing tensor
        Path dir = brokenCopy("head_dim16", t -> {});
        ObjectNode c = (ObjectNode) Fixtures.JSON.readTree(dir.resolve("config.json").toFile());
        c.put("tie_word_embeddings", false);
        Files.writeString(dir.resolve("config.json"), c.toPrettyString());
        String msg = loadError(dir);
        assertTrue(msg.contains("lm_head.weight") && msg.contains("tie_word_embeddings"), msg);
    }

    @Test
    void tokenIdsOutsideVocabularyAndFullCache() throws IOException {
        LlamaModel model = Fixtures.load(Fixtures.dir("gqa"), new ScalarBackend());
        KVCache cache = model.newCache(8);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> model.forward(new int[] {5, 300}, cache));
        assertTrue(e.getMessage().contains("token id 300") && e.getMessage().contains("position 1") && e.getMessage().contains("[0, 300)"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> model.forward(new int[] {-1}, cache));
        assertEquals(0, cache.length(), "a rejected call leaves the cache as it was");

        KVCache small = model.newCache(2);
        model.forward(new int[] {1, 2}, small);
        IllegalStateException full = assertThrows(IllegalStateException.class, () -> model.forward(new int[] {3}, small));
        assertTrue(full.getMessage().contains("capacity 2"), full.getMessage());
        assertThrows(IllegalArgumentException.class, () -> model.forward(new int[0], model.newCache(1)));
        KVCache shared = model.newCache(4);
        assertThrows(IllegalArgumentException.class,
                () -> model.forwardBatch(new int[][] {{1}, {2}}, new KVCache[] {shared, shared}, true));
    }
}
