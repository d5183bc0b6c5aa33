package dive.backend;

import dive.backend.CudaWeights.Form;
import dive.cuda.CudaDevice;
import dive.cuda.CudaKernels;
import dive.cuda.DeviceBuffer;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Logger;

import static dive.bindings.cublas_h.*;

/**
 * The Backend on an NVIDIA GPU: the kernels of {@code native/} (dive.h) through FFM, and cuBLAS GemmEx for the dense
 * matmuls.
 *
 * <p><b>Per-op transfers.</b> The Backend API takes host {@code float[]} activations, so every call copies its inputs
 * to the device, runs there, and copies its outputs back (through off-heap staging memory; the copy back waits for
 * the stream). This is correct and lets every model, training and DIVE path run on the GPU unchanged, but the
 * transfers dominate for small ops: it is a parity and correctness path, not the fast one. The device-resident MoE
 * layer of the benchmarks keeps activations on the device.
 *
 * <p><b>Weights</b> over read-only memory (memory-mapped checkpoints) are uploaded once and cached per tensor on the
 * device ({@link CudaWeights}; weak keys: the device copy is freed when the Tensor is collected or the backend is
 * closed), like {@code PackedWeights} on the CPU. Writable tensors (weights being trained) are uploaded on every call,
 * so a cached copy is never stale. F32 stays F32; BF16 stays BF16 where a kernel reads BF16 (matmul, groupedMatmul,
 * embedding) and is widened to F32 where one reads F32 (norm weights, biases); F16 is widened to F32 on upload (dive.h
 * has no F16 kernels).
 *
 * <p><b>Arithmetic.</b> F32 weights: cuBLAS with CUBLAS_COMPUTE_32F and pedantic math (no TF32), so results match the
 * CPU to ~1e-5 relative. BF16 weights: tensor cores on BF16 operands with F32 accumulation; the activation is rounded
 * to BF16 on the device, so results differ from the CPU (which keeps F32 activations) by ~1e-2 relative.
 *
 * <p><b>Threads.</b> Safe to call from many threads: device work is serialised per backend instance (one stream,
 * one cuBLAS handle, one lock); concurrent callers wait for each other.
 *
 * <p><b>CPU fallbacks</b> (a one-line log note the first time each happens): {@code softmax} (no kernel in dive.h;
 * a row-sized op), {@code routeTopK} with more than 256 experts (the kernel's limit), {@code attention} with a head
 * dimension above 256 (the kernel's limit), and {@code scatterAddRows} when its destination rows are so unevenly
 * hit that the padded device layout would be more than 4× the data.
 */
