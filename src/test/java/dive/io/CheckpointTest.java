package dive.io;

import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** Checkpoint.open: which files a model directory's weights come from, and the errors when that is unclear. */
class CheckpointTest {
    @TempDir Path dir;

    private static SafetensorsException assertRejected(Path dirOrIndex, String... fragments) {
        Path ckptDir = Files.isDirectory(dirOrIndex) || !Files.exists(dirOrIndex) ? dirOrIndex : dirOrIndex.getParent();
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> Checkpoint.open(ckptDir).close());
        assertTrue(e.getMessage().startsWith(dirOrIndex.toString()), "names " + dirOrIndex + ": " + e.getMessage());
        for (String f : fragments) assertTrue(e.getMessage().contains(f), "'" + f + "' in: " + e.getMessage());
        return e;
    }

    private static void writeF32(Path file, String name, float... values) throws IOException {
        SafetensorsWriter.write(file, List.of(Tensor.ofFloats(name, values, values.length)), Map.of());
    }

    @Test void missingDirectoryOrAFileIsRejected() throws IOException {
        assertRejected(dir.resolve("nope"), "checkpoint directory does not exist");
        Path file = dir.resolve("model.safetensors");
        writeF32(file, "w", 1f);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> Checkpoint.open(file));
        assertTrue(e.getMessage().startsWith(file + ": is not a directory"), e.getMessage());
    }

    @Test void directoryWithoutSafetensorsIsRejected() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        assertRejected(dir, "no model.safetensors, model.safetensors.index.json or other *.safetensors file");
    }

    @Test void theOnlySafetensorsFileIsUsed() throws IOException {
        writeF32(dir.resolve("weights.safetensors"), "w", 1f, 2f);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertEquals(List.of("w"), c.names());
            assertEquals(dir, c.dir());
            assertArrayEquals(new float[]{1f, 2f}, c.tensor("w").toFloatArray());
        }
    }

    @Test void severalFilesWithoutIndexAreRejected() throws IOException {
        writeF32(dir.resolve("a.safetensors"), "w", 1f);
        writeF32(dir.resolve("b.safetensors"), "v", 1f);
        assertRejected(dir, "several *.safetensors files [a.safetensors, b.safetensors]", "no model.safetensors.index.json");
    }

    @Test void modelSafetensorsComesFirstLikeTransformers() throws IOException {
        writeF32(dir.resolve("model.safetensors"), "single", 1f);
        writeF32(dir.resolve("other.safetensors"), "other", 2f);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertEquals(List.of("single"), c.names());
            assertTrue(c.has("single"));
            assertFalse(c.has("other"));
        }
    }

    @Test void unknownTensorNamesTheDirectory() throws IOException {
        writeF32(dir.resolve("model.safetensors"), "w", 1f);
        try (Checkpoint c = Checkpoint.open(dir)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> c.tensor("model.layers.0.input_layernorm.weight"));
            assertTrue(e.getMessage().contains(dir.toString()) && e.getMessage().contains("'model.layers.0.input_layernorm.weight'"), e.getMessage());
        }
    }

    @Test void indexMustBeValid() throws IOException {
        Path index = dir.resolve("model.safetensors.index.json");
        Files.writeString(index, "{\"weight_map\": ");
        assertRejected(index, "not valid JSON");
        Files.writeString(index, "{\"metadata\": {\"total_size\": 4}}");
        assertRejected(index, "\"weight_map\" is missing");
        Files.writeString(index, "{\"weight_map\": {\"w\": \"a.safetensors\", \"w\": \"b.safetensors\"}}");
        assertRejected(index, "not valid JSON", "w"); // duplicate tensor in the weight map
        Files.writeString(index, "{\"weight_map\": {\"w\": 3}}");
        assertRejected(index, "tensor 'w'", "must be a shard file name");
    }

    @Test void indexPointingAtAMissingShardOrOutsideTheDirectoryIsRejected() throws IOException {
        Path index = dir.resolve("model.safetensors.index.json");
        Files.writeString(index, "{\"weight_map\": {\"w\": \"model-00001-of-00002.safetensors\"}}");
        assertRejected(index, "tensor 'w'", "shard file 'model-00001-of-00002.safetensors' does not exist");
        Files.writeString(index, "{\"weight_map\": {\"w\": \"../secret.safetensors\"}}");
        assertRejected(index, "tensor 'w'", "must be a plain file name");
    }

    @Test void indexNamingATensorItsShardLacksIsRejected() throws IOException {
        writeF32(dir.resolve("model-00001-of-00002.safetensors"), "a", 1f);
        writeF32(dir.resolve("model-00002-of-00002.safetensors"), "b", 2f);
        Path index = dir.resolve("model.safetensors.index.json");
        Files.writeString(index, """
                {"metadata": {"total_size": 8},
                 "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}
                """);
        assertRejected(index, "tensor 'b'", "weight_map puts it in 'model-00001-of-00002.safetensors' but that shard does not hold it");
    }

    @Test void shardWithABadFileNamesTheShard() throws IOException {
        Path shard = dir.resolve("model-00001-of-00001.safetensors");
        Files.write(shard, new byte[3]);
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"weight_map\": {\"a\": \"model-00001-of-00001.safetensors\"}}");
        assertRejected(shard, "shorter than the 8-byte header length");
    }
}
