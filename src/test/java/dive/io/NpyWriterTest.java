package dive.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * NpyWriter against the NumPy format spec (numpy.lib.format, version 1.0): magic "\x93NUMPY",
 * major 1, minor 0, little-endian uint16 HEADER_LEN, an ASCII dict literal with keys 'descr',
 * 'fortran_order', 'shape', padded with spaces and terminated by '\n' so that
 * 6 + 2 + 2 + HEADER_LEN is divisible by 64; then the data in C order.
 */
class NpyWriterTest {
    @TempDir Path dir;

    /** checks the header bytes and returns the dict literal without padding */
    private static String checkHeader(byte[] bytes) {
        assertEquals((byte) 0x93, bytes[0]);
        assertEquals("NUMPY", new String(bytes, 1, 5, StandardCharsets.US_ASCII));
        assertEquals(1, bytes[6], "major version");
        assertEquals(0, bytes[7], "minor version");
        int headerLen = (bytes[8] & 0xff) | (bytes[9] & 0xff) << 8;
        assertEquals(0, (10 + headerLen) % 64, "data starts 64-byte aligned");
        String header = new String(bytes, 10, headerLen, StandardCharsets.US_ASCII);
        assertTrue(header.endsWith("\n"), "ends with newline");
        String dict = header.substring(0, header.length() - 1).stripTrailing();
        assertEquals(" ".repeat(header.length() - 1 - dict.length()), header.substring(dict.length(), header.length() - 1), "padded with spaces");
        return dict;
    }

    @Test void matrixHeaderAndData() throws IOException {
        Path file = dir.resolve("x.npy");
        float[] data = {1f, -2f, 0.5f, 3e38f, -0f, Float.NaN};
        NpyWriter.writeF32(file, data, 2, 3);
        byte[] bytes = Files.readAllBytes(file);
        assertEquals("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", checkHeader(bytes));
        assertEquals(128, bytes.length - 4 * data.length, "10 + 59-char dict + newline = 70 bytes, padded to the next multiple of 64");
        ByteBuffer body = ByteBuffer.wrap(bytes, 128, 24).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : data) assertEquals(Float.floatToRawIntBits(v), Float.floatToRawIntBits(body.getFloat()));
    }

    @Test void shapeTuplesFollowPythonRepr() throws IOException {
        record Case(int[] shape, int count, String tuple) {}
        for (Case c : List.of(new Case(new int[]{5}, 5, "(5,)"), new Case(new int[]{}, 1, "()"), new Case(new int[]{0, 4}, 0, "(0, 4)"),
                new Case(new int[]{1, 2, 1}, 2, "(1, 2, 1)"))) {
            Path file = dir.resolve("s" + c.tuple.length() + c.count + ".npy");
            NpyWriter.writeF32(file, new float[c.count], c.shape);
            byte[] bytes = Files.readAllBytes(file);
            assertEquals("{'descr': '<f4', 'fortran_order': False, 'shape': " + c.tuple + ", }", checkHeader(bytes));
            assertEquals(0, (bytes.length - 4 * c.count) % 64);
        }
    }

    @Test void shapeMustMatchTheDataAndNothingIsWrittenOtherwise() throws IOException {
        Path file = dir.resolve("bad.npy");
        IOException e = assertThrows(IOException.class, () -> NpyWriter.writeF32(file, new float[5], 2, 3));
        assertTrue(e.getMessage().contains(file.toString()) && e.getMessage().contains("holds 6 elements but data has 5"), e.getMessage());
        e = assertThrows(IOException.class, () -> NpyWriter.writeF32(file, new float[0], -1, 0));
        assertTrue(e.getMessage().contains("negative"), e.getMessage());
        try (Stream<Path> left = Files.list(dir)) { assertEquals(List.of(), left.toList()); }
    }
}
