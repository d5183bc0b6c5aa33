package dive.backend;

import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.ForkJoinPool;

/**
 * The fast CPU backend: Vector API kernels ({@link FloatVector#SPECIES_PREFERRED}: 8 floats on AVX2,
 * 16 on AVX-512) with scalar tails, multithreaded on a fixed {@link ForkJoinPool}.
 *
 * <ul>
 * <li>GEMM (matmul with M ≥ {@value #GEMM_MIN_ROWS}, prefill), BLIS style: each task (an output tile of 1 to
 *     4 column panels) widens to F32 and packs one panel of w (KC = {@value #KC} depths × NR = 2 vectors of
 *     columns, transposed in registers) into a per-thread buffer that stays in L1, then runs every row of x
 *     against it: w is read once, in its own dtype, and no whole packed copy of it is made (except for small
 *     read-only weights, packed once and cached: {@link PackedWeights}). A register-tiled
 *     micro-kernel (MR = 12 rows on 512-bit vectors, 6 on 256-bit, × NR columns) broadcasts x[m, k] straight
 *     from x's rows (no packing of x) and FMAs it against a packed row of w; whole tiles go from registers
 *     to out. The backward GEMMs pack their operands whole (the weight gradient, depth = tokens, packs both).</li>
 * <li>GEMV (smaller M, decode): rows of w streamed straight from the (possibly mapped, unaligned)
 *     segment, 4 rows at a time. BF16/F16 are read as int lanes holding two elements each and widened
 *     in-register (even/odd halves) against an even/odd split copy of x.</li>
 * <li>Attention: prefill transposes the keys so scores are vertical FMAs; decode takes dot products.
 *     swiglu and softmax use a polynomial e^x built from exactly-specified lane operations.</li>
 * </ul>
 * Deterministic: work is cut into tasks by shape only, each output element is computed by one task in
 * a fixed order, and lane sums use a fixed tree, so results are the same bits for any thread count,
 * before and after JIT compilation. Thread-safe: no mutable state is shared between calls; packing
 * buffers belong to the calling thread.
 *
 * <p>The kernels live by family in package-private classes named after their CUDA twins in native/src:
 * {@link VectorMatmul} (GEMV, GEMM, packing, micro-kernels, the backward GEMMs), {@link VectorAttention},
 * {@link VectorRope}, {@link VectorNorm}, {@link VectorElementwise}, {@link VectorLoss}, {@link VectorMoe},
 * {@link VectorAdamW}; what they share (species, lane sum, widening, scratch buffers, the parallel loop) is in
 * {@link VectorSupport}. This class holds the backend's threads and hands each op to its family.
 *
 * <p>Threads: {@link Runtime#availableProcessors()} on one shared pool by default, or as many as given to
 * {@link #VectorBackend(int)}.
 */
public final class VectorBackend extends CpuBackend {
    // the constants and kernels that tests and this class's documentation name
    static final VectorSpecies<Float> F = VectorSupport.F;
    static final int L = VectorSupport.L;
    static final int NR = VectorMatmul.NR;
    static final int KC = VectorMatmul.KC;
    static final int GEMM_MIN_ROWS = VectorMatmul.GEMM_MIN_ROWS;

    static void packPanel(Tensor w, int k, int j0, int cols, int k0, int kc, float[] dst, int dstOff) {
        VectorMatmul.packPanel(w, k, j0, cols, k0, kc, dst, dstOff);
    }

    static FloatVector exp(FloatVector x) { return VectorElementwise.exp(x); }

    private final VectorSupport.Workers workers;

    /** the shared pool of {@link Runtime#availableProcessors()} threads */
    public VectorBackend() {
        this.workers = VectorSupport.Workers.shared();
    }

    /** a backend of {@code threads} threads: the shared pool where that is the default count, else a pool of its own */
    public VectorBackend(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be ≥ 1, got " + threads);
        this.workers = VectorSupport.Workers.of(threads);
    }

    public int threads() { return workers.threads; }

    @Override public String name() { return "vector(" + F.vectorBitSize() + "-bit, " + workers.threads + " threads)"; }

    // ---------------------------------------------------------------- forward

