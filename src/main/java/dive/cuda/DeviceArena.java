package dive.cuda;

import dive.bindings.dive_h;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Device memory owned by an arena: {@link #allocate} hands out buffers, {@link #close} frees them all (or
 * {@link #free} one early). Running out of device memory is a {@link CudaException} that names the bytes asked for,
 * the free and total memory of the device and what this arena holds — never a JVM crash. Thread-safe.
 */
public final class DeviceArena implements AutoCloseable {
    private final String name;
    private final List<DeviceBuffer> buffers = new ArrayList<>();
    private long allocatedBytes;
    private boolean closed;

    /** an arena named for error messages ("weights", "workspace") */
    public DeviceArena(String name) { this.name = name; }

    /** a new buffer of {@code bytes} bytes (uninitialised); 0 bytes gives {@link DeviceBuffer#NULL} */
    public synchronized DeviceBuffer allocate(long bytes) {
        if (closed) throw new IllegalStateException("device arena '" + name + "' is closed");
        if (bytes < 0) throw new IllegalArgumentException("device arena '" + name + "': cannot allocate " + bytes + " bytes");
        if (bytes == 0) return DeviceBuffer.NULL;
        MemorySegment address;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment slot = arena.allocate(ValueLayout.ADDRESS);
            int status = dive_h.dive_malloc(slot, bytes);
            if (status != 0) throw allocationFailure(bytes, status);
            address = slot.get(ValueLayout.ADDRESS, 0);
        }
        DeviceBuffer buffer = new DeviceBuffer(MemorySegment.ofAddress(address.address()), bytes);
        buffers.add(buffer);
        allocatedBytes += bytes;
        return buffer;
    }

    private CudaException allocationFailure(long bytes, int status) {
        String call = "dive_malloc(" + bytes + " bytes)";
        String message = CudaException.format(call, status, CudaException.cudaText(status), CudaException.cudaName(status))
                + "; " + memoryLine() + "; arena '" + name + "' holds " + mib(allocatedBytes) + " in " + buffers.size() + " buffers";
        return new CudaException(call, status, CudaException.Library.CUDA, message);
    }

    /** "X MiB free of Y MiB on the device", or why that is unknown */
    static String memoryLine() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(ValueLayout.JAVA_LONG), total = arena.allocate(ValueLayout.JAVA_LONG);
            int status = dive_h.dive_mem_info(free, total);
            if (status != 0) return "free device memory unknown (dive_mem_info: " + CudaException.describe(status) + ")";
            return mib(free.get(ValueLayout.JAVA_LONG, 0)) + " free of " + mib(total.get(ValueLayout.JAVA_LONG, 0)) + " on the device";
        } catch (RuntimeException e) {
            return "free device memory unknown (" + e.getMessage() + ")";
        }
    }

    static String mib(long bytes) { return String.format(Locale.ROOT, "%.1f MiB", bytes / 1048576.0); }

    /** frees one buffer of this arena now */
    public synchronized void free(DeviceBuffer buffer) {
        if (buffer.bytes() == 0) return;
        if (!buffers.remove(buffer)) throw new IllegalArgumentException(buffer + " does not belong to device arena '" + name + "'");
        allocatedBytes -= buffer.bytes();
        CudaException.check(dive_h.dive_free(buffer.pointer()), "dive_free(" + buffer.bytes() + " bytes)");
    }

    public synchronized long allocatedBytes() { return allocatedBytes; }

    /** frees every buffer (idempotent); the first failure is thrown after all were tried */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        CudaException first = null;
        for (int i = buffers.size() - 1; i >= 0; i--) {
            int status = dive_h.dive_free(buffers.get(i).pointer());
            if (status != 0 && first == null) first = CudaException.cuda("dive_free(" + buffers.get(i).bytes() + " bytes) closing arena '" + name + "'", status);
        }
        buffers.clear();
        allocatedBytes = 0;
        if (first != null) throw first;
    }
}
