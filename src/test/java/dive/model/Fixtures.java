package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.io.Checkpoint;
import dive.io.SafetensorsWriter;
import dive.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The transformers reference fixtures in src/test/resources/llama (made by src/test/python/make_llama_fixtures.py).
 * Models load through {@link LlamaModel#load} (dive.io's Checkpoint); .npy expectations through a small reader here.
 */
final class Fixtures {
    static final Path ROOT = Path.of("src/test/resources/llama");
    static final String[] NAMES = {"gqa", "tiny_bpe", "rope_llama3", "rope_linear_v4", "bf16", "head_dim16", "mlp_bias"};
    static final ObjectMapper JSON = new ObjectMapper();

    private Fixtures() {}

    static Path dir(String name) { return ROOT.resolve(name); }

    static JsonNode expected(String name) throws IOException { return JSON.readTree(dir(name).resolve("expected.json").toFile()); }

    static LlamaModel load(Path dir, Backend backend) throws IOException {
        return LlamaModel.load(dir, backend);
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) out[i] = array.get(i).asInt();
        return out;
    }

    /** a little-endian float32 .npy file → its data (C order); shape checked against {@code expectedShape} */
    static float[] readNpy(Path file, long... expectedShape) throws IOException {
        byte[] bytes = Files.readAllBytes(file);
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes[0] != (byte) 0x93 || bytes[1] != 'N') throw new IOException(file + ": not an .npy file");
        int major = bytes[6];
        int headerLen = major == 1 ? Short.toUnsignedInt(buf.getShort(8)) : buf.getInt(8);
        int dataStart = (major == 1 ? 10 : 12) + headerLen;
        String header = new String(bytes, major == 1 ? 10 : 12, headerLen, StandardCharsets.ISO_8859_1);
        if (!header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False"))
            throw new IOException(file + ": expected little-endian float32 in C order, header " + header);
        String shape = header.substring(header.indexOf("'shape': (") + 10, header.indexOf(')', header.indexOf("'shape': (")));
        String[] dims = shape.split(",\\s*");
        StringBuilder want = new StringBuilder();
        for (int i = 0; i < expectedShape.length; i++) want.append(i == 0 ? "" : ", ").append(expectedShape[i]);
        String got = String.join(", ", java.util.Arrays.stream(dims).filter(s -> !s.isBlank()).toList());
        if (!got.equals(want.toString())) throw new IOException(file + ": shape (" + got + "), expected (" + want + ")");
        int n = (bytes.length - dataStart) / 4;
        float[] out = new float[n];
        buf.position(dataStart);
        buf.asFloatBuffer().get(out);
        return out;
    }

    /** all tensors of one .safetensors file, copied to the heap (so the file can be closed) */
    static Map<String, Tensor> readSafetensors(Path file) throws IOException {
        Map<String, Tensor> out = new LinkedHashMap<>();
        try (Checkpoint c = Checkpoint.open(file.getParent())) {
            for (String name : c.names()) {
                Tensor t = c.tensor(name);
                MemorySegment copy = MemorySegment.ofArray(new byte[Math.toIntExact(t.data().byteSize())]);
                copy.copyFrom(t.data());
                out.put(name, new Tensor(name, t.dtype(), t.shape(), copy));
            }
        }
        return out;
    }

    static void writeSafetensors(Path file, Map<String, Tensor> tensors) throws IOException {
        SafetensorsWriter.write(file, List.copyOf(tensors.values()), Map.of("format", "pt"));
    }
}
