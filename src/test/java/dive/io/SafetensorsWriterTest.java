package dive.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** SafetensorsWriter: write then read back, header layout, atomic writes, sharding. */
class SafetensorsWriterTest {
    @TempDir Path dir;

    /** a tensor over little-endian bytes given as shorts (BF16/F16 bit patterns) */
    static Tensor ofShorts(String name, DType dtype, short[] bits, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[bits.length * 2]);
        for (int i = 0; i < bits.length; i++) seg.setAtIndex(Tensor.I16, i, bits[i]);
        return new Tensor(name, dtype, shape, seg);
    }

    static Tensor ofInts(String name, int[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 4]);
        for (int i = 0; i < values.length; i++) seg.setAtIndex(Tensor.I32, i, values[i]);
        return new Tensor(name, DType.I32, shape, seg);
    }

    static Tensor ofLongs(String name, long[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 8]);
        for (int i = 0; i < values.length; i++) seg.setAtIndex(Tensor.I64, i, values[i]);
        return new Tensor(name, DType.I64, shape, seg);
    }

    static List<Tensor> everyDtype() {
        return List.of(
                Tensor.ofFloats("model.layers.0.self_attn.q_proj.weight", new float[]{1f, -2.5f, 0.1f, 1e-40f, -0f, 3.4e38f}, 2, 3),
                // bf16 bits: 0x3F80 = 1.0, 0xC020 = -2.5, 0x7F80 = +inf
                ofShorts("model.norm.weight", DType.BF16, new short[]{0x3F80, (short) 0xC020, 0x7F80}, 3),
                // f16 bits: 0x3C00 = 1.0, 0xC500 = -5.0, 0x7BFF = 65504 (largest half)
                ofShorts("lm_head.weight", DType.F16, new short[]{0x3C00, (short) 0xC500, 0x7BFF, 0x0001}, 2, 2),
                ofInts("position_ids", new int[]{Integer.MIN_VALUE, -1, 0, 123456789}, 2, 2),
                ofLongs("token_ids", new long[]{Long.MIN_VALUE, 1L << 40}, 2),
                Tensor.ofFloats("scalar", new float[]{2.5f}),
                Tensor.ofFloats("empty", new float[0], 0, 3));
    }

    static void assertSameTensor(Tensor expected, Tensor actual) {
        assertEquals(expected.name(), actual.name());
        assertEquals(expected.dtype(), actual.dtype(), expected.name());
        assertArrayEquals(expected.shape(), actual.shape(), expected.name());
        assertEquals(-1, expected.data().mismatch(actual.data()), expected.name() + " bytes");
    }

    @Test void roundTripEveryDtype() throws IOException {
        Path file = dir.resolve("model.safetensors");
        List<Tensor> tensors = everyDtype();
        SafetensorsWriter.write(file, tensors, Map.of("source", "round trip"));
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals(tensors.stream().map(Tensor::name).toList(), f.names(), "laid out in the order given");
            for (Tensor t : tensors) assertSameTensor(t, f.tensor(t.name()));
            // values decoded by hand from the bit patterns above
            assertArrayEquals(new float[]{1f, -2.5f, Float.POSITIVE_INFINITY}, f.tensor("model.norm.weight").toFloatArray());
            assertArrayEquals(new float[]{1f, -5f, 65504f, 0x1p-24f}, f.tensor("lm_head.weight").toFloatArray());
            assertEquals(Integer.MIN_VALUE, f.tensor("position_ids").data().getAtIndex(Tensor.I32, 0));
            assertEquals(123456789, f.tensor("position_ids").data().getAtIndex(Tensor.I32, 3));
            assertEquals(Long.MIN_VALUE, f.tensor("token_ids").data().getAtIndex(Tensor.I64, 0));
            assertEquals(1L << 40, f.tensor("token_ids").data().getAtIndex(Tensor.I64, 1));
            assertEquals(0, f.tensor("scalar").rank());
            assertEquals(2.5f, f.tensor("scalar").getFloat(0));
            assertEquals(0, f.tensor("empty").data().byteSize());
            assertEquals(Map.of("format", "pt", "source", "round trip"), f.metadata());
        }
    }

    @Test void headerIsCompactJsonPaddedWithSpacesToAMultipleOf8() throws IOException {
        Path file = dir.resolve("w.safetensors");
        SafetensorsWriter.write(file, List.of(Tensor.ofFloats("w", new float[]{1f, 2f}, 2)), Map.of());
        byte[] bytes = Files.readAllBytes(file);
        // 85 bytes of JSON (counted by hand) + 3 spaces = 88
        String json = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        assertEquals(88, ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong());
        assertEquals(json + "   ", new String(bytes, 8, 88, StandardCharsets.UTF_8));
        assertEquals(8 + 88 + 8, bytes.length);
        assertEquals(1f, ByteBuffer.wrap(bytes, 96, 8).order(ByteOrder.LITTLE_ENDIAN).getFloat());
        assertEquals(2f, ByteBuffer.wrap(bytes, 100, 4).order(ByteOrder.LITTLE_ENDIAN).getFloat());
    }

    @Test void everyPaddingLengthKeepsTheLayoutRules() throws IOException {
        for (int extra = 0; extra < 8; extra++) {
            Path file = dir.resolve("pad" + extra + ".safetensors");
            String name = "w" + "x".repeat(extra); // shifts the JSON length through all residues mod 8
            List<Tensor> tensors = List.of(Tensor.ofFloats(name, new float[]{1f}, 1), ofInts("i", new int[]{7, 8}, 2));
            SafetensorsWriter.write(file, tensors, Map.of("note", "n"));
            byte[] bytes = Files.readAllBytes(file);
            long headerBytes = ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            assertEquals(0, headerBytes % 8, name);
            String header = new String(bytes, 8, (int) headerBytes, StandardCharsets.UTF_8);
            String json = header.stripTrailing();
            assertTrue(json.endsWith("}") && header.length() - json.length() < 8, "at most 7 spaces: '" + header + "'");
            assertEquals(" ".repeat(header.length() - json.length()), header.substring(json.length()), "padding is spaces");
            JsonNode root = new ObjectMapper().readTree(json);
            List<String> keys = new ArrayList<>();
            root.fieldNames().forEachRemaining(keys::add);
            assertEquals(List.of("__metadata__", name, "i"), keys, "metadata first, tensors in the order given");
            assertEquals("pt", root.get("__metadata__").get("format").asText());
            assertEquals("n", root.get("__metadata__").get("note").asText());
            assertEquals("[0,4]", root.get(name).get("data_offsets").toString());
            assertEquals("[4,12]", root.get("i").get("data_offsets").toString());
            assertEquals(8 + headerBytes + 12, bytes.length, "nothing after the last tensor");
        }
    }

    @Test void conflictingFormatReservedNameAndDuplicateNamesAreRejected() {
        Path file = dir.resolve("bad.safetensors");
        Tensor w = Tensor.ofFloats("w", new float[]{1f}, 1);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.write(file, List.of(w), Map.of("format", "np")));
        assertTrue(e.getMessage().contains(file.toString()) && e.getMessage().contains("'format' must be \"pt\""), e.getMessage());
        e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.write(file, List.of(w, Tensor.ofFloats("w", new float[]{2f}, 1)), Map.of()));
        assertTrue(e.getMessage().contains("tensor 'w'") && e.getMessage().contains("twice"), e.getMessage());
        e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.write(file, List.of(Tensor.ofFloats("__metadata__", new float[]{1f}, 1)), Map.of()));
        assertTrue(e.getMessage().contains("reserved"), e.getMessage());
        assertFalse(Files.exists(file));
    }

    @Test void missingParentDirectoryIsNamed() {
        Path file = dir.resolve("no_such_dir").resolve("model.safetensors");
        IOException e = assertThrows(IOException.class, () -> SafetensorsWriter.write(file, List.of(Tensor.ofFloats("w", new float[]{1f}, 1)), null));
        assertTrue(e.getMessage().contains("no_such_dir") && e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test void failedWriteLeavesNoFileAndNoTempFile() throws IOException {
        Path file = dir.resolve("model.safetensors");
        Tensor good = Tensor.ofFloats("good", new float[]{1f, 2f}, 2);
        Tensor unreadable;
        try (Arena arena = Arena.ofConfined()) {
            unreadable = new Tensor("model.layers.3.mlp.down_proj.weight", DType.F32, new long[]{4}, arena.allocate(16));
        } // its memory is gone: reading it fails half-way through the write
        List<Tensor> tensors = List.of(good, unreadable);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.write(file, tensors, Map.of()));
        assertTrue(e.getMessage().contains("tensor 'model.layers.3.mlp.down_proj.weight'"), e.getMessage());
        assertFalse(Files.exists(file), "nothing at the target path");
        try (Stream<Path> left = Files.list(dir)) { assertEquals(List.of(), left.toList(), "no temp file left"); }

        // an existing file survives a failed overwrite unchanged
        SafetensorsWriter.write(file, List.of(good), Map.of());
        byte[] before = Files.readAllBytes(file);
        assertThrows(SafetensorsException.class, () -> SafetensorsWriter.write(file, tensors, Map.of()));
        assertArrayEquals(before, Files.readAllBytes(file));
        try (Stream<Path> left = Files.list(dir)) { assertEquals(List.of(file), left.toList()); }
    }

    @Test void rewritingAFileThatIsOpenKeepsTheOldViewsReadable() throws IOException {
        Path file = dir.resolve("model.safetensors");
        SafetensorsWriter.write(file, List.of(Tensor.ofFloats("w", new float[]{1f, 2f}, 2)), Map.of());
        try (SafetensorsFile old = SafetensorsFile.open(file)) {
            SafetensorsWriter.write(file, List.of(Tensor.ofFloats("w", new float[]{3f, 4f}, 2)), Map.of());
            assertArrayEquals(new float[]{1f, 2f}, old.tensor("w").toFloatArray(), "rename leaves the mapped inode intact");
            try (SafetensorsFile fresh = SafetensorsFile.open(file)) {
                assertArrayEquals(new float[]{3f, 4f}, fresh.tensor("w").toFloatArray());
            }
        }
    }

    // ---- sharded checkpoints ----

    /** 16, 16, 24, 16 and 4 bytes */
    static List<Tensor> fiveTensors() {
        return List.of(
                Tensor.ofFloats("a", new float[]{1, 2, 3, 4}, 4),
                ofShorts("b", DType.BF16, new short[]{0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0, 0x4100}, 2, 4),
                Tensor.ofFloats("c", new float[]{-1, -2, -3, -4, -5, -6}, 2, 3),
                ofLongs("d", new long[]{5, -6}, 2),
                ofShorts("e", DType.F16, new short[]{0x3C00, 0x4000}, 2));
    }

    @Test void shardedRoundTrip() throws IOException {
        Path out = dir.resolve("ckpt");
        List<Tensor> tensors = fiveTensors();
        // limit 32: [a 16 + b 16] [c 24, + d would be 40] [d 16 + e 4] -> 3 shards
        SafetensorsWriter.writeSharded(out, tensors, 32, Map.of("step", "1"));
        try (Stream<Path> files = Files.list(out)) {
            assertEquals(List.of("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                    "model-00003-of-00003.safetensors", "model.safetensors.index.json"),
                    files.map(p -> p.getFileName().toString()).sorted().toList());
        }
        JsonNode index = new ObjectMapper().readTree(out.resolve("model.safetensors.index.json").toFile());
        assertEquals(16 + 16 + 24 + 16 + 4, index.get("metadata").get("total_size").asLong());
        JsonNode weightMap = index.get("weight_map");
        assertEquals("model-00001-of-00003.safetensors", weightMap.get("a").asText());
        assertEquals("model-00001-of-00003.safetensors", weightMap.get("b").asText());
        assertEquals("model-00002-of-00003.safetensors", weightMap.get("c").asText());
        assertEquals("model-00003-of-00003.safetensors", weightMap.get("d").asText());
        assertEquals("model-00003-of-00003.safetensors", weightMap.get("e").asText());
        assertEquals(5, weightMap.size());
        try (SafetensorsFile shard2 = SafetensorsFile.open(out.resolve("model-00002-of-00003.safetensors"))) {
            assertEquals(List.of("c"), shard2.names());
            assertEquals(Map.of("format", "pt", "step", "1"), shard2.metadata());
        }
        try (Checkpoint ckpt = Checkpoint.open(out)) {
            assertEquals(List.of("a", "b", "c", "d", "e"), ckpt.names());
            assertEquals(3, ckpt.files().size());
            for (Tensor t : tensors) assertSameTensor(t, ckpt.tensor(t.name()));
            assertArrayEquals(new float[]{1, 2, 3, 4, 5, 6, 7, 8}, ckpt.tensor("b").toFloatArray()); // bf16 0x3F80.. by hand
        }
        // a rerun writes the same bytes
        byte[] index1 = Files.readAllBytes(out.resolve("model.safetensors.index.json"));
        byte[] shard1 = Files.readAllBytes(out.resolve("model-00001-of-00003.safetensors"));
        SafetensorsWriter.writeSharded(out, tensors, 32, Map.of("step", "1"));
        assertArrayEquals(index1, Files.readAllBytes(out.resolve("model.safetensors.index.json")));
        assertArrayEquals(shard1, Files.readAllBytes(out.resolve("model-00001-of-00003.safetensors")));
    }

    @Test void aTensorLargerThanTheLimitGetsAShardOfItsOwn() throws IOException {
        Path out = dir.resolve("big");
        List<Tensor> tensors = List.of(Tensor.ofFloats("x", new float[]{1}, 1), Tensor.ofFloats("big", new float[]{1, 2, 3, 4}, 4),
                Tensor.ofFloats("y", new float[]{2}, 1));
        SafetensorsWriter.writeSharded(out, tensors, 8, Map.of());
        try (Checkpoint ckpt = Checkpoint.open(out)) {
            assertEquals(List.of("x", "big", "y"), ckpt.names());
            assertEquals(List.of(out.resolve("model-00001-of-00003.safetensors"), out.resolve("model-00002-of-00003.safetensors"),
                    out.resolve("model-00003-of-00003.safetensors")), ckpt.files());
        }
    }

    @Test void everythingInOneShardWritesModelSafetensors() throws IOException {
        Path out = dir.resolve("one");
        List<Tensor> tensors = fiveTensors();
        SafetensorsWriter.writeSharded(out, tensors, 76, Map.of()); // exactly the total
        try (Stream<Path> files = Files.list(out)) {
            assertEquals(List.of(out.resolve("model.safetensors")), files.toList());
        }
        try (Checkpoint ckpt = Checkpoint.open(out)) {
            for (Tensor t : tensors) assertSameTensor(t, ckpt.tensor(t.name()));
        }
    }

    @Test void shardedWriterRemovesNothingAndRefusesAShadowedLayout() throws IOException {
        Path out = dir.resolve("mixed");
        Files.createDirectories(out);
        Path other = out.resolve("config.json");
        Files.writeString(other, "{}");
        SafetensorsWriter.writeSharded(out, fiveTensors(), 1000, Map.of()); // one file
        byte[] single = Files.readAllBytes(out.resolve("model.safetensors"));
        // sharding now would leave model.safetensors, which loaders read first
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.writeSharded(out, fiveTensors(), 32, Map.of()));
        assertTrue(e.getMessage().contains("model.safetensors") && e.getMessage().contains("shadow"), e.getMessage());
        assertArrayEquals(single, Files.readAllBytes(out.resolve("model.safetensors")));
        try (Stream<Path> files = Files.list(out)) {
            assertEquals(List.of("config.json", "model.safetensors"), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
        // and the other way round
        Path sharded = dir.resolve("sharded");
        SafetensorsWriter.writeSharded(sharded, fiveTensors(), 32, Map.of());
        e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.writeSharded(sharded, fiveTensors(), 1000, Map.of()));
        assertTrue(e.getMessage().contains("model.safetensors.index.json"), e.getMessage());
        assertFalse(Files.exists(sharded.resolve("model.safetensors")));
        assertEquals("{}", Files.readString(other));
    }

    @Test void nonPositiveShardLimitIsRejected() {
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsWriter.writeSharded(dir.resolve("x"), fiveTensors(), 0, Map.of()));
        assertTrue(e.getMessage().contains("maxShardBytes"), e.getMessage());
    }

    @Test void tensorsReadConcurrentlyFromManyThreads() throws Exception {
        Path file = dir.resolve("model.safetensors");
        float[] values = new float[10_000];
        for (int i = 0; i < values.length; i++) values[i] = i;
        SafetensorsWriter.write(file, List.of(Tensor.ofFloats("w", values, 100, 100)), Map.of());
        double expectedSum = (values.length - 1) * (double) values.length / 2; // 0 + 1 + ... + 9999
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            Tensor w = f.tensor("w");
            double[] sums = new double[4];
            Thread[] threads = new Thread[sums.length];
            for (int k = 0; k < threads.length; k++) {
                int id = k;
                threads[k] = new Thread(() -> { double s = 0; for (int i = 0; i < values.length; i++) s += w.getFloat(i); sums[id] = s; });
                threads[k].start();
            }
            for (Thread t : threads) t.join();
            for (double s : sums) assertEquals(expectedSum, s, "every thread reads the whole tensor " + Arrays.toString(sums));
        }
    }

    @Test
    void writesF32AsBf16AndF16RoundingToNearestEvenWhileStreaming(@TempDir Path dir) throws Exception {
        // 1 + 2^-8 lies halfway between the BF16 neighbours 1 and 1 + 2^-7: ties go to the even one (1.0, bits 0x3F80);
        // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6 (0x3F82); -2 is 0xC000 exactly
        float[] values = {1f, 1f + 0x1p-8f, 1f + 3 * 0x1p-8f, -2f};
        Tensor f32 = Tensor.ofFloats("w", values, 2, 2);
        Tensor ids = new Tensor("ids", DType.I64, new long[] {1}, MemorySegment.ofArray(new long[] {7}));
        SafetensorsWriter.write(dir.resolve("bf16.safetensors"), List.of(f32, ids), Map.of(), DType.BF16);
        SafetensorsWriter.write(dir.resolve("f16.safetensors"), List.of(f32), Map.of(), DType.F16);
        try (SafetensorsFile bf16 = SafetensorsFile.open(dir.resolve("bf16.safetensors"));
             SafetensorsFile f16 = SafetensorsFile.open(dir.resolve("f16.safetensors"))) {
            Tensor b = bf16.tensor("w");
            assertEquals(DType.BF16, b.dtype());
            assertArrayEquals(new long[] {2, 2}, b.shape());
            short[] bits = new short[4];
            for (int i = 0; i < 4; i++) bits[i] = b.data().getAtIndex(Tensor.I16, i);
            assertArrayEquals(new short[] {0x3F80, 0x3F80, 0x3F82, (short) 0xC000}, bits);
            assertEquals(DType.I64, bf16.tensor("ids").dtype(), "non-float tensors are written as they are");
            Tensor h = f16.tensor("w");
            assertEquals(DType.F16, h.dtype());
            // F16 has 10 mantissa bits: all four values are exact
            for (int i = 0; i < 4; i++) assertEquals(values[i], h.getFloat(i));
        }
    }
}
