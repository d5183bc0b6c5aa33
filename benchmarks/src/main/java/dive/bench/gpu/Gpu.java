package dive.bench.gpu;

import dive.bindings.CudaProbe;
import dive.bindings.cublas_h;
import dive.bindings.dive_h;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The device-side toolkit of the GPU benchmarks, written directly on {@link dive_h} and {@link cublas_h}: one stream,
 * one cuBLAS handle bound to it, device allocations freed on {@link #close()}, seeded random uploads, and the BF16
 * GEMM in PyTorch's Linear layout. Every status is checked; a failure names the call.
 *
 * <p>{@link #unavailableReason(String...)} says, without touching the device, why the benchmarks cannot run here
 * (no libdive.so, no driver, no device, no cuBLAS, or a kernel missing from the library): benchmarks print it and
 * skip instead of failing.
 */
public final class Gpu implements AutoCloseable {
    private final Arena arena = Arena.ofShared();
    private final List<MemorySegment> allocations = new ArrayList<>();
    private final MemorySegment one, zero;
    /** the cudaStream_t every launch goes to */
    public final MemorySegment stream;
    /** the cublasHandle_t, bound to {@link #stream} */
    public final MemorySegment cublas;

    private Gpu() {
        check(dive_h.dive_set_device(0), "cudaSetDevice(0)");
        MemorySegment slot = arena.allocate(ValueLayout.ADDRESS);
        check(dive_h.dive_stream_create(slot), "cudaStreamCreate");
        stream = slot.get(ValueLayout.ADDRESS, 0);
        checkCublas(cublas_h.cublasCreate_v2(slot), "cublasCreate");
        cublas = slot.get(ValueLayout.ADDRESS, 0);
        checkCublas(cublas_h.cublasSetStream_v2(cublas, stream), "cublasSetStream");
        one = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 1f);
        zero = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 0f);
    }

    /**
     * Why the GPU benchmarks cannot run on this machine, or null when they can: the native library, a visible CUDA
     * device, cuBLAS, and each named dive_* function present in the library.
     */
    public static String unavailableReason(String... diveFunctions) {
        CudaProbe.Result probe;
        try {
            probe = CudaProbe.probe();
        } catch (RuntimeException e) {
            return "the CUDA probe failed: " + e.getMessage();
        }
        if (!probe.usable()) return probe.reason();
        if (cublas_h.available().isEmpty()) return cublas_h.unavailableReason();
        SymbolLookup lib = dive_h.available().orElseThrow();
        List<String> missing = new ArrayList<>();
        for (String f : diveFunctions) if (lib.find(f).isEmpty()) missing.add(f);
        if (!missing.isEmpty()) return "libdive.so lacks " + String.join(", ", missing) + " (kernels not built yet?)";
        return null;
    }

    /**
     * The skip line a benchmark prints when {@link #unavailableReason} is not null. Starts with the marker
     * {@code run.sh} and the report look for.
     */
    public static String skipMessage(String benchmark, String reason) {
        return "SKIPPED " + benchmark + ": no usable GPU here (" + reason + "); the numbers JMH prints for it measure an empty method";
    }

    /** device 0 with a new stream and cuBLAS handle; callers checked {@link #unavailableReason} first */
    public static Gpu open() { return new Gpu(); }

    /** throws, naming the call, when a dive_* status is not 0 */
    public static void check(int status, String what) {
        if (status != 0)
            throw new IllegalStateException(what + " failed: " + CudaProbe.errorString(status) + " (status " + status + ")");
    }

    static void checkCublas(int status, String what) {
        if (status != 0)
            throw new IllegalStateException(what + " failed: " + cublas_h.cublasGetStatusString(status) + " (status " + status + ")");
    }

    /** device memory of {@code bytes}, freed on close; {@code name} appears in the error if it fails */
    public MemorySegment alloc(long bytes, String name) {
        MemorySegment slot = arena.allocate(ValueLayout.ADDRESS);
        check(dive_h.dive_malloc(slot, Math.max(bytes, 1)), "cudaMalloc of " + name + " (" + bytes + " bytes)");
        MemorySegment p = slot.get(ValueLayout.ADDRESS, 0);
        allocations.add(p);
        return p;
    }

    /** copies host memory to a new device buffer and waits for the copy */
    public MemorySegment upload(MemorySegment host, String name) {
        MemorySegment d = alloc(host.byteSize(), name);
        check(dive_h.dive_memcpy_h2d(d, host, host.byteSize(), stream), "upload of " + name);
        sync();
        return d;
    }

    /** a device buffer of {@code count} bf16 values, uniform in [−scale, scale), from {@code seed} */
    public MemorySegment randomBf16(long count, float scale, long seed, String name) {
        try (Arena host = Arena.ofConfined()) {
            MemorySegment h = host.allocate(count * 2, 64);
            SplittableRandom r = new SplittableRandom(seed);
            for (long i = 0; i < count; i++) h.setAtIndex(ValueLayout.JAVA_SHORT, i, toBf16((float) ((r.nextDouble() * 2 - 1) * scale)));
            return upload(h, name);
        }
    }

    /** a device buffer of {@code count} F32 values, uniform in [−scale, scale), from {@code seed} */
    public MemorySegment randomF32(long count, float scale, long seed, String name) {
        try (Arena host = Arena.ofConfined()) {
            MemorySegment h = host.allocate(count * 4, 64);
            SplittableRandom r = new SplittableRandom(seed);
            for (long i = 0; i < count; i++) h.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) ((r.nextDouble() * 2 - 1) * scale));
            return upload(h, name);
        }
    }

    /** a device copy of {@code values} */
    public MemorySegment ints(int[] values, String name) {
        try (Arena host = Arena.ofConfined()) {
            return upload(host.allocateFrom(ValueLayout.JAVA_INT, values), name);
        }
    }

    /** reads {@code count} ints back (synchronises the stream) */
    public int[] readInts(MemorySegment d, int count, String name) {
        try (Arena host = Arena.ofConfined()) {
            MemorySegment h = host.allocate((long) count * 4, 64);
            check(dive_h.dive_memcpy_d2h_sync(h, d, (long) count * 4, stream), "read-back of " + name);
            return h.toArray(ValueLayout.JAVA_INT);
        }
    }

    /** reads {@code count} floats back (synchronises the stream) */
    public float[] readFloats(MemorySegment d, long count, String name) {
        try (Arena host = Arena.ofConfined()) {
            MemorySegment h = host.allocate(count * 4, 64);
            check(dive_h.dive_memcpy_d2h_sync(h, d, count * 4, stream), "read-back of " + name);
            return h.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    /** float → bf16 bits, round to nearest even (finite inputs) */
    public static short toBf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    /** bf16 bits → float (exact) */
    public static float fromBf16(short b) { return Float.intBitsToFloat((b & 0xFFFF) << 16); }

    /**
     * out (rows, n) F32 = x (rows, k) bf16 · w (n, k)ᵀ bf16 with F32 accumulation, all row-major (w in PyTorch's
     * Linear layout), by cublasGemmEx. cuBLAS is column-major: the same bytes are outᵀ (n, rows) = op_T(w) · xᵀ.
     */
    public void matmulBf16(MemorySegment out, MemorySegment x, MemorySegment w, int rows, int n, int k) {
        checkCublas(cublas_h.cublasGemmEx(cublas, cublas_h.CUBLAS_OP_T, cublas_h.CUBLAS_OP_N, n, rows, k,
                one, w, cublas_h.CUDA_R_16BF, k, x, cublas_h.CUDA_R_16BF, k,
                zero, out, cublas_h.CUDA_R_32F, n, cublas_h.CUBLAS_COMPUTE_32F, cublas_h.CUBLAS_GEMM_DEFAULT),
                "cublasGemmEx (" + rows + "x" + k + ") · (" + n + "x" + k + ")ᵀ");
    }

    /** waits for everything launched on the stream */
    public void sync() { check(dive_h.dive_stream_sync(stream), "cudaStreamSynchronize"); }

    /** one line: device name, memory, compute capability, SMs, driver/runtime and cuBLAS versions */
    public static String describe() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment name = a.allocate(256), mem = a.allocate(8), cc1 = a.allocate(4), cc2 = a.allocate(4), sms = a.allocate(4);
            MemorySegment drv = a.allocate(4), rt = a.allocate(4), v = a.allocate(4);
            check(dive_h.dive_device_info(0, name, 256, mem, cc1, cc2, sms), "cudaGetDeviceProperties");
            check(dive_h.dive_driver_version(drv, rt), "cudaDriverGetVersion");
            StringBuilder s = new StringBuilder();
            s.append(name.getString(0)).append(", ").append(mem.get(ValueLayout.JAVA_LONG, 0) >> 20).append(" MiB, sm_")
                    .append(cc1.get(ValueLayout.JAVA_INT, 0)).append(cc2.get(ValueLayout.JAVA_INT, 0)).append(", ")
                    .append(sms.get(ValueLayout.JAVA_INT, 0)).append(" SMs, driver ").append(drv.get(ValueLayout.JAVA_INT, 0))
                    .append(", runtime ").append(rt.get(ValueLayout.JAVA_INT, 0));
            if (cublas_h.available().isPresent()) {
                int[] ver = new int[3];
                for (int i = 0; i < 3; i++) {
                    cublas_h.cublasGetProperty(i, v);
                    ver[i] = v.get(ValueLayout.JAVA_INT, 0);
                }
                s.append(", cuBLAS ").append(ver[0]).append('.').append(ver[1]).append('.').append(ver[2])
                        .append(" (").append(cublas_h.libraryPath()).append(')');
            }
            return s.toString();
        }
    }

    @Override
    public void close() {
        try {
            sync();
        } finally {
            for (MemorySegment p : allocations) dive_h.dive_free(p);
            allocations.clear();
            cublas_h.cublasDestroy_v2(cublas);
            dive_h.dive_stream_destroy(stream);
            arena.close();
        }
    }
}
