package dive.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Files written by the reference (python safetensors.torch.save_file, see
 * src/test/python/make_safetensors_golden.py) against the expectations it wrote to golden.json.
 */
class SafetensorsGoldenTest {
    static final Path GOLDEN_DIR = Path.of("src/test/resources/safetensors");
    @TempDir Path dir;

    private static JsonNode golden() throws IOException {
        return new ObjectMapper().readTree(GOLDEN_DIR.resolve("golden.json").toFile());
    }

    @Test void readsEveryElementAsTheReferenceWroteIt() throws IOException {
        JsonNode golden = golden();
        try (SafetensorsFile f = SafetensorsFile.open(GOLDEN_DIR.resolve("golden.safetensors"))) {
            assertEquals(Map.of("format", "pt"), f.metadata());
            List<String> expectedNames = new ArrayList<>();
            for (JsonNode t : golden.get("tensors")) expectedNames.add(t.get("name").asText());
            assertEquals(expectedNames, f.names(), "file order = data-offset order");

            long dataStart = 8 + golden.get("header_length").asLong();
            for (JsonNode expected : golden.get("tensors")) {
                String name = expected.get("name").asText();
                Tensor t = f.tensor(name);
                assertEquals(DType.valueOf(expected.get("dtype").asText()), t.dtype(), name);
                long[] shape = new long[expected.get("shape").size()];
                for (int i = 0; i < shape.length; i++) shape[i] = expected.get("shape").get(i).asLong();
                assertArrayEquals(shape, t.shape(), name);
                // the view is the slice of the mapping at data_offsets
                long begin = expected.get("data_offsets").get(0).asLong();
                long end = expected.get("data_offsets").get(1).asLong();
                assertEquals(end - begin, t.data().byteSize(), name);
                assertTrue(t.data().isMapped() && t.data().isReadOnly(), name + " is a read-only mapped view");
                if (t.data().byteSize() > 0)
                    assertEquals(dataStart + begin, t.data().address() - baseAddress(f), name + " sits at its data offset");

                switch (t.dtype()) {
                    case I32 -> {
                        JsonNode ints = expected.get("ints");
                        assertEquals(ints.size(), t.numel());
                        for (int i = 0; i < ints.size(); i++) assertEquals(ints.get(i).asInt(), t.data().getAtIndex(Tensor.I32, i), name + "[" + i + "]");
                    }
                    case I64 -> {
                        JsonNode ints = expected.get("ints");
                        assertEquals(ints.size(), t.numel());
                        for (int i = 0; i < ints.size(); i++) assertEquals(ints.get(i).asLong(), t.data().getAtIndex(Tensor.I64, i), name + "[" + i + "]");
                    }
                    case F32, BF16, F16 -> {
                        JsonNode raw = expected.get("raw_bits");
                        JsonNode widened = expected.get("f32_bits");
                        assertEquals(raw.size(), t.numel());
                        for (int i = 0; i < raw.size(); i++) {
                            int storedBits = t.dtype() == DType.F32 ? t.data().getAtIndex(Tensor.I32, i) : t.data().getAtIndex(Tensor.I16, i) & 0xffff;
                            assertEquals(raw.get(i).asLong() & 0xffffffffL, storedBits & 0xffffffffL, name + "[" + i + "] stored bits");
                            // widened to float exactly as torch's .float() does
                            assertEquals(widened.get(i).asLong(), Float.floatToRawIntBits(t.getFloat(i)) & 0xffffffffL, name + "[" + i + "] as float");
                        }
                    }
                    default -> fail("unexpected dtype " + t.dtype());
                }
            }
        }
    }

    /** address of the mapping's first byte: the first tensor's address minus its file position */
    private static long baseAddress(SafetensorsFile f) throws IOException {
        JsonNode first = golden().get("tensors").get(0);
        long dataStart = 8 + golden().get("header_length").asLong();
        return f.tensor(first.get("name").asText()).data().address() - dataStart - first.get("data_offsets").get(0).asLong();
    }

    @Test void readsReferenceMetadata() throws IOException {
        JsonNode expected = golden().get("metadata_file");
        Map<String, String> metadata = new LinkedHashMap<>();
        expected.get("metadata").properties().forEach(kv -> metadata.put(kv.getKey(), kv.getValue().asText()));
        try (SafetensorsFile f = SafetensorsFile.open(GOLDEN_DIR.resolve(expected.get("file").asText()))) {
            assertEquals(metadata, f.metadata());
            assertEquals("h\u00e9llo \u2713", f.metadata().get("unicode"));
            assertArrayEquals(new float[]{0, 1, 2, 3, 4, 5}, f.tensor("w").toFloatArray()); // torch.arange(6)
        }
    }

    @Test void writerReproducesTheReferenceFileByteForByte() throws IOException {
        Path golden = GOLDEN_DIR.resolve("golden.safetensors");
        Path copy = dir.resolve("written.safetensors");
        try (SafetensorsFile f = SafetensorsFile.open(golden)) {
            List<Tensor> tensors = new ArrayList<>();
            for (String name : f.names()) tensors.add(f.tensor(name));
            SafetensorsWriter.write(copy, tensors, Map.of());
        }
        assertArrayEquals(Files.readAllBytes(golden), Files.readAllBytes(copy));
    }
}
