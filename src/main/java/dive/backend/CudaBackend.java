package dive.backend;

import dive.cuda.CudaDevice;
import dive.cuda.CudaKernels;
import dive.cuda.DeviceArena;
import dive.cuda.DeviceBuffer;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;

import static dive.bindings.cublas_h.CUBLAS_OP_N;
import static dive.bindings.cublas_h.CUBLAS_OP_T;
import static dive.bindings.cublas_h.CUDA_R_16BF;
import static dive.bindings.cublas_h.CUDA_R_32F;

/**
 * The Backend on an NVIDIA GPU: the kernels of {@code native/} (dive.h) through FFM and cuBLAS GemmEx, on one stream.
 *
 * <p><b>Device tensors.</b> Activations, gradients, routing tables, optimizer moments and statistics are
 * {@link CudaTensor}s (device memory). Every op on device tensors only queues work on the backend's stream — kernels,
 * cuBLAS calls, device-to-device copies — and returns without waiting: no host copy, no host synchronisation. Expert
 * offsets stay on the device: the grouped and per-expert ops read them there (one launch for all experts). The host
 * waits only at the edges, which are the counted transfers ({@link #transfers()}, counted as {@link CpuBackend} counts
 * them): {@link #read}/{@link #download}, the scalar results of {@link #crossEntropy} (the loss) and
 * {@link #firstNonFinite}, and {@link #readBack}. {@link #upload} and {@link #write} queue a
 * host → device copy from staging memory (the driver copies pageable memory before returning; no wait for the
 * device).
 *
 * <p><b>Errors found on the device</b> (a token id outside the vocabulary, an expert id outside [0, E), a row index
 * outside its tensor) are recorded by the kernels in a small device table of first bad indices and raised as an
 * {@link IllegalArgumentException} at the next edge (the read that would have returned the wrong values); that edge
 * then also copies the table (32 bytes, bookkeeping: not counted as a transfer of values). The bad element itself is
 * skipped or read as zeros, never out of bounds. Shapes and sizes are checked on the host before anything is queued.
 *
 * <p><b>Weights</b> ({@link Tensor}s) are uploaded once per tensor and cached ({@link CudaWeights}: weak keys, counted
 * as host → device transfers). A trainable (writable F32) weight lives on the device for the whole stage:
 * {@link #adamW} updates the device copy, {@link #readBack} copies it to host memory, {@link #weightChanged} has the
 * next use upload the host memory again.
 *
 * <p><b>Arithmetic.</b> Dense matmuls: cuBLAS GemmEx with F32 accumulation: F32 (and F16, widened) weights with F32
 * operands and pedantic math (no TF32), ~1e-5 relative to the CPU; BF16 weights on tensor cores with the activation
 * rounded to BF16 on the device, ~1e-2 relative. Grouped and per-expert matmuls: the grouped kernels of moe.cu (BF16
 * tensor cores, or F32 in the CPU's order; the weight gradient in F32). Element-wise ops, dropout (counter-based
 * SplittableRandom draws), bias gradients, routing gradients, channel statistics, AdamW: the CPU's bits (or within an
 * ulp where an exp is involved). Σx² ({@link #sumOfSquares}) in double in a fixed tree order, not the CPU's index
 * order (the last bits can differ).
 *
 * <p><b>Limits</b> (an {@link IllegalArgumentException} before any device work): at most {@value #MAX_EXPERTS} experts
 * in the routing and expert ops (route_topk, the counting sort, the expert pointer tables), head dimension at most
 * {@value #MAX_HEAD_DIM} (the attention kernels).
 *
 * <p><b>Threads.</b> Safe to call from many threads: device work is serialised per backend instance (one stream, one
 * cuBLAS handle, one lock).
 */
public final class CudaBackend implements Backend, AutoCloseable {
    /** the most experts the routing kernels and the expert pointer tables take (dive.h) */
    static final int MAX_EXPERTS = 256;
    /** dive_attention's limit on the head dimension */
    static final int MAX_HEAD_DIM = 256;

    // the backend's small device state: first-bad-index flags per kind of fault, then room for scalar results
    private static final int F_EMBEDDING = 0, F_EMBEDDING_BACKWARD = 1, F_SORT = 2, F_GATHER = 3, F_SCATTER = 4, F_COUNT = 5,
            F_ROUTING = 6, F_SORT_CALL = 7, FAULTS = 8;
    private static final long RESULT_OFFSET = 128, STATE_BYTES = 256;

    private final CudaDevice device;
    private final CudaKernels kernels;
    private final CpuBackend cpu;
    private final Transfers transfers = new Transfers();
    private final CudaWeights weights;
    private final DeviceArena stateArena = new DeviceArena("backend state");
    private final DeviceBuffer state;
    private final LongAdder tensorBytes = new LongAdder();
    private final String[] faultContext = new String[FAULTS];
    private boolean faultsArmed;
    private boolean closed;

    /**
     * Opens device 0 (a new stream and cuBLAS handle). {@code cpu} is the CPU backend paired with this one
     * ({@link #cpu()}: for callers' host-side work); no op of this backend runs on it.
     */
    public CudaBackend(CpuBackend cpu) {
        this(CudaDevice.open(), cpu);
    }

    /** on an open device, which this backend then owns (closes) */
    public CudaBackend(CudaDevice device, CpuBackend cpu) {
        this.device = device;
        this.kernels = device.kernels();
        this.cpu = cpu;
        this.weights = new CudaWeights(device, transfers);
        this.state = stateArena.allocate(STATE_BYTES);
        device.lock().lock();
        try {
            device.memset(state.slice(0, 4L * FAULTS), 0xff); // every flag −1: nothing found
        } finally {
            device.lock().unlock();
        }
    }

    @Override public String name() { return "cuda"; }

    /** the device this backend runs on */
    public CudaDevice device() { return device; }

    /** the CPU backend this one was made with */
    public CpuBackend cpu() { return cpu; }

    @Override public Transfers transfers() { return transfers; }

    /** bytes of device memory held by cached weights */
    public long cachedWeightBytes() { return locked(weights::bytes); }

    /** bytes of device memory held by this backend's live device tensors */
    public long deviceTensorBytes() { return tensorBytes.sum(); }

    /** waits until every op queued so far has run (timing; not needed for correctness: the edges wait) */
    public void synchronize() {
        run(host -> {
            device.sync();
            checkFaults(host);
        });
    }

    // ================================================================ running on the device

    private interface DeviceWork<T> { T run(Arena host); }

    /** one operation: holds the device lock, gives off-heap staging freed afterwards */
    private <T> T onDevice(DeviceWork<T> work) {
        device.lock().lock();
        try (Arena host = Arena.ofConfined()) {
            if (closed) throw new IllegalStateException("CudaBackend is closed");
            return work.run(host);
        } finally {
            device.lock().unlock();
        }
    }

    private void run(Consumer<Arena> work) {
        onDevice(host -> {
            work.accept(host);
            return null;
        });
    }

    private <T> T locked(java.util.function.Supplier<T> work) {
        device.lock().lock();
        try {
            if (closed) throw new IllegalStateException("CudaBackend is closed");
            return work.get();
        } finally {
            device.lock().unlock();
        }
    }

    // ---------------------------------------------------------------- device tensors as arguments