public final class CudaBackend extends CpuBackend implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(CudaBackend.class.getName());
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT;
    private static final ValueLayout.OfInt I = ValueLayout.JAVA_INT;
    /** dive_route_topk's limit on experts */
    static final int MAX_ROUTE_EXPERTS = 256;
    /** dive_attention's limit on the head dimension */
    static final int MAX_HEAD_DIM = 256;

    private final CudaDevice device;
    private final CudaKernels kernels;
    private final CpuBackend cpu;
    private final CudaWeights weights;
    private final Set<String> fallbacksNoted = ConcurrentHashMap.newKeySet();
    private boolean closed;

    /** opens device 0 (a new stream and cuBLAS handle); {@code cpu} runs the ops listed as CPU fallbacks */
    public CudaBackend(CpuBackend cpu) {
        this(CudaDevice.open(), cpu);
    }

    /** on an open device, which this backend then owns (closes) */
    public CudaBackend(CudaDevice device, CpuBackend cpu) {
        this.device = device;
        this.kernels = device.kernels();
        this.cpu = cpu;
        this.weights = new CudaWeights(device);
    }

    @Override public String name() { return "cuda"; }

    /** the device this backend runs on */
    public CudaDevice device() { return device; }

    // ================================================================ weights on the device

    /** bytes of device memory held by cached weights */
    public long cachedWeightBytes() {
        device.lock().lock();
        try {
            return weights.cachedBytes();
        } finally {
            device.lock().unlock();
        }
    }

    // ================================================================ transfers

    private void put(DeviceBuffer dst, float[] src, int offset, long count, Arena host) {
        if (count == 0) return;
        MemorySegment staged = host.allocate(4 * count, 16);
        MemorySegment.copy(src, offset, staged, F, 0, Math.toIntExact(count));
        device.upload(dst, staged);
    }

    private void put(DeviceBuffer dst, float[] src, long count, Arena host) { put(dst, src, 0, count, host); }

    private void put(DeviceBuffer dst, int[] src, long count, Arena host) {
        if (count == 0) return;
        MemorySegment staged = host.allocate(4 * count, 16);
        MemorySegment.copy(src, 0, staged, I, 0, Math.toIntExact(count));
        device.upload(dst, staged);
    }

    private void get(float[] dst, int offset, DeviceBuffer src, long count, Arena host) {
        if (count == 0) return;
        MemorySegment staged = host.allocate(4 * count, 16);
        device.download(staged, src);
        MemorySegment.copy(staged, F, 0, dst, offset, Math.toIntExact(count));
    }

    private void get(float[] dst, DeviceBuffer src, long count, Arena host) { get(dst, 0, src, count, host); }

    private void get(int[] dst, DeviceBuffer src, long count, Arena host) {
        if (count == 0) return;
        MemorySegment staged = host.allocate(4 * count, 16);
        device.download(staged, src);
        MemorySegment.copy(staged, I, 0, dst, 0, Math.toIntExact(count));
    }

    private int getInt(DeviceBuffer src, Arena host) {
        MemorySegment staged = host.allocate(4, 16);
        device.download(staged, src);
        return staged.get(I, 0);
    }

    private static long f32(long count) { return 4 * count; }

    /** one device operation: holds the device lock, gives off-heap staging freed afterwards */
    private interface DeviceWork { void run(Arena host); }

    private void onDevice(DeviceWork work) {
        device.lock().lock();
        try (Arena host = Arena.ofConfined()) {
            if (closed) throw new IllegalStateException("CudaBackend is closed");
            work.run(host);
        } finally {
            device.lock().unlock();
        }
    }

    private void noteFallback(String what) {
        if (fallbacksNoted.add(what)) LOG.info("cuda: " + what + " runs on the CPU (" + cpu.name() + ")");
    }

    private static void need(float[] a, long count, String op, String what) {
        if (a.length < count) throw new IllegalArgumentException(op + ": " + what + " has " + a.length + " floats, expected ≥ " + count);
    }

    private static void need(int[] a, long count, String op, String what) {
        if (a.length < count) throw new IllegalArgumentException(op + ": " + what + " has " + a.length + " ints, expected ≥ " + count);
    }

    private static int width(Tensor weight) { return Math.toIntExact(weight.numel()); }

    // ================================================================ dense ops

    /** Row-major out (M, N) = x (M, K) · wᵀ is column-major outᵀ (N, M) = (w as K×N)ᵀ · (x as K×M). */
    @Override
    public void matmul(float[] out, float[] x, int m, Tensor w) {
        withWeight("matmul", out, "out (M, N)", x, "x (M, K)", m, w, true);
    }

    /** dx (M, K) = dOut (M, N) · w (N, K): column-major dxᵀ (K, M) = (w as K×N) · (dOut as N×M) */
    @Override
    public void matmulBackwardInput(float[] dx, float[] dOut, int m, Tensor w) {
        withWeight("matmulBackwardInput", dx, "dx (M, K)", dOut, "dOut (M, N)", m, w, false);
    }

    /**
     * out (M, cols) = in (M, depth) · op(w) for w (N, K) as stored (column-major: K × N, leading dimension K):
     * {@code transposeW} true: op(w) = wᵀ (depth K, cols N, the forward); false: op(w) = w (depth N, cols K, the input
     * gradient). BF16 weights multiply a BF16 copy of {@code in}; F32 weights run in F32.
     */
    private void withWeight(String op, float[] out, String outName, float[] in, String inName, int m, Tensor w, boolean transposeW) {
        int n = w.rows(), k = w.cols(), depth = transposeW ? k : n, cols = transposeW ? n : k;
        need(in, (long) m * depth, op, inName);
        need(out, (long) m * cols, op, outName);
        if (m == 0 || cols == 0) return;
        boolean bf16 = w.dtype() == DType.BF16;
        int type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
        onDevice(host -> {
            DeviceBuffer wd = weights.get(Form.NATIVE, host, w)[0];
            DeviceBuffer[] b = device.workspace(f32((long) m * depth), f32((long) m * cols), bf16 ? 2L * m * depth : 0);
            put(b[0], in, (long) m * depth, host);
            if (depth == 0) device.memset(b[1], 0);
            else {
                if (bf16) kernels.f32ToBf16(b[2], b[0], (long) m * depth);
                device.gemm(transposeW ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, cols, m, depth, wd, type, k,
                        bf16 ? b[2] : b[0], type, depth, 0f, b[1], cols, !bf16);
            }
            get(out, b[1], (long) m * cols, host);
        });
    }

    /** dw (N, K) += dOutᵀ · x: column-major dwᵀ (K, N) += (x as K×M) · (dOut as N×M)ᵀ, in F32 */
    @Override
    public void matmulBackwardWeight(float[] dw, float[] dOut, float[] x, int m, int n, int k) {
        need(dOut, (long) m * n, "matmulBackwardWeight", "dOut (M, N)");
        need(x, (long) m * k, "matmulBackwardWeight", "x (M, K)");
        need(dw, (long) n * k, "matmulBackwardWeight", "dw (N, K)");
        if (m == 0 || n == 0 || k == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32((long) m * n), f32((long) m * k), f32((long) n * k));
            put(b[0], dOut, (long) m * n, host);
            put(b[1], x, (long) m * k, host);
            put(b[2], dw, (long) n * k, host);
            device.gemm(CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, b[1], CUDA_R_32F, k, b[0], CUDA_R_32F, n, 1f, b[2], k, true);
            get(dw, b[2], (long) n * k, host);
        });
    }

    @Override
    public void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps) {
        int d = width(weight);
        long count = (long) rows * d;
        need(x, count, "rmsNorm", "x (rows, d)");
        need(out, count, "rmsNorm", "out (rows, d)");
        if (count == 0) return;
        onDevice(host -> {
            DeviceBuffer wd = weights.get(Form.F32, host, weight)[0];
            DeviceBuffer[] b = device.workspace(f32(count), f32(count));
            put(b[0], x, count, host);
            kernels.rmsNorm(b[1], b[0], wd, rows, d, eps);
            get(out, b[1], count, host);
        });
    }

    @Override
    public void rmsNormBackward(float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps) {
        int d = width(weight);
        long count = (long) rows * d;
        need(x, count, "rmsNormBackward", "x (rows, d)");
        need(dOut, count, "rmsNormBackward", "dOut (rows, d)");
        need(dx, count, "rmsNormBackward", "dx (rows, d)");
        if (dWeight != null) need(dWeight, d, "rmsNormBackward", "dWeight (d)");
        if (count == 0) return;
        onDevice(host -> {
            DeviceBuffer wd = weights.get(Form.F32, host, weight)[0];
            DeviceBuffer[] b = device.workspace(f32(count), f32(count), f32(count), dWeight != null ? f32(d) : 0);
            put(b[0], dOut, count, host);
            put(b[1], x, count, host);
            if (dWeight != null) put(b[3], dWeight, d, host);
            kernels.rmsNormBackward(b[2], dWeight != null ? b[3] : DeviceBuffer.NULL, b[0], b[1], wd, rows, d, eps);
            get(dx, b[2], count, host);
            if (dWeight != null) get(dWeight, b[3], d, host);
        });
    }

    @Override
    public void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        rope(x, rows, heads, headDim, positions, invFreq, false, "rope");
    }

    @Override
    public void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        rope(dx, rows, heads, headDim, positions, invFreq, true, "ropeBackward");
    }

    private void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq, boolean inverse, String op) {
        long count = (long) rows * heads * headDim;
        need(x, count, op, "x (rows, heads, headDim)");
        need(positions, rows, op, "positions (rows)");
        need(invFreq, headDim / 2, op, "invFreq (headDim/2)");
        if (count == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(count), 4L * rows, f32(headDim / 2));
            put(b[0], x, count, host);
            put(b[1], positions, rows, host);
            put(b[2], invFreq, headDim / 2, host);
            kernels.rope(b[0], rows, heads, headDim, b[1], b[2], inverse);
            get(x, b[0], count, host);
        });
    }

    @Override
    public void attention(float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos,
                          int nHeads, int nKvHeads, int headDim, float scale) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException("attention: " + nHeads + " query heads over " + nKvHeads + " KV heads, expected a multiple");
        if (headDim > MAX_HEAD_DIM) {
            noteFallback("attention with head dimension " + headDim + " > " + MAX_HEAD_DIM);
            cpu.attention(out, q, kCache, vCache, T, startPos, nHeads, nKvHeads, headDim, scale);
            return;
        }
        long qCount = (long) T * nHeads * headDim, kvCount = (long) (startPos + T) * nKvHeads * headDim;
        need(q, qCount, "attention", "q (T, nHeads, headDim)");
        need(out, qCount, "attention", "out (T, nHeads, headDim)");
        need(kCache, kvCount, "attention", "kCache (startPos + T, nKvHeads, headDim)");
        need(vCache, kvCount, "attention", "vCache (startPos + T, nKvHeads, headDim)");
        if (qCount == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(qCount), f32(kvCount), f32(kvCount), f32(qCount));
            put(b[0], q, qCount, host);
            put(b[1], kCache, kvCount, host);
            put(b[2], vCache, kvCount, host);
            kernels.attention(b[3], b[0], b[1], b[2], T, startPos, nHeads, nKvHeads, headDim, scale);
            get(out, b[3], qCount, host);
        });
    }

    @Override
    public void attentionBackward(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                  int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException("attentionBackward: " + nHeads + " query heads over " + nKvHeads + " KV heads, expected a multiple");
        long qCount = (long) B * T * nHeads * headDim, kvCount = (long) B * T * nKvHeads * headDim;
        need(q, qCount, "attentionBackward", "q (B, T, nHeads, headDim)");
        need(dOut, qCount, "attentionBackward", "dOut (B, T, nHeads, headDim)");
        need(dq, qCount, "attentionBackward", "dq (B, T, nHeads, headDim)");
        for (float[] a : new float[][] {k, v, dk, dv}) need(a, kvCount, "attentionBackward", "k, v, dk, dv (B, T, nKvHeads, headDim)");
        if (qCount == 0) return;
        if (headDim > MAX_HEAD_DIM) {
            noteFallback("attentionBackward with head dimension " + headDim + " > " + MAX_HEAD_DIM);
            cpu.attentionBackward(dq, dk, dv, dOut, q, k, v, B, T, nHeads, nKvHeads, headDim, scale);
            return;
        }
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(qCount), f32(qCount), f32(kvCount), f32(kvCount), f32(qCount), f32(kvCount), f32(kvCount));
            put(b[0], dOut, qCount, host);
            put(b[1], q, qCount, host);
            put(b[2], k, kvCount, host);
            put(b[3], v, kvCount, host);
            kernels.attentionBackward(b[4], b[5], b[6], b[0], b[1], b[2], b[3], B, T, nHeads, nKvHeads, headDim, scale);
            get(dq, b[4], qCount, host);
            get(dk, b[5], kvCount, host);
            get(dv, b[6], kvCount, host);
        });
    }

    @Override
    public void swiglu(float[] out, float[] gate, float[] up, int n) {
        need(gate, n, "swiglu", "gate");
        need(up, n, "swiglu", "up");
        need(out, n, "swiglu", "out");
        if (n == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(n), f32(n));
            put(b[0], gate, n, host);
            put(b[1], up, n, host);
            kernels.swiglu(b[0], b[0], b[1], n);
            get(out, b[0], n, host);
        });
    }

    @Override
    public void swigluBackward(float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n) {
        for (float[] a : new float[][] {dGate, dUp, dOut, gate, up}) need(a, n, "swigluBackward", "an argument");
        if (n == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(n), f32(n), f32(n), f32(n), f32(n));
            put(b[0], dOut, n, host);
            put(b[1], gate, n, host);
            put(b[2], up, n, host);
            kernels.swigluBackward(b[3], b[4], b[0], b[1], b[2], n);
            get(dGate, b[3], n, host);
            get(dUp, b[4], n, host);
        });
    }

    /** no kernel in dive.h: one row, on the CPU */
    @Override
    public void softmax(float[] x, int off, int n) {
        noteFallback("softmax");
        cpu.softmax(x, off, n);
    }

    @Override
    public void embedding(float[] out, Tensor table, int[] ids) {
        int vocab = table.rows(), d = table.cols(), tokens = ids.length;
        for (int t = 0; t < tokens; t++)
            if (ids[t] < 0 || ids[t] >= vocab)
                throw new IllegalArgumentException("token id " + ids[t] + " at position " + t + " is outside the vocabulary [0, " + vocab + ")");
        need(out, (long) tokens * d, "embedding", "out (T, d)");
        if (tokens == 0 || d == 0) return;
        onDevice(host -> {
            DeviceBuffer td = weights.get(Form.NATIVE, host, table)[0];
            DeviceBuffer[] b = device.workspace(f32((long) tokens * d), 4L * tokens, 4);
            put(b[1], ids, tokens, host);
            device.memset(b[2], 0xff); // badIndex = −1
            kernels.embedding(b[0], td, table.dtype() == DType.BF16 ? 2 : 4, b[1], tokens, vocab, d, b[2]);
            get(out, b[0], (long) tokens * d, host);
            int bad = getInt(b[2], host);
            if (bad >= 0) throw new IllegalStateException("dive_embedding reported token position " + bad + " out of range although the ids were checked");
        });
    }

    @Override
    public void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d) {
        int tokens = ids.length;
        if (d < 1) throw new IllegalArgumentException("embeddingBackward: d = " + d + ", expected ≥ 1");
        int vocab = dTable.length / d;
        for (int t = 0; t < tokens; t++)
            if (ids[t] < 0 || ids[t] >= vocab)
                throw new IllegalArgumentException("embeddingBackward: token id " + ids[t] + " at position " + t + " is outside dTable's " + vocab + " rows");
        need(dOut, (long) tokens * d, "embeddingBackward", "dOut (T, d)");
        if (tokens == 0) return;
        long tableCount = (long) vocab * d;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(tableCount), f32((long) tokens * d), 4L * tokens);
            put(b[0], dTable, tableCount, host);
            put(b[1], dOut, (long) tokens * d, host);
            put(b[2], ids, tokens, host);
            kernels.embeddingBackward(b[0], b[1], b[2], tokens, d);
            get(dTable, b[0], tableCount, host);
        });
    }

    @Override
    public void add(float[] x, float[] y, int n) { addScaled(x, y, 1f, n); }

    @Override
    public void addScaled(float[] x, float[] y, float a, int n) {
        need(x, n, "addScaled", "x");
        need(y, n, "addScaled", "y");
        if (n == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(n), f32(n));
            put(b[0], x, n, host);
            put(b[1], y, n, host);
            kernels.addScaled(b[0], b[1], a, n);
            get(x, b[0], n, host);
        });
    }

    @Override
    public double crossEntropy(float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale) {
        long count = (long) rows * vocab;
        need(logits, count, "crossEntropy", "logits (rows, vocab)");
        need(targets, rows, "crossEntropy", "targets (rows)");
        if (dLogits != null) need(dLogits, count, "crossEntropy", "dLogits (rows, vocab)");
        int counted = 0;
        for (int r = 0; r < rows; r++) {
            int target = targets[r];
            if (target == IGNORE_INDEX) continue;
            if (target < 0 || target >= vocab)
                throw new IllegalArgumentException("target " + target + " of row " + r + " is outside the vocabulary [0, " + vocab + ") and not " + IGNORE_INDEX);
            counted++;
        }
        if (rows == 0) return Double.NaN;
        float scale = counted == 0 ? 0f : gradScale / counted;
        float[] loss = new float[rows];
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(count), f32(rows), 4L * rows, 4, dLogits != null ? f32(count) : 0);
            put(b[0], logits, count, host);
            put(b[2], targets, rows, host);
            device.memset(b[3], 0xff); // badIndex = −1
            kernels.crossEntropy(b[1], dLogits != null ? b[4] : DeviceBuffer.NULL, b[0], b[2], rows, vocab, scale, b[3]);
            get(loss, b[1], rows, host);
            if (dLogits != null) get(dLogits, b[4], count, host);
            int bad = getInt(b[3], host);
            if (bad >= 0) throw new IllegalStateException("dive_cross_entropy reported row " + bad + " out of range although the targets were checked");
        });
        if (counted == 0) return Double.NaN;
        double sum = 0;
        for (int r = 0; r < rows; r++) if (targets[r] != IGNORE_INDEX) sum += loss[r];
        return sum / counted;
    }

    // ================================================================ Mixture of Experts

    @Override
    public void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k) {
        MoeChecks.routeTopK(expertIds, expertWeights, routerLogits, n, numExperts, k);
        if (numExperts > MAX_ROUTE_EXPERTS) {
            noteFallback("routeTopK with " + numExperts + " > " + MAX_ROUTE_EXPERTS + " experts");
            cpu.routeTopK(expertIds, expertWeights, routerLogits, n, numExperts, k);
            return;
        }
        if (n == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32((long) n * numExperts), 4L * n * k, f32((long) n * k));
            put(b[0], routerLogits, (long) n * numExperts, host);
            kernels.routeTopK(b[1], b[2], b[0], n, numExperts, k);
            get(expertIds, b[1], (long) n * k, host);
            get(expertWeights, b[2], (long) n * k, host);
        });
    }

    /** the counting sort on the device (dive_sort_by_expert); ids are checked on the host first, as on the CPU */
    @Override
    public void sortByExpert(int[] offsets, int[] rowToken, int[] slotRow, int[] expertIds, int n, int k, int numExperts) {
        long assigned = (long) n * k;
        need(expertIds, assigned, "sortByExpert", "expertIds (N, k)");
        need(offsets, numExperts + 1, "sortByExpert", "offsets (E + 1)");
        need(rowToken, assigned, "sortByExpert", "rowToken (N·k)");
        need(slotRow, assigned, "sortByExpert", "slotRow (N, k)");
        for (int i = 0; i < assigned; i++) {
            int e = expertIds[i];
            if (e < 0 || e >= numExperts)
                throw new IllegalArgumentException("sortByExpert: token " + i / k + " slot " + i % k + " has expert id " + e
                        + ", expected 0 ≤ id < " + numExperts);
        }
        if (assigned == 0) {
            Arrays.fill(offsets, 0, numExperts + 1, 0);
            return;
        }
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(4L * assigned, 4L * (numExperts + 1), 4L * assigned, 4L * assigned, 4);
            put(b[0], expertIds, assigned, host);
            device.memset(b[4], 0xff);
            kernels.sortByExpert(b[1], b[2], b[3], b[4], b[0], n, k, numExperts);
            get(offsets, b[1], numExperts + 1, host);
            get(rowToken, b[2], assigned, host);
            get(slotRow, b[3], assigned, host);
            int bad = getInt(b[4], host);
            if (bad >= 0) throw new IllegalStateException("dive_sort_by_expert reported assignment " + bad + " out of range although the ids were checked");
        });
    }

    @Override
    public void gather(float[] out, float[] x, int[] rows, int count, int width) {
        need(rows, count, "gather", "rows");
        need(out, (long) count * width, "gather", "out (count, width)");
        int sourceRows = width == 0 ? 0 : x.length / width;
        for (int r = 0; r < count; r++)
            if (rows[r] < 0 || rows[r] >= sourceRows)
                throw new IllegalArgumentException("gather: rows[" + r + "] = " + rows[r] + ", expected 0 ≤ row < " + sourceRows + " (rows of x)");
        if (count == 0 || width == 0) return;
        long xCount = (long) sourceRows * width;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(xCount), 4L * count, f32((long) count * width));
            put(b[0], x, xCount, host);
            put(b[1], rows, count, host);
            kernels.gatherRows(b[2], b[0], b[1], count, width, 4);
            get(out, b[2], (long) count * width, host);
        });
    }

    /**
     * One kernel launch for all experts: F32 weights (and F16, widened) with the F32 kernel, BF16 weights with the
     * BF16 tensor-core kernel (x rounded to BF16 on the device). The experts' weights are stacked (E, N, K).
     */
    @Override
    public void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias) {
        MoeChecks.groupedMatmul(out, x, offsets, w, bias);
        int experts = w.length, n = w[0].rows(), k = w[0].cols(), rows = offsets[experts];
        if (rows == 0 || n == 0) return;
        if (k == 0) { // no inputs: out = bias, nothing for a kernel to do
            cpu.groupedMatmul(out, x, offsets, w, bias);
            return;
        }
        boolean bf16 = Arrays.stream(w).allMatch(t -> t.dtype() == DType.BF16);
        boolean hasBias = bias != null && Arrays.stream(bias).anyMatch(t -> t != null);
        float[] biasRows = null;
        if (hasBias) {                                   // (E, N) F32, zeros for experts without a bias
            biasRows = new float[experts * n];
            for (int e = 0; e < experts; e++)
                if (bias[e] != null) for (int j = 0; j < n; j++) biasRows[e * n + j] = bias[e].getFloat(j);
        }
        float[] biasHost = biasRows;
        onDevice(host -> {
            DeviceBuffer wd = weights.stacked(w, bf16 ? Form.NATIVE : Form.F32, offsets, host);
            DeviceBuffer[] b = device.workspace(f32((long) rows * k), f32((long) rows * n), 4L * (experts + 1),
                    hasBias ? f32((long) experts * n) : 0, bf16 ? 2L * rows * k : 0);
            put(b[0], x, (long) rows * k, host);
            put(b[2], offsets, experts + 1, host);
            if (hasBias) put(b[3], biasHost, (long) experts * n, host);
            DeviceBuffer biasD = hasBias ? b[3] : DeviceBuffer.NULL;
            if (bf16) {
                kernels.f32ToBf16(b[4], b[0], (long) rows * k);
                kernels.groupedMatmulBf16(b[1], b[4], b[2], wd, biasD, experts, rows, n, k);
            } else {
                kernels.groupedMatmulF32(b[1], b[0], b[2], wd, biasD, experts, rows, n, k);
            }
            get(out, b[1], (long) rows * n, host);
        });
    }

    @Override
    public void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d) {
        long assigned = (long) n * k;
        need(expertOut, assigned * d, "combineExperts", "expertOut (N·k, d)");
        need(slotRow, assigned, "combineExperts", "slotRow (N, k)");
        need(expertWeights, assigned, "combineExperts", "expertWeights (N, k)");
        need(y, (long) n * d, "combineExperts", "y (N, d)");
        checkRows(slotRow, assigned, "combineExperts");
        if (n == 0 || d == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(assigned * d), 4L * assigned, f32(assigned), f32((long) n * d));
            put(b[0], expertOut, assigned * d, host);
            put(b[1], slotRow, assigned, host);
            put(b[2], expertWeights, assigned, host);
            kernels.combineExperts(b[3], b[0], b[1], b[2], n, k, d);
            get(y, b[3], (long) n * d, host);
        });
    }

    private static void checkRows(int[] slotRow, long assigned, String op) {
        for (int i = 0; i < assigned; i++)
            if (slotRow[i] < 0 || slotRow[i] >= assigned)
                throw new IllegalArgumentException(op + ": slotRow[" + i + "] = " + slotRow[i] + ", expected 0 ≤ row < N·k = " + assigned);
    }

    @Override
    public void combineExpertsBackward(float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                       float[] expertWeights, int n, int k, int d) {
        long assigned = (long) n * k;
        need(dy, (long) n * d, "combineExpertsBackward", "dy (N, d)");
        need(expertOut, assigned * d, "combineExpertsBackward", "expertOut (N·k, d)");
        need(dExpertOut, assigned * d, "combineExpertsBackward", "dExpertOut (N·k, d)");
        need(slotRow, assigned, "combineExpertsBackward", "slotRow (N, k)");
        need(expertWeights, assigned, "combineExpertsBackward", "expertWeights (N, k)");
        need(dWeights, assigned, "combineExpertsBackward", "dWeights (N, k)");
        checkRows(slotRow, assigned, "combineExpertsBackward");
        if (assigned == 0) return;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32((long) n * d), f32(assigned * d), 4L * assigned, f32(assigned), f32(assigned * d), f32(assigned));
            put(b[0], dy, (long) n * d, host);
            put(b[1], expertOut, assigned * d, host);
            put(b[2], slotRow, assigned, host);
            put(b[3], expertWeights, assigned, host);
            kernels.combineExpertsBackward(b[4], b[5], b[0], b[1], b[2], b[3], n, k, d);
            get(dExpertOut, b[4], assigned * d, host);
            get(dWeights, b[5], assigned, host);
        });
    }

    /**
     * x[rows[r], :] += src[r, :] in order r = 0, 1, …: laid out for dive_unpermute_add as a (destinations, kMax) table of
     * source rows in increasing r, padded with a zero row, so each destination sums its sources in the CPU's order.
     */
    @Override
    public void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width) {
        need(rows, count, "scatterAddRows", "rows");
        need(src, (long) count * width, "scatterAddRows", "src (count, width)");
        if (count == 0 || width == 0) return;
        int destinations = 0;
        for (int r = 0; r < count; r++) {
            if (rows[r] < 0) throw new IllegalArgumentException("scatterAddRows: rows[" + r + "] = " + rows[r] + ", expected ≥ 0");
            destinations = Math.max(destinations, rows[r] + 1);
        }
        need(x, (long) destinations * width, "scatterAddRows", "x (· , width)");
        int[] hits = new int[destinations];
        int kMax = 0;
        for (int r = 0; r < count; r++) kMax = Math.max(kMax, ++hits[rows[r]]);
        if ((long) destinations * kMax > 4L * (count + destinations)) {
            noteFallback("scatterAddRows with unevenly hit rows");
            cpu.scatterAddRows(x, src, rows, count, width);
            return;
        }
        int[] table = new int[destinations * kMax];
        Arrays.fill(table, count);                      // the zero row appended to src
        int[] filled = new int[destinations];
        for (int r = 0; r < count; r++) table[rows[r] * kMax + filled[rows[r]]++] = r;
        long xCount = (long) destinations * width, srcCount = (long) count * width;
        int n = destinations, k = kMax;
        onDevice(host -> {
            DeviceBuffer[] b = device.workspace(f32(xCount), f32(srcCount + width), 4L * table.length);
            put(b[0], x, xCount, host);
            put(b[1], src, srcCount, host);
            device.memset(b[1].floats(srcCount, width), 0);
            put(b[2], table, table.length, host);
            kernels.unpermuteAdd(b[0], b[1], b[2], n, k, width);
            get(x, b[0], xCount, host);
        });
    }

    /** frees the cached weights and closes the device (stream, cuBLAS handle, workspace) */
    @Override
    public void close() {
        device.lock().lock();
        try {
            if (closed) return;
            closed = true;
            weights.close();
        } finally {
            device.lock().unlock();
        }
        device.close();
    }

    /**
     * The optimizer step stays on the CPU backend: parameters live in host memory between the per-op copies, so
     * moving them for the element-wise update would cost more than it saves (the device kernel, {@code dive_adamw},
     * is for a device-resident trainer). Same bits on every backend.
     */
    @Override
    public void adamW(java.lang.foreign.MemorySegment param, float[] grad, float[] m, float[] v, int n, AdamWStep s) {
        cpu.adamW(param, grad, m, v, n, s);
    }
}
