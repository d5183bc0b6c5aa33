package dive.io;

import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Writes NumPy {@code .npy} files, format version 1.0, dtype {@code '<f4'}, C order: the magic
 * {@code \x93NUMPY}, version bytes 1 0, a little-endian uint16 header length, an ASCII Python dict
 * literal padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes,
 * then the float32 data little-endian. Written atomically.
 */
public final class NpyWriter {
    static final int ALIGN_BYTES = 64;
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};

    private NpyWriter() {}

    public static void writeF32(Path file, float[] data, int... shape) throws IOException {
        long count = 1;
        for (int d : shape) {
            if (d < 0) throw new IOException(file + ": shape " + Arrays.toString(shape) + " has a negative dimension");
            count = Math.multiplyExact(count, d);
        }
        if (count != data.length)
            throw new IOException(file + ": shape " + Arrays.toString(shape) + " holds " + count + " elements but data has " + data.length);
        byte[] header = header(shape);
        if (header.length > 0xffff)
            throw new IOException(file + ": npy v1.0 header of " + header.length + " bytes exceeds 65535 (shape too long)");
        AtomicFiles.write(file, channel -> {
            ByteBuffer prefix = ByteBuffer.allocate(10).order(ByteOrder.LITTLE_ENDIAN);
            prefix.put(MAGIC).put((byte) 1).put((byte) 0).putShort((short) header.length).flip();
            AtomicFiles.writeFully(channel, prefix);
            AtomicFiles.writeFully(channel, ByteBuffer.wrap(header));
            ByteBuffer chunk = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < data.length; ) {
                chunk.clear();
                while (i < data.length && chunk.remaining() >= 4) chunk.putFloat(data[i++]);
                chunk.flip();
                AtomicFiles.writeFully(channel, chunk);
            }
        });
    }

    /** the dict literal, space padded, '\n' last, so that 10 + its length is a multiple of 64 */
    static byte[] header(int... shape) {
        StringBuilder tuple = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) tuple.append(i == 0 ? "" : ", ").append(shape[i]);
        if (shape.length == 1) tuple.append(',');
        tuple.append(')');
        StringBuilder dict = new StringBuilder("{'descr': '<f4', 'fortran_order': False, 'shape': ").append(tuple).append(", }");
        int unpadded = 10 + dict.length() + 1;
        dict.append(" ".repeat((ALIGN_BYTES - unpadded % ALIGN_BYTES) % ALIGN_BYTES)).append('\n');
        return dict.toString().getBytes(StandardCharsets.US_ASCII);
    }
}
