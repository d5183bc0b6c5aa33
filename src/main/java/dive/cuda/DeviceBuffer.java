package dive.cuda;

import java.lang.foreign.MemorySegment;

/**
 * A span of device memory: its address (a zero-length {@link MemorySegment}, only ever passed to native calls,
 * never dereferenced from Java) and its size in bytes. Views carve one allocation into named parts.
 */
public record DeviceBuffer(MemorySegment pointer, long bytes) {
    /** the null device pointer (an optional argument left out) */
    public static final DeviceBuffer NULL = new DeviceBuffer(MemorySegment.NULL, 0);

    public DeviceBuffer {
        if (bytes < 0) throw new IllegalArgumentException("device buffer of " + bytes + " bytes");
    }

    /** the part [offsetBytes, offsetBytes + sizeBytes) */
    public DeviceBuffer slice(long offsetBytes, long sizeBytes) {
        if (offsetBytes < 0 || sizeBytes < 0 || offsetBytes + sizeBytes > bytes)
            throw new IndexOutOfBoundsException("device slice [" + offsetBytes + ", " + (offsetBytes + sizeBytes) + ") of a " + bytes + "-byte buffer");
        return new DeviceBuffer(MemorySegment.ofAddress(pointer.address() + offsetBytes), sizeBytes);
    }

    /** the F32 elements [offset, offset + count) */
    public DeviceBuffer floats(long offset, long count) { return slice(4 * offset, 4 * count); }

    public long address() { return pointer.address(); }

    @Override public String toString() { return "DeviceBuffer[0x" + Long.toHexString(pointer.address()) + ", " + bytes + " bytes]"; }
}
