package dive.cuda;

import dive.bindings.cublas_h;
import dive.bindings.dive_h;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One GPU context for the engine: device 0, one stream, one cuBLAS handle bound to that stream, launch helpers
 * ({@link #kernels()}), copies, GemmEx, and a grow-only device workspace carved per operation. The handle and the
 * workspace are not safe for concurrent use: callers hold {@link #lock()} around each operation (the
 * {@code CudaBackend} does). Host memory for copies is ordinary off-heap memory from an {@link Arena} (not pinned:
 * the driver stages each copy — the honest cost of per-op transfers); heap arrays cannot be passed to native code.
 */
public final class CudaDevice implements AutoCloseable {
    private static final int ALIGN = 256;
    private static final MemorySegment ONE = Arena.global().allocateFrom(ValueLayout.JAVA_FLOAT, 1f);
    private static final MemorySegment ZERO = Arena.global().allocateFrom(ValueLayout.JAVA_FLOAT, 0f);

    private final MemorySegment stream;
    private final MemorySegment cublas;
    private final ReentrantLock lock = new ReentrantLock();
    private final DeviceArena workspaceArena = new DeviceArena("workspace");
    private final CudaKernels kernels;
    /** slot 0: an operation's activations; slot 1: weights uploaded for one operation */
    private final DeviceBuffer[] workspaces = {DeviceBuffer.NULL, DeviceBuffer.NULL};
    private int mathMode = -1;
    private boolean closed;

    private CudaDevice(MemorySegment stream, MemorySegment cublas) {
        this.stream = stream;
        this.cublas = cublas;
        this.kernels = new CudaKernels(this);
    }

    /** opens device 0 with a new stream and cuBLAS handle; {@link CudaUnavailableException} when no GPU is usable */
    public static CudaDevice open() {
        Cuda.requireUsable("CudaDevice.open");
        CudaException.check(dive_h.dive_set_device(0), "dive_set_device(0)");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment slot = arena.allocate(ValueLayout.ADDRESS);
            CudaException.check(dive_h.dive_stream_create(slot), "dive_stream_create");
            MemorySegment stream = MemorySegment.ofAddress(slot.get(ValueLayout.ADDRESS, 0).address());
            int status = cublas_h.cublasCreate_v2(slot);
            if (status != 0) {
                dive_h.dive_stream_destroy(stream);
                throw CudaException.cublas("cublasCreate_v2", status);
            }
            MemorySegment handle = MemorySegment.ofAddress(slot.get(ValueLayout.ADDRESS, 0).address());
            status = cublas_h.cublasSetStream_v2(handle, stream);
            if (status != 0) {
                cublas_h.cublasDestroy_v2(handle);
                dive_h.dive_stream_destroy(stream);
                throw CudaException.cublas("cublasSetStream_v2", status);
            }
            return new CudaDevice(stream, handle);
        }
    }

    public MemorySegment stream() { return stream; }
    public MemorySegment cublasHandle() { return cublas; }
    /** held around every operation that uses the stream, the handle, the workspace or the staging memory */
    public ReentrantLock lock() { return lock; }
    public CudaKernels kernels() { return kernels; }

    /** waits until all work queued on the stream is done */
    public void sync() { CudaException.check(dive_h.dive_stream_sync(stream), "dive_stream_sync"); }

    /** {free, total} bytes of device memory */
    public long[] memoryInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(ValueLayout.JAVA_LONG), total = arena.allocate(ValueLayout.JAVA_LONG);
            CudaException.check(dive_h.dive_mem_info(free, total), "dive_mem_info");
            return new long[] {free.get(ValueLayout.JAVA_LONG, 0), total.get(ValueLayout.JAVA_LONG, 0)};
        }
    }

    private void requireLocked() {
        if (!lock.isHeldByCurrentThread()) throw new IllegalStateException("CudaDevice used without holding its lock()");
        if (closed) throw new IllegalStateException("CudaDevice is closed");
    }

    static long aligned(long bytes) { return (bytes + ALIGN - 1) / ALIGN * ALIGN; }

    /**
     * Device scratch for one operation: views of the given sizes (256-byte aligned) in one grow-only allocation. The
     * views of the previous call become invalid (the stream is synchronised before the allocation grows).
     */
    public DeviceBuffer[] workspace(long... bytes) { return workspace(0, bytes); }

    /** {@link #workspace(long...)} in one of two independent slots (0 or 1), so two parts of an operation can each carve once */
    public DeviceBuffer[] workspace(int slot, long... bytes) {
        requireLocked();
        long total = 0;
        for (long b : bytes) total += aligned(b);
        DeviceBuffer current = workspaces[slot];
        if (total > current.bytes()) {
            sync();
            long grown = Math.max(total, current.bytes() + current.bytes() / 2);
            if (current.bytes() > 0) workspaceArena.free(current);
            workspaces[slot] = DeviceBuffer.NULL;
            workspaces[slot] = current = workspaceArena.allocate(grown);
        }
        DeviceBuffer[] views = new DeviceBuffer[bytes.length];
        long offset = 0;
        for (int i = 0; i < bytes.length; i++) {
            views[i] = bytes[i] == 0 ? DeviceBuffer.NULL : current.slice(offset, bytes[i]);
            offset += aligned(bytes[i]);
        }
        return views;
    }

    /** queues a host → device copy of src (off-heap) into dst */
    public void upload(DeviceBuffer dst, MemorySegment src) {
        if (src.byteSize() > dst.bytes()) throw new IllegalArgumentException("upload of " + src.byteSize() + " bytes into " + dst);
        CudaException.check(dive_h.dive_memcpy_h2d(dst.pointer(), src, src.byteSize(), stream), "dive_memcpy_h2d(" + src.byteSize() + " bytes)");
    }

    /** copies src into dst (off-heap) once the stream has reached this point, and waits for it */
    public void download(MemorySegment dst, DeviceBuffer src) {
        if (dst.byteSize() > src.bytes()) throw new IllegalArgumentException("download of " + dst.byteSize() + " bytes from " + src);
        CudaException.check(dive_h.dive_memcpy_d2h_sync(dst, src.pointer(), dst.byteSize(), stream), "dive_memcpy_d2h_sync(" + dst.byteSize() + " bytes)");
    }

    /** queues a device → device copy of src into dst (as many bytes as src has) */
    public void copy(DeviceBuffer dst, DeviceBuffer src) {
        if (src.bytes() > dst.bytes()) throw new IllegalArgumentException("device copy of " + src.bytes() + " bytes into " + dst);
        CudaException.check(dive_h.dive_memcpy_d2d(dst.pointer(), src.pointer(), src.bytes(), stream), "dive_memcpy_d2d(" + src.bytes() + " bytes)");
    }

    /** sets every byte of dst to value on the stream */
    public void memset(DeviceBuffer dst, int value) {
        CudaException.check(dive_h.dive_memset(dst.pointer(), value, dst.bytes(), stream), "dive_memset(" + dst.bytes() + " bytes)");
    }

    /**
     * cuBLAS GemmEx in column-major terms, F32 output and F32 accumulation (CUBLAS_COMPUTE_32F):
     * C (m, n) = op(A) (m, k) · op(B) (k, n) + beta · C with beta 0 or 1. {@code pedantic} selects CUBLAS_PEDANTIC_MATH (F32 operands:
     * no reduced-precision shortcuts), else CUBLAS_DEFAULT_MATH (BF16 operands on tensor cores).
     */
    public void gemm(int transA, int transB, int m, int n, int k, DeviceBuffer a, int aType, int lda,
                     DeviceBuffer b, int bType, int ldb, float beta, DeviceBuffer c, int ldc, boolean pedantic) {
        requireLocked();
        if (beta != 0f && beta != 1f) throw new IllegalArgumentException("gemm: beta " + beta + ", expected 0 (overwrite) or 1 (accumulate)");
        int mode = pedantic ? cublas_h.CUBLAS_PEDANTIC_MATH : cublas_h.CUBLAS_DEFAULT_MATH;
        if (mode != mathMode) {
            CudaException.checkCublas(cublas_h.cublasSetMathMode(cublas, mode), "cublasSetMathMode(" + mode + ")");
            mathMode = mode;
        }
        int status = cublas_h.cublasGemmEx(cublas, transA, transB, m, n, k, ONE, a.pointer(), aType, lda,
                b.pointer(), bType, ldb, beta == 0f ? ZERO : ONE,
                c.pointer(), cublas_h.CUDA_R_32F, ldc, cublas_h.CUBLAS_COMPUTE_32F, cublas_h.CUBLAS_GEMM_DEFAULT);
        if (status != 0)
            throw CudaException.cublas("cublasGemmEx(op " + transA + "/" + transB + ", m=" + m + ", n=" + n + ", k=" + k
                    + ", types " + aType + "/" + bType + ")", status);
    }

    /** frees the workspace, destroys the handle and the stream (idempotent) */
    @Override
    public void close() {
        lock.lock();
        try {
            if (closed) return;
            closed = true;
            dive_h.dive_stream_sync(stream);
            workspaceArena.close();
            int cublasStatus = cublas_h.cublasDestroy_v2(cublas);
            CudaException.check(dive_h.dive_stream_destroy(stream), "dive_stream_destroy");
            CudaException.checkCublas(cublasStatus, "cublasDestroy_v2");
        } finally {
            lock.unlock();
        }
    }
}