    private static CudaTensor cuda(DeviceTensor t, DType dtype, String what) {
        if (t == null) throw new IllegalArgumentException(what + " is null (expected an " + dtype + " tensor of the CUDA backend)");
        if (!(t instanceof CudaTensor c))
            throw new IllegalArgumentException(what + " is a " + t.getClass().getSimpleName() + " of another backend (expected an " + dtype
                    + " tensor of the CUDA backend)");
        if (c.dtype() != dtype) throw new IllegalArgumentException(what + " is " + c.dtype() + " (expected " + dtype + ")");
        return c;
    }

    /** the memory of a tensor of {@code dtype} holding at least {@code count} elements, or an error naming op and argument */
    private static DeviceBuffer mem(DeviceTensor t, DType dtype, long count, String op, String what) {
        CudaTensor c = cuda(t, dtype, op + " " + what);
        if (count < 0 || c.size() < count)
            throw new IllegalArgumentException(op + ": " + what + " has " + c.size() + " elements, expected ≥ " + count);
        return c.buffer(op + " " + what);
    }

    private static DeviceBuffer f32(DeviceTensor t, long count, String op, String what) { return mem(t, DType.F32, count, op, what); }

    private static DeviceBuffer i32(DeviceTensor t, long count, String op, String what) { return mem(t, DType.I32, count, op, what); }

    private static DeviceBuffer f64(DeviceTensor t, long count, String op, String what) { return mem(t, DType.F64, count, op, what); }

    private static long size(DeviceTensor t) { return t.size(); }

    private static void nonNegative(String op, long... values) {
        for (long v : values) if (v < 0) throw new IllegalArgumentException(op + ": negative size " + v + " in " + Arrays.toString(values));
    }

    // ---------------------------------------------------------------- faults found on the device

    /** the flag of one kind of fault, armed so the next edge reads the flags; {@code context} says what was checked */
    private DeviceBuffer fault(int slot, String context) {
        faultContext[slot] = context;
        faultsArmed = true;
        return state.slice(4L * slot, 4);
    }

    /** after a synchronising edge: raises what the kernels recorded since the last check (and clears it) */
    private void checkFaults(Arena host) {
        if (!faultsArmed) return;
        faultsArmed = false;
        MemorySegment flags = host.allocate(4L * FAULTS, 4);
        device.download(flags, state.slice(0, 4L * FAULTS));
        for (int slot = 0; slot < FAULTS; slot++) {
            int index = flags.getAtIndex(ValueLayout.JAVA_INT, slot);
            if (slot == F_SORT_CALL || index < 0) continue;
            device.memset(state.slice(0, 4L * FAULTS), 0xff);
            throw new IllegalArgumentException(faultContext[slot] + ": found at index " + index
                    + " by the device (raised at the next read; the bad element was skipped or read as zeros)");
        }
    }

    // ================================================================ memory and edge transfers

    @Override public DeviceTensor allocate(DType dtype, long n) {
        return onDevice(host -> {
            CudaTensor t = CudaTensor.allocate(dtype, n, tensorBytes);
            if (n > 0) device.memset(t.buffer("allocate"), 0);
            return t;
        });
    }

    @Override public DeviceTensor upload(float[] values) {
        return uploaded(DType.F32, MemorySegment.ofArray(values), ValueLayout.JAVA_FLOAT, values.length);
    }

    @Override public DeviceTensor upload(int[] values) {
        return uploaded(DType.I32, MemorySegment.ofArray(values), ValueLayout.JAVA_INT, values.length);
    }

    /** a new tensor holding {@code count} elements of a heap array (a counted host → device transfer) */
    private DeviceTensor uploaded(DType dtype, MemorySegment values, ValueLayout layout, int count) {
        return onDevice(host -> {
            CudaTensor t = CudaTensor.allocate(dtype, count, tensorBytes);
            try {
                put(t.buffer("upload"), values, layout, count, host);
            } catch (RuntimeException e) {
                t.close();
                throw e;
            }
            transfers.countToDevice(4L * count);
            return t;
        });
    }

    /** queues dst ← the first {@code count} elements of a heap array, through off-heap staging */
    private void put(DeviceBuffer dst, MemorySegment src, ValueLayout layout, long count, Arena host) {
        if (count == 0) return;
        long bytes = count * layout.byteSize();
        MemorySegment staged = host.allocate(bytes, 16);
        MemorySegment.copy(src, 0, staged, 0, bytes);
        device.upload(dst, staged);
    }

    @Override public void write(DeviceTensor dst, long dstOff, float[] values, int n) {
        written(dst, DType.F32, dstOff, MemorySegment.ofArray(values), ValueLayout.JAVA_FLOAT, values.length, n);
    }

    @Override public void write(DeviceTensor dst, long dstOff, int[] values, int n) {
        written(dst, DType.I32, dstOff, MemorySegment.ofArray(values), ValueLayout.JAVA_INT, values.length, n);
    }

    /** dst[dstOff .. dstOff+n) ← the first n of {@code length} elements of a heap array (a counted host → device transfer) */
    private void written(DeviceTensor dst, DType dtype, long dstOff, MemorySegment values, ValueLayout layout, int length, int n) {
        if (n < 0 || n > length) throw new IllegalArgumentException("write: " + n + " values of an array of " + length);
        CudaTensor t = cuda(dst, dtype, "write destination");
        run(host -> {
            put(t.slice(dstOff, n, "write destination"), values, layout, n, host);
            transfers.countToDevice(4L * n);
        });
    }

    /** waits for the stream, copies elements [srcOff, srcOff + n) into {@code dst} (a heap array), counts, checks faults */
    private void get(CudaTensor src, long srcOff, MemorySegment dst, ValueLayout layout, int n) {
        if (n < 0 || n * layout.byteSize() > dst.byteSize())
            throw new IllegalArgumentException("read: " + n + " values into an array of " + dst.byteSize() / layout.byteSize());
        DeviceBuffer from = src.slice(srcOff, n, "read source");
        run(host -> {
            long bytes = n * layout.byteSize();
            MemorySegment staged = host.allocate(Math.max(bytes, 1), 16);
            if (n > 0) device.download(staged.asSlice(0, bytes), from);
            transfers.countToHost(bytes);
            checkFaults(host);
            MemorySegment.copy(staged, 0, dst, 0, bytes);
        });
    }

    @Override public void read(DeviceTensor src, long srcOff, float[] dst, int n) {
        get(cuda(src, DType.F32, "read source"), srcOff, MemorySegment.ofArray(dst), ValueLayout.JAVA_FLOAT, n);
    }

    @Override public void read(DeviceTensor src, long srcOff, int[] dst, int n) {
        get(cuda(src, DType.I32, "read source"), srcOff, MemorySegment.ofArray(dst), ValueLayout.JAVA_INT, n);
    }

    @Override public void read(DeviceTensor src, long srcOff, double[] dst, int n) {
        get(cuda(src, DType.F64, "read source"), srcOff, MemorySegment.ofArray(dst), ValueLayout.JAVA_DOUBLE, n);
    }

    @Override public void copy(DeviceTensor dst, long dstOff, DeviceTensor src, long srcOff, long n) {
        if (dst == null || src == null) throw new IllegalArgumentException("copy: a null tensor");
        if (dst.dtype() != src.dtype()) throw new IllegalArgumentException("copy from " + src.dtype() + " to " + dst.dtype());
        CudaTensor d = cuda(dst, dst.dtype(), "copy destination"), s = cuda(src, src.dtype(), "copy source");
        DeviceBuffer to = d.slice(dstOff, n, "copy destination"), from = s.slice(srcOff, n, "copy source");
        if (n == 0) return;
        run(host -> device.copy(to, from));
    }

