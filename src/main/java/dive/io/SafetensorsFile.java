package dive.io;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One safetensors file, memory-mapped read-only into a shared {@link Arena} (no 2 GB limit, zero
 * copy). Every tensor is a {@link Tensor} whose data is a slice of the mapped segment; closing the
 * file closes the arena and invalidates those views. Safe to read from many threads.
 *
 * <p>Layout: 8 bytes little-endian header length N, N bytes of UTF-8 JSON header, then the data
 * section. {@link #open} enforces the rules of the reference implementation (HF safetensors
 * {@code tensor.rs}): N at most {@value #MAX_HEADER_BYTES}; header valid UTF-8, one JSON object
 * (whitespace around it allowed, as the space padding needs), no duplicate keys (stricter than the
 * reference, which keeps the last); optional {@code __metadata__} map of string to string;
 * each tensor has a known dtype, a shape of non-negative integers and {@code data_offsets
 * [begin, end]} with begin &le; end; sorted by offsets the tensors tile the data section from 0
 * without gap or overlap; each tensor's byte count equals element count &times; dtype size
 * (overflow checked); the data section ends exactly where the last tensor ends.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** the reference implementation's limit on the JSON header */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    static final String METADATA_KEY = "__metadata__";
    private static final ValueLayout.OfLong U64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** JSON reader that rejects duplicate keys and anything after the top-level value */
    static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private final Path path;
    private final Arena arena;
    private final Map<String, String> metadata;
    private final Map<String, Tensor> tensors; // in file order (by data offset)
    private volatile boolean closed;

    private SafetensorsFile(Path path, Arena arena, Map<String, String> metadata, Map<String, Tensor> tensors) {
        this.path = path;
        this.arena = arena;
        this.metadata = metadata;
        this.tensors = tensors;
    }

    /** Maps {@code file} read-only and validates its header against the data section. */
    public static SafetensorsFile open(Path file) throws IOException {
        Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            long fileBytes = channel.size();
            if (fileBytes < 8)
                throw SafetensorsException.of(file, "file has " + fileBytes + " bytes, shorter than the 8-byte header length");
            MemorySegment mapped = channel.map(FileChannel.MapMode.READ_ONLY, 0, fileBytes, arena);
            return parse(file, arena, mapped);
        } catch (SafetensorsException e) {
            arena.close();
            throw e;
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw new SafetensorsException(file + ": cannot map the file (" + e + ")", e);
        }
    }

    private record Entry(String name, DType dtype, long[] shape, long begin, long end) {}

    private static SafetensorsFile parse(Path file, Arena arena, MemorySegment mapped) throws SafetensorsException {
        long fileBytes = mapped.byteSize();
        long headerBytes = mapped.get(U64_LE, 0); // u64 on disk: negative here means >= 2^63
        if (headerBytes < 0 || headerBytes > MAX_HEADER_BYTES)
            throw SafetensorsException.of(file, "header length " + Long.toUnsignedString(headerBytes)
                    + " bytes exceeds the limit of " + MAX_HEADER_BYTES + " bytes");
        if (8 + headerBytes > fileBytes)
            throw SafetensorsException.of(file, "header length " + headerBytes + " bytes runs past the end of the file ("
                    + fileBytes + " bytes, header needs 8 + " + headerBytes + ")");

        byte[] headerUtf8 = mapped.asSlice(8, headerBytes).toArray(ValueLayout.JAVA_BYTE);
        String header;
        try {
            header = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(headerUtf8)).toString();
        } catch (CharacterCodingException e) {
            throw SafetensorsException.of(file, "header is not valid UTF-8 (" + e + ")");
        }
        JsonNode root;
        try {
            root = JSON.readTree(header);
        } catch (JacksonException e) {
            String why = e.getOriginalMessage();
            if (why != null && why.toLowerCase().contains("duplicate"))
                throw SafetensorsException.of(file, "header has a duplicate key: " + why);
            throw SafetensorsException.of(file, "header is not valid JSON: " + why);
        }
        if (root == null || !root.isObject())
            throw SafetensorsException.of(file, "header is not a JSON object, found " + (root == null ? "nothing" : root.getNodeType()));

        Map<String, String> metadata = new LinkedHashMap<>();
        List<Entry> entries = new ArrayList<>();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            String name = field.getKey();
            JsonNode value = field.getValue();
            if (name.equals(METADATA_KEY)) {
                readMetadata(file, value, metadata);
            } else {
                entries.add(readEntry(file, name, value));
            }
        }

        // the data section is tiled by the tensors, sorted by (begin, end); ties keep header order
        List<Entry> byOffset = new ArrayList<>(entries);
        byOffset.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long dataStart = 8 + headerBytes;
        long dataBytes = fileBytes - dataStart;
        long expectedBegin = 0;
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (Entry e : byOffset) {
            String offsets = "data_offsets [" + e.begin + ", " + e.end + "]";
            if (e.begin > expectedBegin)
                throw SafetensorsException.of(file, e.name, offsets + " leave a gap: the previous tensor ends at " + expectedBegin
                        + " (tensors must be contiguous from offset 0)");
            if (e.begin < expectedBegin)
                throw SafetensorsException.of(file, e.name, offsets + " overlap the previous tensor, which ends at " + expectedBegin);
            long needBytes;
            try {
                needBytes = Math.multiplyExact(Tensor.numel(e.shape), e.dtype.bytes);
            } catch (ArithmeticException x) {
                throw SafetensorsException.of(file, e.name, "shape " + Arrays.toString(e.shape) + " of " + e.dtype
                        + " overflows a 64-bit byte count");
            }
            long holdBytes = e.end - e.begin;
            if (holdBytes != needBytes)
                throw SafetensorsException.of(file, e.name, offsets + " hold " + holdBytes + " bytes but shape "
                        + Arrays.toString(e.shape) + " of " + e.dtype + " needs " + needBytes);
            if (e.end > dataBytes)
                throw SafetensorsException.of(file, e.name, "file is truncated: " + offsets + " end past the data section, which has "
                        + dataBytes + " bytes (file " + fileBytes + " bytes, data starts at " + dataStart + ")");
            expectedBegin = e.end;
            tensors.put(e.name, new Tensor(e.name, e.dtype, e.shape, mapped.asSlice(dataStart + e.begin, holdBytes)));
        }
        if (expectedBegin != dataBytes)
            throw SafetensorsException.of(file, "data section has " + dataBytes + " bytes but the tensors end at "
                    + expectedBegin + ": " + (dataBytes - expectedBegin) + " bytes after the last tensor");
        return new SafetensorsFile(file, arena, Collections.unmodifiableMap(metadata), Collections.unmodifiableMap(tensors));
    }

    private static void readMetadata(Path file, JsonNode value, Map<String, String> out) throws SafetensorsException {
        if (value.isNull()) return;
        if (!value.isObject())
            throw SafetensorsException.of(file, "__metadata__ must be a JSON object of string to string, found " + value.getNodeType());
        for (Map.Entry<String, JsonNode> kv : value.properties()) {
            if (!kv.getValue().isTextual())
                throw SafetensorsException.of(file, "__metadata__ value of '" + kv.getKey() + "' must be a string, found "
                        + kv.getValue().getNodeType() + " " + kv.getValue());
            out.put(kv.getKey(), kv.getValue().textValue());
        }
    }

    private static Entry readEntry(Path file, String name, JsonNode info) throws SafetensorsException {
        if (!info.isObject())
            throw SafetensorsException.of(file, name, "entry must be a JSON object with dtype, shape and data_offsets, found " + info.getNodeType());
        JsonNode dtypeNode = info.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual())
            throw SafetensorsException.of(file, name, "dtype is missing or not a string");
        DType dtype = DType.fromSafetensors(dtypeNode.textValue());
        if (dtype == null)
            throw SafetensorsException.of(file, name, "unknown dtype '" + dtypeNode.textValue() + "' (known: "
                    + Arrays.toString(DType.values()) + ")");
        long[] shape = readLongs(file, name, "shape", info.get("shape"), -1);
        long[] offsets = readLongs(file, name, "data_offsets", info.get("data_offsets"), 2);
        if (offsets[0] > offsets[1])
            throw SafetensorsException.of(file, name, "data_offsets [" + offsets[0] + ", " + offsets[1] + "] have begin > end");
        return new Entry(name, dtype, shape, offsets[0], offsets[1]);
    }

    /** a JSON array of non-negative integers that fit in a long; {@code length} -1 for any length */
    private static long[] readLongs(Path file, String name, String field, JsonNode node, int length) throws SafetensorsException {
        String expected = length < 0 ? "an array of non-negative integers" : "an array of " + length + " non-negative integers";
        if (node == null)
            throw SafetensorsException.of(file, name, field + " is missing (expected " + expected + ")");
        if (!node.isArray() || (length >= 0 && node.size() != length))
            throw SafetensorsException.of(file, name, field + " is " + node + ", expected " + expected);
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0)
                throw SafetensorsException.of(file, name, field + " is " + node + ", expected " + expected);
            out[i] = v.longValue();
        }
        return out;
    }

    public Path path() { return path; }

    /** the {@code __metadata__} map, empty when the file has none */
    public Map<String, String> metadata() { return metadata; }

    /** tensor names in file order (by data offset) */
    public List<String> names() { return List.copyOf(tensors.keySet()); }

    public boolean has(String name) { return tensors.containsKey(name); }

    /** a zero-copy view of the named tensor; valid until {@link #close()} */
    public Tensor tensor(String name) {
        if (closed) throw new IllegalStateException(path + ": file is closed (reading tensor '" + name + "')");
        Tensor t = tensors.get(name);
        if (t == null) throw new IllegalArgumentException(path + ": no tensor '" + name + "' in this file");
        return t;
    }

    /** unmaps the file; every tensor view taken from it becomes invalid */
    @Override public void close() {
        if (closed) return;
        synchronized (this) {
            if (closed) return;
            closed = true;
            arena.close();
        }
    }

    @Override public String toString() { return "SafetensorsFile[" + path + ", " + tensors.size() + " tensors]"; }
}
