package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.Backend;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The transformers reference fixtures in src/test/resources/llama (made by src/test/python/make_llama_fixtures.py).
 * Holds a minimal safetensors reader/writer for test use only, written before dive.io was merged.
 */
final class Fixtures {
    static final Path ROOT = Path.of("src/test/resources/llama");
    static final String[] NAMES = {"gqa", "tiny_bpe", "rope_llama3", "rope_linear_v4", "bf16", "head_dim16"};
    static final ObjectMapper JSON = new ObjectMapper();

    private Fixtures() {}

    static Path dir(String name) { return ROOT.resolve(name); }

    static JsonNode expected(String name) throws IOException { return JSON.readTree(dir(name).resolve("expected.json").toFile()); }

    static LlamaModel load(Path dir, Backend backend) throws IOException {
        LlamaConfig config = LlamaConfig.load(dir);
        Map<String, Tensor> tensors = readSafetensors(dir.resolve("model.safetensors"));
        return LlamaModel.fromWeights(config, tensors::get, dir.toString(), backend, null);
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

    /** all tensors of one .safetensors file, on the heap (test-only reader) */
    static Map<String, Tensor> readSafetensors(Path file) throws IOException {
        byte[] bytes = Files.readAllBytes(file);
        long headerLen = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        JsonNode header = JSON.readTree(new String(bytes, 8, (int) headerLen, StandardCharsets.UTF_8));
        MemorySegment all = MemorySegment.ofArray(bytes);
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().equals("__metadata__")) continue;
            JsonNode info = e.getValue();
            long[] shape = new long[info.get("shape").size()];
            for (int i = 0; i < shape.length; i++) shape[i] = info.get("shape").get(i).asLong();
            long begin = 8 + headerLen + info.get("data_offsets").get(0).asLong();
            long end = 8 + headerLen + info.get("data_offsets").get(1).asLong();
            out.put(e.getKey(), new Tensor(e.getKey(), DType.fromSafetensors(info.get("dtype").asText()), shape, all.asSlice(begin, end - begin)));
        }
        return out;
    }

    /** writes tensors to a .safetensors file (test-only writer) */
    static void writeSafetensors(Path file, Map<String, Tensor> tensors) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        long offset = 0;
        for (Tensor t : tensors.values()) {
            ObjectNode info = header.putObject(t.name());
            info.put("dtype", t.dtype().safetensorsName());
            var shape = info.putArray("shape");
            for (long d : t.shape()) shape.add(d);
            info.putArray("data_offsets").add(offset).add(offset + t.data().byteSize());
            offset += t.data().byteSize();
        }
        byte[] json = JSON.writeValueAsBytes(header);
        int padded = (json.length + 7) / 8 * 8;
        ByteBuffer buf = ByteBuffer.allocate(8 + padded + (int) offset).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(padded).put(json);
        for (int i = json.length; i < padded; i++) buf.put((byte) ' ');
        for (Tensor t : tensors.values()) buf.put(t.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        Files.write(file, buf.array());
    }
}