    @Override public void zero(DeviceTensor x, long off, long n) {
        CudaTensor t = cuda(x, x == null ? DType.F32 : x.dtype(), "zero");
        DeviceBuffer span = t.slice(off, n, "zero");
        if (n == 0) return;
        run(host -> device.memset(span, 0));
    }

    @Override public void readBack(Tensor weight) {
        run(host -> {
            weights.readBack(weight, host);
            transfers.countToHost(weight.data().byteSize());
            checkFaults(host);
        });
    }

    @Override public void weightChanged(Tensor weight) {
        locked(() -> {
            weights.changed(weight);
            return null;
        });
    }

    // ================================================================ dense ops

    /** Row-major out (M, N) = x (M, K) · wᵀ is column-major outᵀ (N, M) = (w as K×N)ᵀ · (x as K×M). */
    @Override public void matmul(DeviceTensor out, DeviceTensor x, int m, Tensor w) {
        nonNegative("matmul", m);
        int n = w.rows(), k = w.cols();
        gemmWithWeight(f32(out, (long) m * n, "matmul", "out (M, N)"), f32(x, (long) m * k, "matmul", "x (M, K)"), m, w, true);
    }

    /** dx (M, K) = dOut (M, N) · w (N, K): column-major dxᵀ (K, M) = (w as K×N) · (dOut as N×M) */
    @Override public void matmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, int m, Tensor w) {
        nonNegative("matmulBackwardInput", m);
        int n = w.rows(), k = w.cols();
        gemmWithWeight(f32(dx, (long) m * k, "matmulBackwardInput", "dx (M, K)"), f32(dOut, (long) m * n, "matmulBackwardInput", "dOut (M, N)"),
                m, w, false);
    }

    /**
     * out (M, cols) = in (M, depth) · op(w) for w (N, K) as stored (column-major: K × N, leading dimension K):
     * {@code transposeW} true: op(w) = wᵀ (depth K, cols N, the forward); false: op(w) = w (depth N, cols K, the input
     * gradient). BF16 weights multiply a BF16 copy of {@code in} (device workspace); F32 weights run in F32.
     */
    private void gemmWithWeight(DeviceBuffer out, DeviceBuffer in, int m, Tensor w, boolean transposeW) {
        int n = w.rows(), k = w.cols(), depth = transposeW ? k : n, cols = transposeW ? n : k;
        if (m == 0 || cols == 0) return;
        boolean bf16 = w.dtype() == DType.BF16;
        int type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
        run(host -> {
            DeviceBuffer wd = weights.get(w, CudaWeights.Form.NATIVE, host);
            if (depth == 0) {
                device.memset(out.slice(0, 4L * m * cols), 0);
                return;
            }
            DeviceBuffer a = in;
            if (bf16) {
                a = device.workspace(2L * m * depth)[0];
                kernels.f32ToBf16(a, in, (long) m * depth);
            }
            device.gemm(transposeW ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, cols, m, depth, wd, type, k, a, type, depth, 0f, out, cols, !bf16);
        });
    }

    /** dw (N, K) += dOutᵀ · x: column-major dwᵀ (K, N) += (x as K×M) · (dOut as N×M)ᵀ, in F32 */
    @Override public void matmulBackwardWeight(DeviceTensor dw, DeviceTensor dOut, DeviceTensor x, int m, int n, int k) {
        nonNegative("matmulBackwardWeight", m, n, k);
        DeviceBuffer g = f32(dw, (long) n * k, "matmulBackwardWeight", "dw (N, K)");
        DeviceBuffer dy = f32(dOut, (long) m * n, "matmulBackwardWeight", "dOut (M, N)");
        DeviceBuffer in = f32(x, (long) m * k, "matmulBackwardWeight", "x (M, K)");
        if (m == 0 || n == 0 || k == 0) return;
        run(host -> device.gemm(CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, in, CUDA_R_32F, k, dy, CUDA_R_32F, n, 1f, g, k, true));
    }

    @Override public void rmsNorm(DeviceTensor out, DeviceTensor x, Tensor weight, int rows, float eps) {
        nonNegative("rmsNorm", rows);
        int d = Math.toIntExact(weight.numel());
        long count = (long) rows * d;
        DeviceBuffer o = f32(out, count, "rmsNorm", "out (rows, d)"), in = f32(x, count, "rmsNorm", "x (rows, d)");
        if (count == 0) return;
        run(host -> kernels.rmsNorm(o, in, weights.get(weight, CudaWeights.Form.F32, host), rows, d, eps));
    }

    @Override public void rmsNormBackward(DeviceTensor dx, DeviceTensor dWeight, DeviceTensor dOut, DeviceTensor x, Tensor weight,
                                          int rows, float eps) {
        nonNegative("rmsNormBackward", rows);
        int d = Math.toIntExact(weight.numel());
        long count = (long) rows * d;
        DeviceBuffer g = f32(dx, count, "rmsNormBackward", "dx (rows, d)"), dy = f32(dOut, count, "rmsNormBackward", "dOut (rows, d)");
        DeviceBuffer in = f32(x, count, "rmsNormBackward", "x (rows, d)");
        DeviceBuffer gw = dWeight == null ? DeviceBuffer.NULL : f32(dWeight, d, "rmsNormBackward", "dWeight (d)");
        if (count == 0) return;
        run(host -> kernels.rmsNormBackward(g, gw, dy, in, weights.get(weight, CudaWeights.Form.F32, host), rows, d, eps));
    }

    @Override public void rope(DeviceTensor x, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq) {
        rope("rope", x, rows, heads, headDim, positions, invFreq, false);
    }

    @Override public void ropeBackward(DeviceTensor dx, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq) {
        rope("ropeBackward", dx, rows, heads, headDim, positions, invFreq, true);
    }

    private void rope(String op, DeviceTensor x, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq, boolean inverse) {
        nonNegative(op, rows, heads, headDim);
        if (headDim % 2 != 0) throw new IllegalArgumentException(op + ": head dimension " + headDim + " is odd");
        long count = (long) rows * heads * headDim;
        DeviceBuffer v = f32(x, count, op, "x (rows, heads, headDim)"), pos = i32(positions, rows, op, "positions (rows)");
        DeviceBuffer freq = f32(invFreq, headDim / 2, op, "invFreq (headDim/2)");
        if (count == 0) return;
        run(host -> kernels.rope(v, rows, heads, headDim, pos, freq, inverse));
    }

    private static void checkHeads(String op, int nHeads, int nKvHeads, int headDim) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException(op + ": " + nHeads + " query heads over " + nKvHeads + " KV heads, expected a multiple");
        if (headDim > MAX_HEAD_DIM)
            throw new IllegalArgumentException(op + ": head dimension " + headDim + " > " + MAX_HEAD_DIM + " (the CUDA attention kernels' limit)");
    }

    @Override public void attention(DeviceTensor out, DeviceTensor q, DeviceTensor kCache, DeviceTensor vCache, int T, int startPos,
                                    int nHeads, int nKvHeads, int headDim, float scale) {
        checkHeads("attention", nHeads, nKvHeads, headDim);
        nonNegative("attention", T, startPos, nHeads, headDim);
        long qCount = (long) T * nHeads * headDim, kvCount = (long) (startPos + T) * nKvHeads * headDim;
        DeviceBuffer o = f32(out, qCount, "attention", "out (T, nHeads, headDim)"), qb = f32(q, qCount, "attention", "q (T, nHeads, headDim)");
        DeviceBuffer kb = f32(kCache, kvCount, "attention", "kCache (startPos + T, nKvHeads, headDim)");
        DeviceBuffer vb = f32(vCache, kvCount, "attention", "vCache (startPos + T, nKvHeads, headDim)");
        if (qCount == 0) return;
        run(host -> kernels.attention(o, qb, kb, vb, T, startPos, nHeads, nKvHeads, headDim, scale));
    }

    @Override public void attentionBackward(DeviceTensor dq, DeviceTensor dk, DeviceTensor dv, DeviceTensor dOut, DeviceTensor q,
                                            DeviceTensor k, DeviceTensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        checkHeads("attentionBackward", nHeads, nKvHeads, headDim);
        nonNegative("attentionBackward", B, T, nHeads, headDim);
        long qCount = (long) B * T * nHeads * headDim, kvCount = (long) B * T * nKvHeads * headDim;
        String op = "attentionBackward";
        DeviceBuffer gq = f32(dq, qCount, op, "dq (B, T, nHeads, headDim)"), gk = f32(dk, kvCount, op, "dk (B, T, nKvHeads, headDim)");
        DeviceBuffer gv = f32(dv, kvCount, op, "dv (B, T, nKvHeads, headDim)"), dy = f32(dOut, qCount, op, "dOut (B, T, nHeads, headDim)");
        DeviceBuffer qb = f32(q, qCount, op, "q (B, T, nHeads, headDim)"), kb = f32(k, kvCount, op, "k (B, T, nKvHeads, headDim)");
        DeviceBuffer vb = f32(v, kvCount, op, "v (B, T, nKvHeads, headDim)");
        if (qCount == 0) return;
        run(host -> kernels.attentionBackward(gq, gk, gv, dy, qb, kb, vb, B, T, nHeads, nKvHeads, headDim, scale));
    }

    @Override public void swiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, int n) {
        nonNegative("swiglu", n);
        DeviceBuffer o = f32(out, n, "swiglu", "out"), g = f32(gate, n, "swiglu", "gate"), u = f32(up, n, "swiglu", "up");
        if (n == 0) return;
        run(host -> kernels.swiglu(o, g, u, n));
    }

    @Override public void swigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up, int n) {
        nonNegative("swigluBackward", n);
        String op = "swigluBackward";
        DeviceBuffer gg = f32(dGate, n, op, "dGate"), gu = f32(dUp, n, op, "dUp"), dy = f32(dOut, n, op, "dOut");
        DeviceBuffer g = f32(gate, n, op, "gate"), u = f32(up, n, op, "up");
        if (n == 0) return;
        run(host -> kernels.swigluBackward(gg, gu, dy, g, u, n));
    }

    @Override public void embedding(DeviceTensor out, Tensor table, DeviceTensor ids, int T) {
        nonNegative("embedding", T);
        int vocab = table.rows(), d = table.cols();
        DeviceBuffer o = f32(out, (long) T * d, "embedding", "out (T, d)"), idb = i32(ids, T, "embedding", "ids (T)");
        if (T == 0 || d == 0) return;
        run(host -> {
            DeviceBuffer td = weights.get(table, CudaWeights.Form.NATIVE, host);
            kernels.embedding(o, td, table.dtype() == DType.BF16 ? 2 : 4, idb, T, vocab, d,
                    fault(F_EMBEDDING, "embedding: a token id outside the vocabulary [0, " + vocab + ") of '" + table.name() + "' (index = position)"));
        });
    }

    /** dTable[ids[t], :] += dOut[t, :] in order t: the ordered row scatter-add */
    @Override public void embeddingBackward(DeviceTensor dTable, DeviceTensor dOut, DeviceTensor ids, int T, int d) {
        nonNegative("embeddingBackward", T);
        if (d < 1) throw new IllegalArgumentException("embeddingBackward: d = " + d + ", expected ≥ 1");
        DeviceBuffer table = f32(dTable, 0, "embeddingBackward", "dTable (vocab, d)");
        DeviceBuffer dy = f32(dOut, (long) T * d, "embeddingBackward", "dOut (T, d)"), idb = i32(ids, T, "embeddingBackward", "ids (T)");
        int vocab = Math.toIntExact(size(dTable) / d);
        if (T == 0) return;
        run(host -> kernels.scatterAddRows(table, dy, idb, T, d, vocab,
                fault(F_EMBEDDING_BACKWARD, "embeddingBackward: a token id outside dTable's " + vocab + " rows (index = position)")));
    }

    @Override public void add(DeviceTensor x, DeviceTensor y, int n) { addScaled(x, y, 1f, n); }

    /** one thread per row, the CPU's softmax loop (rows of a routing width; a wide row runs serially) */
    @Override public void softmax(DeviceTensor x, int rows, int n) {
        nonNegative("softmax", rows, n);
        DeviceBuffer xb = f32(x, (long) rows * n, "softmax", "x (rows, n)");
        if (rows == 0 || n == 0) return;
        run(host -> kernels.softmaxRows(xb, rows, n));
    }

    @Override public void addScaled(DeviceTensor x, DeviceTensor y, float a, int n) {
        nonNegative("addScaled", n);
        DeviceBuffer xb = f32(x, n, "addScaled", "x"), yb = f32(y, n, "addScaled", "y");
        if (n == 0) return;
        run(host -> kernels.addScaled(xb, yb, a, n));
    }

    @Override public void addBias(DeviceTensor y, int rows, Tensor bias) {
        nonNegative("addBias", rows);
        int width = Math.toIntExact(bias.numel());
        DeviceBuffer yb = f32(y, (long) rows * width, "addBias", "y (rows, width)");
        if (rows == 0 || width == 0) return;
        run(host -> kernels.addBias(yb, weights.get(bias, CudaWeights.Form.F32, host), rows, width));
    }

    @Override public void scale(DeviceTensor x, float a, int n) {
        nonNegative("scale", n);
        DeviceBuffer xb = f32(x, n, "scale", "x");
        if (n == 0) return;
        run(host -> kernels.scale(xb, a, n));
    }

    @Override public void multiply(DeviceTensor x, DeviceTensor y, int n) {
        nonNegative("multiply", n);
        DeviceBuffer xb = f32(x, n, "multiply", "x"), yb = f32(y, n, "multiply", "y");
        if (n == 0) return;
        run(host -> kernels.multiply(xb, yb, n));
    }

    @Override public void biasBackward(DeviceTensor db, DeviceTensor dy, int rows, int width) {
        nonNegative("biasBackward", rows, width);
        DeviceBuffer g = f32(db, width, "biasBackward", "db (width)"), d = f32(dy, (long) rows * width, "biasBackward", "dy (rows, width)");
        if (rows == 0 || width == 0) return;
        run(host -> kernels.biasBackward(g, d, rows, width));
    }

    @Override public void dropout(DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, int n, long seed, long firstDraw, double p) {
        nonNegative("dropout", n);
        DeviceBuffer mb = f32(mask, n, "dropout", "mask"), ob = f32(xDropped, n, "dropout", "xDropped"), xb = f32(x, n, "dropout", "x");
        float keep = (float) (1 / (1 - p));
        if (n == 0) return;
        run(host -> kernels.dropout(mb, ob, xb, n, seed, firstDraw, p, keep));
    }

    // ---------------------------------------------------------------- edges: scalar results

    /** the loss comes back to the host (one counted transfer); the mean is formed on the device */
    @Override public double crossEntropy(DeviceTensor dLogits, DeviceTensor logits, DeviceTensor targets, int rows, int vocab, float gradScale) {
        nonNegative("crossEntropy", rows);
        if (vocab < 1) throw new IllegalArgumentException("crossEntropy: vocabulary of " + vocab + ", expected ≥ 1");
        long count = (long) rows * vocab;
        DeviceBuffer lb = f32(logits, count, "crossEntropy", "logits (rows, vocab)"), tb = i32(targets, rows, "crossEntropy", "targets (rows)");
        DeviceBuffer gb = dLogits == null ? DeviceBuffer.NULL : f32(dLogits, count, "crossEntropy", "dLogits (rows, vocab)");
        return onDevice(host -> {
            if (rows == 0) {
                transfers.countToHost(8);
                return Double.NaN;
            }
            DeviceBuffer result = state.slice(RESULT_OFFSET, 24);
            kernels.crossEntropyMean(result, gb, lb, tb, rows, vocab, gradScale);
            MemorySegment r = host.allocate(24, 8);
            device.download(r, result);
            transfers.countToHost(8);
            checkFaults(host);
            double sum = r.getAtIndex(ValueLayout.JAVA_DOUBLE, 0), counted = r.getAtIndex(ValueLayout.JAVA_DOUBLE, 1);
            int bad = (int) r.getAtIndex(ValueLayout.JAVA_DOUBLE, 2);
            if (bad >= 0) {                              // the CPU's message: read the offending target (an error path)
                MemorySegment t = host.allocate(4, 4);
                device.download(t, tb.slice(4L * bad, 4));
                throw new IllegalArgumentException("target " + t.get(ValueLayout.JAVA_INT, 0) + " of row " + bad + " is outside the vocabulary [0, "
                        + vocab + ") and not " + IGNORE_INDEX);
            }
            return counted == 0 ? Double.NaN : sum / counted;
        });
    }

    /** sum[0] += Σ x² on the device (no transfer): per-block partial sums in double in a fixed tree (not index order) */
    @Override public void sumOfSquares(DeviceTensor sum, DeviceTensor x, int n) {
        nonNegative("sumOfSquares", n);
        DeviceBuffer sb = f64(sum, 1, "sumOfSquares", "sum (1)"), xb = f32(x, n, "sumOfSquares", "x");
        if (n == 0) return;
        run(host -> kernels.sumOfSquares(sb.slice(0, 8), xb, n));
    }

    @Override public long firstNonFinite(DeviceTensor x, long n) {
        nonNegative("firstNonFinite", n);
        DeviceBuffer xb = f32(x, n, "firstNonFinite", "x");
        return onDevice(host -> {
            DeviceBuffer result = state.slice(RESULT_OFFSET, 8);
            kernels.firstNonFinite(result, xb, n);
            MemorySegment r = host.allocate(8, 8);
            device.download(r, result);
            transfers.countToHost(8);
            checkFaults(host);
            return r.get(ValueLayout.JAVA_LONG, 0);
        });
    }

    // ================================================================ Mixture of Experts

    private static void checkExperts(String op, int numExperts) {
        if (numExperts < 1 || numExperts > MAX_EXPERTS)
            throw new IllegalArgumentException(op + ": " + numExperts + " experts, expected 1 ≤ E ≤ " + MAX_EXPERTS + " (the CUDA kernels' limit)");
    }

    @Override public void routeTopK(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts, int k) {
        nonNegative("routeTopK", n);
        checkExperts("routeTopK", numExperts);
        if (k < 1 || k > numExperts) throw new IllegalArgumentException("routeTopK: k = " + k + ", expected 1 ≤ k ≤ numExperts = " + numExperts);
        DeviceBuffer ids = i32(expertIds, (long) n * k, "routeTopK", "expertIds (N, k)");
        DeviceBuffer w = f32(expertWeights, (long) n * k, "routeTopK", "expertWeights (N, k)");
        DeviceBuffer z = f32(routerLogits, (long) n * numExperts, "routeTopK", "routerLogits (N, E)");
        if (n == 0) return;
        run(host -> kernels.routeTopK(ids, w, z, n, numExperts, k));
    }

    /** the counting sort on the device (dive_sort_by_expert); an id outside [0, E) is raised at the next edge */
    @Override public void sortByExpert(DeviceTensor offsets, DeviceTensor rowToken, DeviceTensor slotRow, DeviceTensor expertIds,
                                       int n, int k, int numExperts) {
        nonNegative("sortByExpert", n);
        checkExperts("sortByExpert", numExperts);
        if (k < 1) throw new IllegalArgumentException("sortByExpert: k = " + k + ", expected ≥ 1");
        long assigned = (long) n * k;
        if (assigned > Integer.MAX_VALUE) throw new IllegalArgumentException("sortByExpert: N·k = " + assigned + " assignments, expected < 2³¹");
        DeviceBuffer off = i32(offsets, numExperts + 1, "sortByExpert", "offsets (E + 1)");
        DeviceBuffer rt = i32(rowToken, assigned, "sortByExpert", "rowToken (N·k)"), sr = i32(slotRow, assigned, "sortByExpert", "slotRow (N, k)");
        DeviceBuffer ids = i32(expertIds, assigned, "sortByExpert", "expertIds (N, k)");
        run(host -> {
            DeviceBuffer call = state.slice(4L * F_SORT_CALL, 4);
            kernels.sortByExpert(off, rt, sr, call, ids, n, k, numExperts);
            kernels.foldFirstIndex(fault(F_SORT, "sortByExpert: an expert id outside [0, " + numExperts + ") (index = token·k + slot)"), call);
        });
    }

    @Override public void gather(DeviceTensor out, DeviceTensor x, DeviceTensor rows, int count, int width) {
        nonNegative("gather", count, width);
        DeviceBuffer o = f32(out, (long) count * width, "gather", "out (count, width)"), xb = f32(x, 0, "gather", "x (·, width)");
        DeviceBuffer rb = i32(rows, count, "gather", "rows (count)");
        if (count == 0 || width == 0) return;
        int xRows = Math.toIntExact(Math.min(Integer.MAX_VALUE, size(x) / width));
        run(host -> kernels.gatherConvertRows(o, false, xb, xRows, rb, DeviceBuffer.NULL, count, width,
                fault(F_GATHER, "gather: a row outside x's " + xRows + " rows (index = output row)")));
    }

    /** out[r, c] = x[r, cols[c]]: dive_gather_columns (cols must be inside [0, width): not checked on the device) */
    @Override public void gatherColumns(DeviceTensor out, DeviceTensor x, DeviceTensor cols, int rows, int width, int count) {
        nonNegative("gatherColumns", rows, width, count);
        DeviceBuffer o = f32(out, (long) rows * count, "gatherColumns", "out (rows, count)");
        DeviceBuffer xb = f32(x, (long) rows * width, "gatherColumns", "x (rows, width)"), cb = i32(cols, count, "gatherColumns", "cols (count)");
        if (rows == 0 || count == 0) return;
        if (width == 0) throw new IllegalArgumentException("gatherColumns: " + count + " columns of rows of width 0");
        run(host -> kernels.gatherColumns(o, xb, cb, rows, width, count, 4));
    }

    /** what the expert ops need of a weight list: E, one shape (N, K), and whether every expert is BF16 */
    private record ExpertShape(int experts, int n, int k, boolean bf16) {}

    private static ExpertShape expertShape(String op, Tensor[] w) {
        if (w == null || w.length == 0) throw new IllegalArgumentException(op + ": no expert weights");
        checkExperts(op, w.length);
        int n = w[0].rows(), k = w[0].cols();
        boolean bf16 = true;
        for (Tensor t : w) {
            if (t == null) throw new IllegalArgumentException(op + ": a null expert weight");
            if (!t.dtype().isFloatWeight())
                throw new IllegalArgumentException(op + ": weight '" + t.name() + "' is " + t.dtype() + ", expected F32, BF16 or F16");
            if (t.rows() != n || t.cols() != k)
                throw new IllegalArgumentException(op + ": weight '" + t.name() + "' has shape " + Arrays.toString(t.shape()) + ", expected ["
                        + n + ", " + k + "] like '" + w[0].name() + "'");
            bf16 &= t.dtype() == DType.BF16;
        }
        return new ExpertShape(w.length, n, k, bf16);
    }

    private static void checkBiases(String op, Tensor[] bias, int experts, int n) {
        if (bias == null) return;
        if (bias.length != experts) throw new IllegalArgumentException(op + ": " + bias.length + " biases for " + experts + " experts");
        for (Tensor b : bias)
            if (b != null && b.numel() != n)
                throw new IllegalArgumentException(op + ": bias '" + b.name() + "' has shape " + Arrays.toString(b.shape()) + ", expected [" + n + "]");
    }

    /** the experts' device weights (BF16 as stored when {@code bf16}, else F32) */
    private DeviceBuffer[] expertWeights(Tensor[] w, boolean bf16, Arena host) {
        DeviceBuffer[] out = new DeviceBuffer[w.length];
        for (int e = 0; e < w.length; e++) out[e] = weights.get(w[e], bf16 ? CudaWeights.Form.NATIVE : CudaWeights.Form.F32, host);
        return out;
    }

    /** the biases' device copies (F32), null entries kept; null for no biases */
    private DeviceBuffer[] expertBiases(Tensor[] bias, Arena host) {
        if (bias == null || Arrays.stream(bias).allMatch(b -> b == null)) return null;
        DeviceBuffer[] out = new DeviceBuffer[bias.length];
        for (int e = 0; e < bias.length; e++) out[e] = bias[e] == null ? null : weights.get(bias[e], CudaWeights.Form.F32, host);
        return out;
    }

    /** rows a (·, width) tensor holds (a bound on the permuted rows R, which only the device knows) */
    private static int rowsOf(DeviceTensor t, int width) {
        return width == 0 ? Integer.MAX_VALUE : (int) Math.min(Integer.MAX_VALUE, size(t) / width);
    }

    /** offsets[E] as a device pointer: the permuted row count the kernels read */
    private static DeviceBuffer rowCount(DeviceBuffer offsets, int experts) { return offsets.slice(4L * experts, 4); }

    /**
     * out (R, N) = x (R, K) · w[e]ᵀ (+ bias[e]) per expert row range, in one launch: BF16 experts on tensor cores with the
     * rows in use (R = offsets[E], read on the device) rounded to BF16 first; otherwise F32 in the CPU's order.
     */
    private void expertForward(String op, DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w, Tensor[] bias) {
        ExpertShape s = expertShape(op, w);
        checkBiases(op, bias, s.experts(), s.n());
        DeviceBuffer off = i32(offsets, s.experts() + 1, op, "offsets (E + 1)");
        DeviceBuffer ob = f32(out, 0, op, "out (R, N)"), xb = f32(x, 0, op, "x (R, K)");
        int rows = Math.min(rowsOf(out, s.n()), rowsOf(x, s.k()));
        if (rows == 0 || rows == Integer.MAX_VALUE || s.n() == 0) return;
        run(host -> {
            DeviceBuffer[] wd = expertWeights(w, s.bf16(), host);
            DeviceBuffer[] bd = expertBiases(bias, host);
            DeviceBuffer in = xb;
            if (s.bf16()) {
                in = device.workspace(2L * rows * s.k())[0];
                kernels.gatherConvertRows(in, true, xb, rows, DeviceBuffer.NULL, rowCount(off, s.experts()), rows, s.k(), DeviceBuffer.NULL);
            }
            kernels.groupedGemm(s.bf16(), ob, in, off, wd, bd, rows, s.n(), s.k(), false);
        });
    }

    @Override public void groupedMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w, Tensor[] bias) {
        expertForward("groupedMatmul", out, x, offsets, w, bias);
    }

    @Override public void expertMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w) {
        expertForward("expertMatmul", out, x, offsets, w, null);
    }

    /** the permuted rows of x gathered once (as BF16 when both weight sets are BF16), then the two grouped matmuls */
    @Override public void groupedMatmul2(DeviceTensor outGate, DeviceTensor outUp, DeviceTensor x, DeviceTensor xRows, DeviceTensor offsets,
                                         Tensor[] wGate, Tensor[] wUp) {
        String op = "groupedMatmul2";
        ExpertShape g = expertShape(op, wGate), u = expertShape(op, wUp);
        if (u.experts() != g.experts() || u.n() != g.n() || u.k() != g.k())
            throw new IllegalArgumentException(op + ": up weight '" + wUp[0].name() + "' has shape " + Arrays.toString(wUp[0].shape()) + " ("
                    + wUp.length + " experts), expected " + Arrays.toString(wGate[0].shape()) + " like gate weight '" + wGate[0].name() + "' ("
                    + wGate.length + " experts)");
        int experts = g.experts(), n = g.n(), k = g.k();
        boolean bf16 = g.bf16() && u.bf16();
        DeviceBuffer off = i32(offsets, experts + 1, op, "offsets (E + 1)");
        DeviceBuffer og = f32(outGate, 0, op, "outGate (R, N)"), ou = f32(outUp, 0, op, "outUp (R, N)");
        DeviceBuffer xb = f32(x, 0, op, "x (·, K)"), rb = i32(xRows, 0, op, "xRows (R)");
        int rows = (int) Math.min(Math.min(rowsOf(outGate, n), rowsOf(outUp, n)), size(xRows));
        if (rows == 0 || n == 0) return;
        int xRowCount = rowsOf(x, k);
        run(host -> {
            DeviceBuffer[] wg = expertWeights(wGate, bf16, host), wu = expertWeights(wUp, bf16, host);
            DeviceBuffer xs = device.workspace((bf16 ? 2L : 4L) * rows * Math.max(k, 1))[0];
            kernels.gatherConvertRows(xs, bf16, xb, xRowCount, rb, rowCount(off, experts), rows, k,
                    fault(F_GATHER, op + ": a row of xRows outside x's " + xRowCount + " rows (index = permuted row)"));
            kernels.groupedGemm(bf16, og, xs, off, wg, null, rows, n, k, false);
            kernels.groupedGemm(bf16, ou, xs, off, wu, null, rows, n, k, false);
        });
    }

    @Override public void expertMatmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, DeviceTensor offsets, Tensor[] w) {
        String op = "expertMatmulBackwardInput";
        ExpertShape s = expertShape(op, w);
        DeviceBuffer off = i32(offsets, s.experts() + 1, op, "offsets (E + 1)");
        DeviceBuffer gx = f32(dx, 0, op, "dx (R, K)"), dy = f32(dOut, 0, op, "dOut (R, N)");
        int rows = Math.min(rowsOf(dx, s.k()), rowsOf(dOut, s.n()));
        if (rows == 0 || rows == Integer.MAX_VALUE || s.k() == 0) return;
        run(host -> {
            DeviceBuffer[] wd = expertWeights(w, s.bf16(), host);
            DeviceBuffer in = dy;
            if (s.bf16()) {
                in = device.workspace(2L * rows * Math.max(s.n(), 1))[0];
                kernels.gatherConvertRows(in, true, dy, rows, DeviceBuffer.NULL, rowCount(off, s.experts()), rows, s.n(), DeviceBuffer.NULL);
            }
            kernels.groupedGemm(s.bf16(), gx, in, off, wd, null, rows, s.n(), s.k(), true);
        });
    }

    @Override public void expertMatmulBackwardWeight(DeviceTensor[] dw, DeviceTensor dOut, DeviceTensor x, DeviceTensor offsets, int n, int k) {
        String op = "expertMatmulBackwardWeight";
        nonNegative(op, n, k);
        if (dw == null || dw.length == 0) throw new IllegalArgumentException(op + ": no expert gradients");
        checkExperts(op, dw.length);
        DeviceBuffer[] g = new DeviceBuffer[dw.length];
        for (int e = 0; e < dw.length; e++) g[e] = dw[e] == null ? null : f32(dw[e], (long) n * k, op, "dw[" + e + "] (N, K)");
        DeviceBuffer off = i32(offsets, dw.length + 1, op, "offsets (E + 1)");
        DeviceBuffer dy = f32(dOut, 0, op, "dOut (R, N)"), xb = f32(x, 0, op, "x (R, K)");
        int rows = Math.min(rowsOf(dOut, n), rowsOf(x, k));
        if (n == 0 || k == 0 || rows == 0 || Arrays.stream(g).allMatch(b -> b == null)) return;
        run(host -> kernels.groupedWeightGradF32(g, dy, xb, off, rows, n, k));
    }

    /** rows the permuted-row tensors of an expert op hold (a bound on offsets[E]) */
    private static int rowsOfAll(int width, DeviceTensor... ts) {
        int rows = Integer.MAX_VALUE;
        for (DeviceTensor t : ts) rows = Math.min(rows, rowsOf(t, width));
        return rows;
    }

    @Override public void expertDropout(DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, DeviceTensor offsets, int numExperts,
                                        int width, long seed, long firstDraw, int stride, int prefix, double p) {
        String op = "expertDropout";
        nonNegative(op, width, stride, prefix);
        if (numExperts < 1) throw new IllegalArgumentException(op + ": " + numExperts + " experts, expected ≥ 1");
        DeviceBuffer mb = f32(mask, 0, op, "mask (R, width)"), ob = f32(xDropped, 0, op, "xDropped (R, width)"), xb = f32(x, 0, op, "x (R, width)");
        DeviceBuffer off = i32(offsets, numExperts + 1, op, "offsets (E + 1)");
        int rows = rowsOfAll(width, mask, xDropped, x);
        float keep = (float) (1 / (1 - p));
        if (width == 0 || rows == 0) return;
        run(host -> kernels.expertDropout(mb, ob, xb, off, numExperts, rows, width, seed, firstDraw, stride, prefix, p, keep));
    }

    /** swiglu over the rows in use (offsets[E], read on the device): element-wise, the values of one call per expert */
    @Override public void expertSwiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, DeviceTensor offsets, int numExperts, int width) {
        String op = "expertSwiglu";
        nonNegative(op, width);
        if (numExperts < 1) throw new IllegalArgumentException(op + ": " + numExperts + " experts, expected ≥ 1");
        DeviceBuffer o = f32(out, 0, op, "out (R, width)"), g = f32(gate, 0, op, "gate (R, width)"), u = f32(up, 0, op, "up (R, width)");
        DeviceBuffer off = i32(offsets, numExperts + 1, op, "offsets (E + 1)");
        int rows = rowsOfAll(width, out, gate, up);
        if (width == 0 || rows == 0) return;
        run(host -> kernels.swigluRows(o, g, u, rowCount(off, numExperts), rows, width));
    }

    @Override public void expertSwigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up,
                                               DeviceTensor offsets, int numExperts, int width) {
        String op = "expertSwigluBackward";
        nonNegative(op, width);
        if (numExperts < 1) throw new IllegalArgumentException(op + ": " + numExperts + " experts, expected ≥ 1");
        DeviceBuffer gg = f32(dGate, 0, op, "dGate (R, width)"), gu = f32(dUp, 0, op, "dUp (R, width)"), dy = f32(dOut, 0, op, "dOut (R, width)");
        DeviceBuffer g = f32(gate, 0, op, "gate (R, width)"), u = f32(up, 0, op, "up (R, width)");
        DeviceBuffer off = i32(offsets, numExperts + 1, op, "offsets (E + 1)");
        int rows = rowsOfAll(width, dGate, dUp, dOut, gate, up);
        if (width == 0 || rows == 0) return;
        run(host -> kernels.swigluBackwardRows(gg, gu, dy, g, u, rowCount(off, numExperts), rows, width));
    }

    @Override public void expertAddBias(DeviceTensor out, DeviceTensor offsets, Tensor[] bias, int d) {
        String op = "expertAddBias";
        nonNegative(op, d);
        if (bias == null || bias.length == 0) throw new IllegalArgumentException(op + ": no expert biases");
        checkExperts(op, bias.length);
        checkBiases(op, bias, bias.length, d);
        DeviceBuffer ob = f32(out, 0, op, "out (R, d)"), off = i32(offsets, bias.length + 1, op, "offsets (E + 1)");
        int rows = rowsOf(out, d);
        if (d == 0 || rows == 0 || Arrays.stream(bias).allMatch(b -> b == null)) return;
        run(host -> kernels.expertAddBias(ob, off, expertBiases(bias, host), rows, d));
    }

    @Override public void expertBiasBackward(DeviceTensor[] db, DeviceTensor dy, DeviceTensor offsets, int d) {
        String op = "expertBiasBackward";
        nonNegative(op, d);
        if (db == null || db.length == 0) throw new IllegalArgumentException(op + ": no expert bias gradients");
        checkExperts(op, db.length);
        DeviceBuffer[] g = new DeviceBuffer[db.length];
        for (int e = 0; e < db.length; e++) g[e] = db[e] == null ? null : f32(db[e], d, op, "db[" + e + "] (d)");
        DeviceBuffer gy = f32(dy, 0, op, "dy (R, d)"), off = i32(offsets, db.length + 1, op, "offsets (E + 1)");
        int rows = rowsOf(dy, d);
        if (d == 0 || rows == 0 || Arrays.stream(g).allMatch(b -> b == null)) return;
        run(host -> kernels.expertBiasBackward(g, gy, off, rows, d));
    }

    @Override public void combineExperts(DeviceTensor y, DeviceTensor expertOut, DeviceTensor slotRow, DeviceTensor expertWeights,
                                         int n, int k, int d) {
        String op = "combineExperts";
        nonNegative(op, n, d);
        if (k < 1) throw new IllegalArgumentException(op + ": k = " + k + ", expected ≥ 1");
        long assigned = (long) n * k;
        DeviceBuffer yb = f32(y, (long) n * d, op, "y (N, d)"), eo = f32(expertOut, assigned * d, op, "expertOut (N·k, d)");
        DeviceBuffer sr = i32(slotRow, assigned, op, "slotRow (N, k)"), w = f32(expertWeights, assigned, op, "expertWeights (N, k)");
        if (n == 0 || d == 0) return;
        run(host -> kernels.combineExperts(yb, eo, sr, w, n, k, d));
    }

    @Override public void combineExpertsBackward(DeviceTensor dExpertOut, DeviceTensor dWeights, DeviceTensor dy, DeviceTensor expertOut,
                                                 DeviceTensor slotRow, DeviceTensor expertWeights, int n, int k, int d) {
        String op = "combineExpertsBackward";
        nonNegative(op, n, d);
        if (k < 1) throw new IllegalArgumentException(op + ": k = " + k + ", expected ≥ 1");
        long assigned = (long) n * k;
        DeviceBuffer geo = f32(dExpertOut, assigned * d, op, "dExpertOut (N·k, d)"), gw = f32(dWeights, assigned, op, "dWeights (N, k)");
        DeviceBuffer gy = f32(dy, (long) n * d, op, "dy (N, d)"), eo = f32(expertOut, assigned * d, op, "expertOut (N·k, d)");
        DeviceBuffer sr = i32(slotRow, assigned, op, "slotRow (N, k)"), w = f32(expertWeights, assigned, op, "expertWeights (N, k)");
        if (assigned == 0) return;
        run(host -> kernels.combineExpertsBackward(geo, gw, gy, eo, sr, w, n, k, d));
    }

    /** x[rows[r], :] += src[r, :] in order r = 0, 1, …: one thread per column walks the sources (deterministic) */
    @Override public void scatterAddRows(DeviceTensor x, DeviceTensor src, DeviceTensor rows, int count, int width) {
        String op = "scatterAddRows";
        nonNegative(op, count, width);
        DeviceBuffer xb = f32(x, 0, op, "x (·, width)"), sb = f32(src, (long) count * width, op, "src (count, width)");
        DeviceBuffer rb = i32(rows, count, op, "rows (count)");
        if (count == 0 || width == 0) return;
        int xRows = rowsOf(x, width);
        run(host -> kernels.scatterAddRows(xb, sb, rb, count, width, xRows,
                fault(F_SCATTER, op + ": a row outside x's " + xRows + " rows (index = source row)")));
    }

    @Override public void softRouting(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts,
                                      float invTemperature) {
        String op = "softRouting";
        nonNegative(op, n);
        if (numExperts < 1) throw new IllegalArgumentException(op + ": " + numExperts + " experts, expected ≥ 1");
        long count = (long) n * numExperts;
        DeviceBuffer ids = i32(expertIds, count, op, "expertIds (N, E)"), w = f32(expertWeights, count, op, "expertWeights (N, E)");
        DeviceBuffer z = f32(routerLogits, count, op, "routerLogits (N, E)");
        if (n == 0) return;
        run(host -> kernels.softRouting(ids, w, z, n, numExperts, invTemperature));
    }

    @Override public void countExperts(DeviceTensor counts, long countsOff, DeviceTensor expertIds, int assignments) {
        String op = "countExperts";
        nonNegative(op, assignments, countsOff);
        CudaTensor c = cuda(counts, DType.I32, op + " counts");
        if (countsOff > c.size()) throw new IllegalArgumentException(op + ": offset " + countsOff + " past the " + c.size() + " counts");
        int countsSize = (int) Math.min(Integer.MAX_VALUE, c.size() - countsOff);
        DeviceBuffer cb = c.slice(countsOff, countsSize, op + " counts"), ids = i32(expertIds, assignments, op, "expertIds");
        if (assignments == 0) return;
        run(host -> kernels.countExperts(cb, countsSize, ids, assignments,
                fault(F_COUNT, op + ": an expert id outside the " + countsSize + " counts past offset " + countsOff + " (index = assignment)")));
    }

    @Override public void routingBackward(DeviceTensor dLogits, DeviceTensor weights, DeviceTensor dWeights, DeviceTensor expertIds,
                                          int n, int slots, int numExperts, double invTemperature) {
        String op = "routingBackward";
        nonNegative(op, n);
        if (slots < 1 || numExperts < 1) throw new IllegalArgumentException(op + ": " + slots + " slots over " + numExperts + " experts");
        long assigned = (long) n * slots;
        DeviceBuffer dz = f32(dLogits, (long) n * numExperts, op, "dLogits (N, E)"), w = f32(weights, assigned, op, "weights (N, slots)");
        DeviceBuffer dw = f32(dWeights, assigned, op, "dWeights (N, slots)"), ids = i32(expertIds, assigned, op, "expertIds (N, slots)");
        if (n == 0) return;
        run(host -> kernels.routingBackward(dz, w, dw, ids, n, slots, numExperts, invTemperature,
                fault(F_ROUTING, op + ": an expert id outside [0, " + numExperts + ") (index = token·slots + slot)")));
    }

    // ================================================================ optimiser, statistics

    /** the update runs on the weight's device copy (uploaded on first use); {@link #readBack} brings the host memory up to date */
    @Override public void adamW(Tensor param, DeviceTensor grad, DeviceTensor m, DeviceTensor v, int n, AdamWStep step) {
        if (param.dtype() != DType.F32 || param.data().isReadOnly())
            throw new IllegalArgumentException("adamW: parameter '" + param.name() + "' is " + param.dtype()
                    + (param.data().isReadOnly() ? " in read-only memory" : "") + " (expected writable F32)");
        nonNegative("adamW", n);
        if (param.numel() < n) throw new IllegalArgumentException("adamW: " + n + " elements, but param has " + param.numel());
        DeviceBuffer g = f32(grad, n, "adamW", "grad"), mb = f32(m, n, "adamW", "m"), vb = f32(v, n, "adamW", "v");
        if (n == 0) return;
        run(host -> kernels.adamWStep(weights.master(param, host), g, mb, vb, n, step.decay(), step.decayFactor(), step.stepSize(),
                step.sqrtBiasCorrection2(), step.oneMinusBeta1(), step.beta2(), step.oneMinusBeta2(), step.eps()));
    }

    @Override public void channelStatistics(DeviceTensor mean, DeviceTensor m2, DeviceTensor sumSquares, long countBefore, DeviceTensor h,
                                            int rows, int width) {
        String op = "channelStatistics";
        nonNegative(op, countBefore, width);
        DeviceBuffer mb = f64(mean, width, op, "mean (width)"), m2b = f64(m2, width, op, "m2 (width)");
        DeviceBuffer sb = f64(sumSquares, width, op, "sumSquares (width)");
        if (rows <= 0) return;
        DeviceBuffer hb = f32(h, (long) rows * width, op, "h (rows, width)");
        if (width == 0) return;
        run(host -> kernels.channelStatsUpdate(mb, m2b, sb, countBefore, hb, rows, width));
    }

    // ================================================================ closing

    /** frees the cached weights and the backend's state and closes the device (stream, cuBLAS handle, workspace) */
    @Override public void close() {
        device.lock().lock();
        try {
            if (closed) return;
            closed = true;
            device.sync();
            weights.close();
            stateArena.close();
        } finally {
            device.lock().unlock();
        }
        device.close();
    }
}
