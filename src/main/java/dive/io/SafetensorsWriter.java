package dive.io;

import dive.util.AtomicFiles;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Writes safetensors files the way HF safetensors does: 8-byte little-endian header length, a
 * compact JSON header padded with spaces to a multiple of 8 bytes, then the tensors' bytes.
 * The header always carries {@code "__metadata__": {"format": "pt"}} (merged with the caller's
 * metadata). Tensors are laid out contiguously from offset 0 in the order given. Every file is
 * written atomically (temp file in the same directory, then rename).
 */
public final class SafetensorsWriter {
    /** file name of a single-file checkpoint */
    public static final String SINGLE_FILE = "model.safetensors";
    /** file name of the index of a sharded checkpoint */
    public static final String INDEX_FILE = "model.safetensors.index.json";
    private static final int COPY_CHUNK_BYTES = 8 << 20;

    private SafetensorsWriter() {}

    /** Writes {@code tensors} (in this order) to {@code file}, atomically; {@code metadata} may be empty or null. */
    public static void write(Path file, List<Tensor> tensors, Map<String, String> metadata) throws IOException {
        write(file, tensors, metadata, null);
    }

    /**
     * As {@link #write(Path, List, Map)}, with every F32/BF16/F16 tensor written as {@code dtype} (null: each in its
     * own dtype), converted chunk by chunk on the way to the file (BF16 and F16 rounded to nearest even): nothing of
     * the size of a tensor is allocated. Other dtypes are written as they are.
     */
    public static void write(Path file, List<Tensor> tensors, Map<String, String> metadata, DType dtype) throws IOException {
        checkNames(file, tensors);
        if (dtype != null && !dtype.isFloatWeight()) throw new SafetensorsException(file + ": cannot write weights as " + dtype + " (expected F32, BF16 or F16)");
        byte[] header = header(file, tensors, metadata, dtype);
        AtomicFiles.write(file, channel -> {
            ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
            AtomicFiles.writeFully(channel, length);
            AtomicFiles.writeFully(channel, ByteBuffer.wrap(header));
            ByteBuffer chunk = ByteBuffer.allocateDirect(COPY_CHUNK_BYTES);
            for (Tensor t : tensors) {
                DType to = written(t, dtype);
                if (to == t.dtype()) writeData(file, channel, t, chunk);
                else writeConverted(channel, t, to, chunk);
            }
        });
    }

    /** the dtype tensor {@code t} is written as when the caller asks for {@code dtype} (null: its own) */
    static DType written(Tensor t, DType dtype) {
        return dtype != null && t.dtype().isFloatWeight() ? dtype : t.dtype();
    }

    /** the tensor's elements converted to {@code to} (F32, BF16 or F16), a chunk at a time */
    private static void writeConverted(FileChannel channel, Tensor t, DType to, ByteBuffer chunk) throws IOException {
        long n = t.numel();
        int perChunk = chunk.capacity() / to.bytes;
        chunk.order(ByteOrder.LITTLE_ENDIAN);
        for (long first = 0; first < n; first += perChunk) {
            int count = (int) Math.min(perChunk, n - first);
            chunk.clear();
            for (int i = 0; i < count; i++) {
                float f = t.getFloat(first + i);
                switch (to) {
                    case F32 -> chunk.putFloat(f);
                    case BF16 -> chunk.putShort(DType.floatToBf16(f));
                    case F16 -> chunk.putShort(Float.floatToFloat16(f));
                    default -> throw new IllegalArgumentException(to.toString());
                }
            }
            chunk.flip();
            AtomicFiles.writeFully(channel, chunk);
        }
    }

    /**
     * Writes a checkpoint into {@code dir} (created if missing): {@code model.safetensors} when all
     * tensor bytes fit in {@code maxShardBytes}, else shards {@code model-0000i-of-0000n.safetensors}
     * (filled in order; a tensor larger than the limit gets a shard of its own) and then, last,
     * {@code model.safetensors.index.json}. Removes nothing; refuses to write a layout that an
     * existing file of the other layout would shadow.
     */
    public static void writeSharded(Path dir, List<Tensor> tensors, long maxShardBytes, Map<String, String> metadata) throws IOException {
        writeSharded(dir, tensors, maxShardBytes, metadata, null);
    }