    @Override public void matmul(float[] out, float[] x, int m, Tensor w) { VectorMatmul.matmul(workers, out, x, m, w); }

    @Override public void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps) { VectorNorm.rmsNorm(out, x, weight, rows, eps); }

    @Override public void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq) { VectorRope.rope(x, rows, heads, headDim, positions, invFreq); }

    @Override
    public void attention(float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos, int nHeads, int nKvHeads, int headDim, float scale) {
        VectorAttention.attention(workers, out, q, kCache, vCache, T, startPos, nHeads, nKvHeads, headDim, scale);
    }

    @Override public void swiglu(float[] out, float[] gate, float[] up, int n) { VectorElementwise.swiglu(workers, out, gate, up, n); }

    @Override public void softmax(float[] x, int off, int n) { VectorElementwise.softmaxInPlace(x, off, n); }

    @Override public void embedding(float[] out, Tensor table, int[] ids) { VectorElementwise.embedding(out, table, ids); }

    @Override public void add(float[] x, float[] y, int n) { VectorElementwise.add(x, y, n); }

    // ---------------------------------------------------------------- backward passes

    @Override public void matmulBackwardInput(float[] dx, float[] dOut, int m, Tensor w) { VectorMatmul.matmulBackwardInput(workers, dx, dOut, m, w); }

    @Override
    public void matmulBackwardWeight(float[] dw, float[] dOut, float[] x, int m, int n, int k) {
        VectorMatmul.matmulBackwardWeight(workers, dw, dOut, x, m, n, k);
    }

    @Override
    public void rmsNormBackward(float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps) {
        VectorNorm.rmsNormBackward(workers, dx, dWeight, dOut, x, weight, rows, eps);
    }

    @Override
    public void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        VectorRope.ropeBackward(dx, rows, heads, headDim, positions, invFreq);
    }

    @Override
    public void attentionBackward(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                  int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        VectorAttention.attentionBackward(workers, dq, dk, dv, dOut, q, k, v, B, T, nHeads, nKvHeads, headDim, scale);
    }

    @Override
    public void swigluBackward(float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n) {
        VectorElementwise.swigluBackward(workers, dGate, dUp, dOut, gate, up, n);
    }

    @Override public void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d) { VectorElementwise.embeddingBackward(dTable, dOut, ids, d); }

    @Override
    public double crossEntropy(float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale) {
        return VectorLoss.crossEntropy(workers, dLogits, logits, targets, rows, vocab, gradScale);
    }

    @Override public void addScaled(float[] x, float[] y, float a, int n) { VectorElementwise.addScaled(x, y, a, n); }

    // ---------------------------------------------------------------- Mixture of Experts

    @Override
    public void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k) {
        VectorMoe.routeTopK(workers, expertIds, expertWeights, routerLogits, n, numExperts, k);
    }

    @Override public void gather(float[] out, float[] x, int[] rows, int count, int width) { VectorMoe.gather(workers, out, x, rows, count, width); }

    @Override
    public void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias) {
        VectorMoe.groupedMatmul(workers, out, x, offsets, w, bias);
    }

    @Override
    public void groupedMatmul2(float[] outGate, float[] outUp, float[] x, int[] xRows, int[] offsets, Tensor[] wGate, Tensor[] wUp) {
        VectorMoe.groupedMatmul2(workers, outGate, outUp, x, xRows, offsets, wGate, wUp);
    }

    @Override
    public void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d) {
        VectorMoe.combineExperts(workers, y, expertOut, slotRow, expertWeights, n, k, d);
    }

    @Override
    public void combineExpertsBackward(float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                       float[] expertWeights, int n, int k, int d) {
        VectorMoe.combineExpertsBackward(workers, dExpertOut, dWeights, dy, expertOut, slotRow, expertWeights, n, k, d);
    }

    @Override
    public void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width) { VectorMoe.scatterAddRows(x, src, rows, count, width); }

    // ---------------------------------------------------------------- optimiser

    @Override
    public void adamW(MemorySegment param, float[] grad, float[] m, float[] v, int n, AdamWStep s) {
        VectorAdamW.adamW(workers, param, grad, m, v, n, s);
    }
}
