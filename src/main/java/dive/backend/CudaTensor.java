package dive.backend;

import dive.bindings.dive_h;
import dive.cuda.CudaException;
import dive.cuda.DeviceBuffer;
import dive.tensor.DType;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.ref.Cleaner;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.LongAdder;

/**
 * A {@link DeviceTensor} of the {@link CudaBackend}: one device allocation (cudaMalloc) of {@link #size()} elements of
 * {@link #dtype()} (F32, I32 or F64). {@link #close()} frees it (cudaFree, which waits for the device's queued work, so
 * no kernel still reading it loses its memory); a tensor that becomes unreachable unclosed is freed by a
 * {@link Cleaner} as a safety net. Allocation and freeing are not stream-ordered and cost a device synchronisation on
 * free: hold tensors across steps (scratch that grows), not per op.
 *
 * <p>Only this package sees the device address; everything else goes through the backend's ops and counted transfers.
 */
public final class CudaTensor implements DeviceTensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final DType dtype;
    private final long size;
    private final Allocation allocation;
    private final Cleaner.Cleanable cleanable;

    /** the device memory and its release: owns no reference to the tensor (the Cleaner's action) */
    private static final class Allocation implements Runnable {
        final MemorySegment pointer;
        final long bytes;
        final LongAdder live;
        final AtomicBoolean freed = new AtomicBoolean();

        Allocation(MemorySegment pointer, long bytes, LongAdder live) {
            this.pointer = pointer;
            this.bytes = bytes;
            this.live = live;
        }

        @Override public void run() {
            if (!freed.compareAndSet(false, true)) return;
            live.add(-bytes);
            if (bytes > 0) CudaException.check(dive_h.dive_free(pointer), "dive_free(" + bytes + " bytes of a device tensor)");
        }
    }

    private CudaTensor(DType dtype, long size, Allocation allocation) {
        this.dtype = dtype;
        this.size = size;
        this.allocation = allocation;
        this.cleanable = CLEANER.register(this, allocation);
    }

    /** bytes of one element of a device tensor dtype, or an error naming the dtype */
    static int elementBytes(DType dtype) {
        return switch (dtype) {
            case F32, I32 -> 4;
            case F64 -> 8;
            default -> throw new IllegalArgumentException("device tensors hold F32, I32 or F64, not " + dtype);
        };
    }

    /** a new uninitialised tensor (the backend zeroes or fills it on its stream); {@code live} counts its bytes */
    static CudaTensor allocate(DType dtype, long n, LongAdder live) {
        if (n < 0) throw new IllegalArgumentException("tensor of " + n + " elements");
        long bytes = Math.multiplyExact(n, (long) elementBytes(dtype));
        MemorySegment pointer = MemorySegment.NULL;
        if (bytes > 0) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment slot = arena.allocate(ValueLayout.ADDRESS);
                int status = dive_h.dive_malloc(slot, bytes);
                if (status != 0)
                    throw CudaException.cuda("dive_malloc(" + bytes + " bytes for a " + dtype + " tensor of " + n + " elements)", status);
                pointer = MemorySegment.ofAddress(slot.get(ValueLayout.ADDRESS, 0).address());
            }
        }
        live.add(bytes);
        return new CudaTensor(dtype, n, new Allocation(pointer, bytes, live));
    }

    @Override public DType dtype() { return dtype; }
    @Override public long size() { return size; }

    /** bytes of device memory */
    public long bytes() { return allocation.bytes; }

    /** true once closed (or freed by the safety net) */
    public boolean isClosed() { return allocation.freed.get(); }

    /** the whole allocation (this package only); an error once closed */
    DeviceBuffer buffer(String what) {
        if (allocation.freed.get()) throw new IllegalStateException(what + " is a closed device tensor (" + this + ")");
        return allocation.bytes == 0 ? DeviceBuffer.NULL : new DeviceBuffer(allocation.pointer, allocation.bytes);
    }

    /** elements [offset, offset + count) */
    DeviceBuffer slice(long offset, long count, String what) {
        if (offset < 0 || count < 0 || offset + count > size)
            throw new IllegalArgumentException(what + ": elements [" + offset + ", " + (offset + count) + ") of a tensor of " + size);
        if (count == 0) return DeviceBuffer.NULL;
        int e = elementBytes(dtype);
        return buffer(what).slice(offset * e, count * e);
    }

    @Override public void close() { cleanable.clean(); }

    @Override public String toString() { return "CudaTensor[" + dtype + " × " + size + (isClosed() ? ", closed" : "") + "]"; }
}