    /** as {@link #writeSharded(Path, List, long, Map)}, with float tensors written as {@code dtype} (null: their own) */
    public static void writeSharded(Path dir, List<Tensor> tensors, long maxShardBytes, Map<String, String> metadata, DType dtype) throws IOException {
        if (maxShardBytes <= 0)
            throw new SafetensorsException(dir + ": maxShardBytes must be positive, got " + maxShardBytes);
        checkNames(dir, tensors);
        List<List<Tensor>> shards = new ArrayList<>();
        List<Tensor> current = new ArrayList<>();
        long currentBytes = 0;
        for (Tensor t : tensors) {
            long bytes = t.numel() * written(t, dtype).bytes;
            if (!current.isEmpty() && currentBytes + bytes > maxShardBytes) {
                shards.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(t);
            currentBytes += bytes;
        }
        shards.add(current);

        Files.createDirectories(dir);
        Path single = dir.resolve(SINGLE_FILE);
        Path index = dir.resolve(INDEX_FILE);
        if (shards.size() == 1) {
            if (Files.exists(index))
                throw new SafetensorsException(index + ": exists and would not match a single-file checkpoint; remove it first");
            write(single, tensors, metadata, dtype);
            return;
        }
        if (Files.exists(single))
            throw new SafetensorsException(single + ": exists and would shadow the sharded checkpoint (loaders read it first); remove it first");
        int n = shards.size();
        Map<String, String> weightMap = new LinkedHashMap<>();
        long totalBytes = 0;
        for (int i = 0; i < n; i++) {
            String shardName = String.format("model-%05d-of-%05d.safetensors", i + 1, n);
            for (Tensor t : shards.get(i)) {
                weightMap.put(t.name(), shardName);
                totalBytes += t.numel() * written(t, dtype).bytes;
            }
            write(dir.resolve(shardName), shards.get(i), metadata, dtype);
        }
        ObjectNode root = SafetensorsFile.JSON.createObjectNode();
        root.putObject("metadata").put("total_size", totalBytes);
        ObjectNode map = root.putObject("weight_map");
        weightMap.forEach(map::put);
        // indent 2, "key": value, as Python's json.dumps(indent=2) writes HF's index
        var printer = new DefaultPrettyPrinter().withSeparators(
                Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER));
        byte[] json = (SafetensorsFile.JSON.writer(printer).writeValueAsString(root) + "\n")
                .getBytes(StandardCharsets.UTF_8);
        AtomicFiles.write(index, channel -> AtomicFiles.writeFully(channel, ByteBuffer.wrap(json)));
    }

    private static void checkNames(Path target, List<Tensor> tensors) throws SafetensorsException {
        Set<String> seen = new HashSet<>();
        for (Tensor t : tensors) {
            if (t.name().equals(SafetensorsFile.METADATA_KEY))
                throw SafetensorsException.of(target, t.name(), "the name is reserved for the header's metadata");
            if (!seen.add(t.name()))
                throw SafetensorsException.of(target, t.name(), "appears twice in the list of tensors to write");
        }
    }

    /** the JSON header, space-padded to a multiple of 8 bytes */
    static byte[] header(Path file, List<Tensor> tensors, Map<String, String> metadata) throws IOException {
        return header(file, tensors, metadata, null);
    }

    static byte[] header(Path file, List<Tensor> tensors, Map<String, String> metadata, DType dtype) throws IOException {
        Map<String, String> merged = new LinkedHashMap<>();
        merged.put("format", "pt");
        for (Map.Entry<String, String> kv : (metadata == null ? Map.<String, String>of() : metadata).entrySet()) {
            if (kv.getKey().equals("format") && !kv.getValue().equals("pt"))
                throw SafetensorsException.of(file, "metadata 'format' must be \"pt\", got \"" + kv.getValue() + "\"");
            merged.put(kv.getKey(), kv.getValue());
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator g = SafetensorsFile.JSON.getFactory().createGenerator(out)) {
            g.writeStartObject();
            g.writeObjectFieldStart(SafetensorsFile.METADATA_KEY);
            for (Map.Entry<String, String> kv : merged.entrySet()) g.writeStringField(kv.getKey(), kv.getValue());
            g.writeEndObject();
            long offset = 0;
            for (Tensor t : tensors) {
                DType as = written(t, dtype);
                long bytes = Math.multiplyExact(t.numel(), as.bytes);
                g.writeObjectFieldStart(t.name());
                g.writeStringField("dtype", as.safetensorsName());
                g.writeArrayFieldStart("shape");
                for (long d : t.shape()) g.writeNumber(d);
                g.writeEndArray();
                g.writeArrayFieldStart("data_offsets");
                g.writeNumber(offset);
                g.writeNumber(offset + bytes);
                g.writeEndArray();
                g.writeEndObject();
                offset += bytes;
            }
            g.writeEndObject();
        }
        int padding = (8 - out.size() % 8) % 8;
        for (int i = 0; i < padding; i++) out.write(' ');
        return out.toByteArray();
    }

    /** copies the tensor's bytes to the channel through a direct buffer (works for heap and mapped segments) */
    private static void writeData(Path file, FileChannel channel, Tensor t, ByteBuffer chunk) throws IOException {
        MemorySegment src = t.data();
        long bytes = Math.multiplyExact(t.numel(), t.dtype().bytes);
        if (src.byteSize() != bytes)
            throw SafetensorsException.of(file, t.name(), "data has " + src.byteSize() + " bytes but the header claims " + bytes);
        MemorySegment buffer = MemorySegment.ofBuffer(chunk.clear()); // the whole buffer, whatever its position
        for (long offset = 0; offset < bytes; ) {
            int n = (int) Math.min(chunk.capacity(), bytes - offset);
            try {
                MemorySegment.copy(src, offset, buffer, 0, n);
            } catch (RuntimeException e) {
                throw SafetensorsException.of(file, t.name(), "cannot read the tensor's data at byte " + offset + " (" + e + ")");
            }
            chunk.clear().limit(n);
            AtomicFiles.writeFully(channel, chunk);
            offset += n;
        }
    }
}
