package dive.io;

import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every rule of the reference reader (HF safetensors tensor.rs) against a file crafted byte by
 * byte: 8-byte little-endian header length, header JSON, data section.
 */
class SafetensorsValidationTest {
    @TempDir Path dir;

    /** 8-byte little-endian length, the header's UTF-8 bytes, then {@code dataBytes} bytes 0, 1, 2, ... */
    private Path file(String name, String headerJson, int dataBytes) throws IOException {
        return file(name, headerJson.getBytes(StandardCharsets.UTF_8), headerJson.getBytes(StandardCharsets.UTF_8).length, dataBytes);
    }

    private Path file(String name, byte[] header, long declaredHeaderBytes, int dataBytes) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(declaredHeaderBytes).array());
        out.writeBytes(header);
        for (int i = 0; i < dataBytes; i++) out.write(i);
        Path p = dir.resolve(name);
        Files.write(p, out.toByteArray());
        return p;
    }

    /** opening must fail with a SafetensorsException naming the file and containing every fragment */
    private static SafetensorsException assertRejected(Path p, String... fragments) {
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsFile.open(p).close());
        assertTrue(e.getMessage().startsWith(p.toString() + ": "), "names the file: " + e.getMessage());
        for (String f : fragments) assertTrue(e.getMessage().contains(f), "'" + f + "' in: " + e.getMessage());
        return e;
    }

    private static String entry(String name, String dtype, String shape, long begin, long end) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + "," + end + "]}";
    }

    // ---- header length ----

    @Test void fileShorterThan8BytesIsRejected() throws IOException {
        Path empty = dir.resolve("empty.safetensors");
        Files.write(empty, new byte[0]);
        assertRejected(empty, "0 bytes", "shorter than the 8-byte header length");
        Path seven = dir.resolve("seven.safetensors");
        Files.write(seven, new byte[7]);
        assertRejected(seven, "7 bytes", "shorter than the 8-byte header length");
    }

    @Test void headerLongerThan100MBIsRejected() throws IOException {
        assertRejected(file("big.safetensors", new byte[0], 100_000_001L, 0), "100000001", "exceeds the limit of 100000000 bytes");
        // u64 all ones: read as unsigned, not as -1
        assertRejected(file("huge.safetensors", new byte[0], -1L, 0), "18446744073709551615", "exceeds the limit");
    }

    @Test void headerLengthPastEndOfFileIsRejected() throws IOException {
        // exactly at the limit passes the limit check, then fails on the file length
        assertRejected(file("limit.safetensors", new byte[0], 100_000_000L, 0), "header length 100000000 bytes runs past the end of the file (8 bytes");
        byte[] header = "{}".getBytes(StandardCharsets.UTF_8);
        assertRejected(file("short.safetensors", header, 3, 0), "header length 3 bytes runs past the end of the file (10 bytes");
    }

    // ---- header text ----

    @Test void headerNotUtf8IsRejected() throws IOException {
        byte[] header = {'{', '"', (byte) 0xC3, (byte) 0x28, '"', ':', '{', '}', '}'}; // 0xC3 0x28: invalid 2-byte sequence
        assertRejected(file("utf8.safetensors", header, header.length, 0), "header is not valid UTF-8");
    }

    @Test void headerNotJsonIsRejected() throws IOException {
        assertRejected(file("cut.safetensors", "{\"a\":", 0), "header is not valid JSON");
        assertRejected(file("trailing.safetensors", "{}x", 0), "header is not valid JSON");
        assertRejected(file("two.safetensors", "{} {}", 0), "header is not valid JSON");
    }

    @Test void headerNotAnObjectIsRejected() throws IOException {
        assertRejected(file("array.safetensors", "[]", 0), "header is not a JSON object", "ARRAY");
        assertRejected(file("blank.safetensors", "        ", 0), "header is not a JSON object");
        assertRejected(file("nothing.safetensors", "", 0), "header is not a JSON object");
    }

    @Test void duplicateTensorNameIsRejected() throws IOException {
        String a = entry("model.embed_tokens.weight", "F32", "[1]", 0, 4);
        SafetensorsException e = assertRejected(file("dup.safetensors", "{" + a + "," + a + "}", 4), "duplicate", "model.embed_tokens.weight");
        assertTrue(e.getMessage().toLowerCase().contains("duplicate"));
        // a duplicate field inside an entry too
        assertRejected(file("dupfield.safetensors", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "duplicate", "dtype");
        assertRejected(file("dupmeta.safetensors", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0), "duplicate", "k");
    }

    // ---- __metadata__ ----

    @Test void metadataMustBeAMapOfStrings() throws IOException {
        assertRejected(file("metaarray.safetensors", "{\"__metadata__\":[\"pt\"]}", 0), "__metadata__ must be a JSON object of string to string", "ARRAY");
        assertRejected(file("metaint.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", 0),
                "__metadata__ value of 'step' must be a string", "3");
        assertRejected(file("metanested.safetensors", "{\"__metadata__\":{\"format\":{}}}", 0), "__metadata__ value of 'format' must be a string");
    }

    @Test void metadataIsOptional() throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(file("nometa.safetensors", "{" + entry("a", "F32", "[1]", 0, 4) + "}", 4))) {
            assertEquals(Map.of(), f.metadata());
            assertEquals(List.of("a"), f.names());
        }
        try (SafetensorsFile f = SafetensorsFile.open(file("nullmeta.safetensors", "{\"__metadata__\":null}", 0))) {
            assertEquals(Map.of(), f.metadata());
            assertEquals(List.of(), f.names());
        }
    }

    // ---- tensor entries ----

    @Test void entryMustBeAnObject() throws IOException {
        assertRejected(file("entry.safetensors", "{\"w\":[0,4]}", 0), "tensor 'w'", "entry must be a JSON object");
    }

    @Test void dtypeMustBePresentAndKnown() throws IOException {
        assertRejected(file("nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'w'", "dtype is missing");
        assertRejected(file("intdtype.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'w'", "dtype is missing or not a string");
        assertRejected(file("baddtype.safetensors", "{" + entry("w", "F33", "[1]", 0, 4) + "}", 4), "tensor 'w'", "unknown dtype 'F33'");
        assertRejected(file("lower.safetensors", "{" + entry("w", "f32", "[1]", 0, 4) + "}", 4), "tensor 'w'", "unknown dtype 'f32'");
    }

    @Test void shapeMustBeNonNegativeIntegers() throws IOException {
        assertRejected(file("noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'w'", "shape is missing");
        assertRejected(file("negshape.safetensors", "{" + entry("w", "F32", "[-1]", 0, 4) + "}", 4), "tensor 'w'", "shape is [-1]", "non-negative integers");
        assertRejected(file("floatshape.safetensors", "{" + entry("w", "F32", "[1.0]", 0, 4) + "}", 4), "tensor 'w'", "shape is [1.0]");
        assertRejected(file("strshape.safetensors", "{" + entry("w", "F32", "\"1\"", 0, 4) + "}", 4), "tensor 'w'", "shape is \"1\"");
        assertRejected(file("bigshape.safetensors", "{" + entry("w", "F32", "[18446744073709551616]", 0, 4) + "}", 4), "tensor 'w'", "shape is");
    }

    @Test void dataOffsetsMustBeTwoOrderedNonNegativeIntegers() throws IOException {
        assertRejected(file("nooffsets.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "tensor 'w'", "data_offsets is missing");
        assertRejected(file("three.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4),
                "tensor 'w'", "data_offsets is [0,4,4]", "an array of 2 non-negative integers");
        assertRejected(file("negoffset.safetensors", "{" + entry("w", "F32", "[1]", -4, 0) + "}", 4), "tensor 'w'", "data_offsets is [-4,0]");
        assertRejected(file("reversed.safetensors", "{" + entry("w", "F32", "[1]", 4, 0) + "}", 4), "tensor 'w'", "data_offsets [4, 0] have begin > end");
    }

    @Test void unknownFieldsInAnEntryAreIgnoredLikeTheReference() throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(file("extra.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"note\":1}}", 4))) {
            assertArrayEquals(new long[]{1}, f.tensor("w").shape());
        }
    }

    // ---- layout of the data section ----

    @Test void gapBetweenTensorsIsRejected() throws IOException {
        String h = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}";
        assertRejected(file("gap.safetensors", h, 12), "tensor 'b'", "data_offsets [8, 12] leave a gap", "ends at 4");
        // the first tensor must start at 0
        assertRejected(file("start.safetensors", "{" + entry("a", "F32", "[1]", 4, 8) + "}", 8), "tensor 'a'", "leave a gap", "ends at 0");
    }

    @Test void overlappingTensorsAreRejected() throws IOException {
        String h = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[1]", 4, 8) + "}";
        assertRejected(file("overlap.safetensors", h, 8), "tensor 'b'", "data_offsets [4, 8] overlap the previous tensor, which ends at 8");
        String same = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 0, 4) + "}";
        assertRejected(file("same.safetensors", same, 4), "overlap");
    }

    @Test void tensorsListedOutOfOrderAreSortedByOffset() throws IOException {
        // header order b, a; file order (by offset) a, b: valid, like the reference's sort
        String h = "{" + entry("b", "I32", "[1]", 4, 8) + "," + entry("a", "I32", "[1]", 0, 4) + "}";
        try (SafetensorsFile f = SafetensorsFile.open(file("order.safetensors", h, 8))) {
            assertEquals(List.of("a", "b"), f.names());
            // data bytes are 0,1,2,...: a = 0x03020100, b = 0x07060504 little-endian
            assertEquals(0x03020100, f.tensor("a").data().get(Tensor.I32, 0));
            assertEquals(0x07060504, f.tensor("b").data().get(Tensor.I32, 0));
        }
    }

    @Test void byteCountMustMatchShapeTimesDtypeSize() throws IOException {
        String name = "model.layers.0.mlp.up_proj.weight";
        Path p = file("model.safetensors", "{" + entry(name, "F32", "[5,6]", 0, 100) + "}", 100);
        SafetensorsException e = assertRejected(p);
        assertEquals(p + ": tensor '" + name + "': data_offsets [0, 100] hold 100 bytes but shape [5, 6] of F32 needs 120", e.getMessage());
        assertRejected(file("bf16.safetensors", "{" + entry("w", "BF16", "[3]", 0, 4) + "}", 4), "tensor 'w'", "hold 4 bytes but shape [3] of BF16 needs 6");
    }

    @Test void byteCountOverflowIsRejected() throws IOException {
        // element count overflows: 2^32 * 2^32
        assertRejected(file("ovf1.safetensors", "{" + entry("w", "F32", "[4294967296,4294967296]", 0, 0) + "}", 0),
                "tensor 'w'", "shape [4294967296, 4294967296] of F32 overflows a 64-bit byte count");
        // element count fits (2^62) but times 4 bytes does not
        assertRejected(file("ovf2.safetensors", "{" + entry("w", "F32", "[4611686018427387904]", 0, 0) + "}", 0),
                "tensor 'w'", "overflows a 64-bit byte count");
    }

    @Test void bytesAfterTheLastTensorAreRejected() throws IOException {
        assertRejected(file("tail.safetensors", "{" + entry("w", "F32", "[1]", 0, 4) + "}", 5),
                "data section has 5 bytes but the tensors end at 4: 1 bytes after the last tensor");
        assertRejected(file("notensors.safetensors", "{}", 3), "data section has 3 bytes but the tensors end at 0");
    }

    @Test void truncatedFileIsRejected() throws IOException {
        assertRejected(file("trunc.safetensors", "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("w", "F32", "[2]", 4, 12) + "}", 10),
                "tensor 'w'", "file is truncated", "data section, which has 10 bytes");
        // a real file cut short by one byte
        Path golden = Path.of("src/test/resources/safetensors/golden.safetensors");
        byte[] bytes = Files.readAllBytes(golden);
        Path cut = dir.resolve("golden_cut.safetensors");
        Files.write(cut, java.util.Arrays.copyOf(bytes, bytes.length - 1));
        assertRejected(cut, "file is truncated");
    }

    // ---- what does open ----

    @Test void emptyHeaderWithPaddingAndNoTensorsOpens() throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(file("none.safetensors", "{}      ", 0))) {
            assertEquals(List.of(), f.names());
            assertFalse(f.has("a"));
        }
    }

    @Test void otherDtypesParseAndKeepTheirBytes() throws IOException {
        String h = "{" + entry("u8", "U8", "[3]", 0, 3) + "," + entry("f64", "F64", "[1]", 3, 11) + ","
                + entry("flags", "BOOL", "[2]", 11, 13) + "," + entry("fp8", "F8_E4M3", "[1,1]", 13, 14) + "}";
        try (SafetensorsFile f = SafetensorsFile.open(file("other.safetensors", h, 14))) {
            assertEquals(List.of("u8", "f64", "flags", "fp8"), f.names());
            assertEquals(DType.U8, f.tensor("u8").dtype());
            assertEquals(3, f.tensor("u8").data().byteSize());
            assertEquals(2, f.tensor("u8").data().get(ValueLayout.JAVA_BYTE, 2)); // data bytes are 0,1,2,...
            assertEquals(DType.F64, f.tensor("f64").dtype());
            assertEquals(8, f.tensor("f64").data().byteSize());
            assertEquals(12, f.tensor("flags").data().get(ValueLayout.JAVA_BYTE, 1));
            assertEquals(DType.F8_E4M3, f.tensor("fp8").dtype());
        }
    }

    @Test void unknownTensorNameNamesFileAndTensor() throws IOException {
        Path p = file("one.safetensors", "{" + entry("a", "F32", "[1]", 0, 4) + "}", 4);
        try (SafetensorsFile f = SafetensorsFile.open(p)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> f.tensor("model.norm.weight"));
            assertTrue(e.getMessage().contains(p.toString()) && e.getMessage().contains("'model.norm.weight'"), e.getMessage());
        }
    }

    @Test void missingFileIsAnErrorNamingIt() {
        Path p = dir.resolve("absent.safetensors");
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsFile.open(p));
        assertTrue(e.getMessage().startsWith(p + ": "), e.getMessage());
    }

    @Test void closingInvalidatesViews() throws IOException {
        Path p = file("close.safetensors", "{" + entry("a", "F32", "[1]", 0, 4) + "}", 4);
        SafetensorsFile f = SafetensorsFile.open(p);
        Tensor a = f.tensor("a");
        assertEquals(Float.intBitsToFloat(0x03020100), a.getFloat(0));
        f.close();
        assertThrows(IllegalStateException.class, () -> a.getFloat(0));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> f.tensor("a"));
        assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
        f.close(); // twice is fine
    }
}
