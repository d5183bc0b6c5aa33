package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static dive.backend.VectorSupport.*;

/**
 * The matmuls of {@link VectorBackend}: GEMV (decode), the register-tiled GEMM with its packing of w and its
 * micro-kernels (prefill), and the backward GEMMs (matmulBackwardInput, matmulBackwardWeight); also the GEMV on a row
 * range and the GEMM tile that the grouped MoE matmuls ({@link VectorMoe}) run per expert. The CPU twin of the cuBLAS
 * GemmEx calls of CudaBackend (native/src has no kernel file of its own for dense matmuls).
 */
final class VectorMatmul {
    private VectorMatmul() {}

    /**
     * micro-kernel rows of x: 12 × 2 vectors = 24 accumulators where vectors are 512-bit (AVX-512 has 32
     * registers), 6 × 2 = 12 with 256-bit AVX2 (16 registers)
     */
    static final int MR = L >= 16 ? 12 : 6;
    /** micro-kernel columns of out (= rows of w): two vectors */
    static final int NR = 2 * L;
    /** depth of one packed block of w */
    static final int KC = 256;
    /** rows of x per pass over a tile's packed panels: MC × KC floats of x stay in L2 while every panel runs against them */
    static final int MC = 12 * MR;
    /** panels of w a tile packs per depth block (the GEMM's tasks are at most this wide) */
    static final int TILE_PANELS = 4;
    /** below this many rows of x, matmul runs as GEMV per row (packing w costs more than it saves) */
    static final int GEMM_MIN_ROWS = 4;
    /**
     * below this many rows of x, a BF16/F16 w that is not cached packed (a large model's: the GEMM would widen and pack
     * it on every call) runs as GEMV with rows of x grouped by 4 ({@link #gemvHalf2x4}): a decode batch reads and widens
     * w once per 4 sequences instead of packing it. A 1.1B decode step (hidden 2048, 22 layers) of 4 rows took 130 ms
     * this way against 341 ms as GEMM; at 16 rows the two were even (352–379 against 338–355 ms), at 32 the GEMM ahead
     * (see benchmarks/RESULTS.md)
     */
    static final int GEMV_BATCH_MAX_ROWS = 16;

    /**
     * weights below which a GEMV stays on the calling thread: handing work to a fork-join pool thread costs a few
     * µs to tens of µs; a 1024 × 256 GEMV takes ~13 µs on one thread here (measured with GemvBenchmark)
     */
    static final long GEMV_PARALLEL_MIN_WEIGHTS = 1L << 19;
    /**
     * the same while the backend's spinning crew takes loops ({@link Workers#quickLoops}): a hand-off costs about a µs,
     * so the FFN GEMVs of a small model (1024 × 256) run in parallel too. Not lower: on a machine with more runnable
     * threads than cores the q/k/v/o GEMVs of hidden 256 (2^15 to 2^16 weights) came out slower in parallel (each loop
     * needs both threads on a core at once), see benchmarks/RESULTS.md
     */
    static final long GEMV_QUICK_MIN_WEIGHTS = 1L << 18;

    /**
     * whether {@code m} rows of x against w run as GEMV: fewer than {@value #GEMM_MIN_ROWS} rows, or fewer than
     * {@value #GEMV_BATCH_MAX_ROWS} against a BF16/F16 w that is not cached packed (the GEMM would pack it per call)
     */
    static boolean asGemv(int m, Tensor w) {
        return m < GEMM_MIN_ROWS || m < GEMV_BATCH_MAX_ROWS && w.dtype() != DType.F32 && w.data().isNative()
                && PackedWeights.lookup(w) == null && !PackedWeights.cacheable(w, packedColumnsSize(w.rows(), w.cols()));
    }

    static boolean parallelGemv(Workers workers, long weights) {
        return weights >= GEMV_PARALLEL_MIN_WEIGHTS || weights >= GEMV_QUICK_MIN_WEIGHTS && workers.quickLoops();
    }

    // ---------------------------------------------------------------- matmul

    static void matmul(Workers workers, float[] out, float[] x, int m, Tensor w) {
        checkWeight(w);
        int n = w.rows(), k = w.cols();
        if (m < 1) throw new IllegalArgumentException("matmul with '" + w.name() + "': m = " + m + ", expected ≥ 1");
        if ((long) m * k > x.length) throw new IllegalArgumentException("matmul with '" + w.name() + "': x has " + x.length + " floats, expected ≥ m·K = " + m + "·" + k);
        if ((long) m * n > out.length) throw new IllegalArgumentException("matmul with '" + w.name() + "': out has " + out.length + " floats, expected ≥ m·N = " + m + "·" + n);
        if (asGemv(m, w)) gemv(workers, out, x, m, w, n, k);
        else if (n <= NR / 2) skinny(workers, out, x, m, w, n, k);
        else gemm(workers, out, x, m, w, n, k);
    }

    /**
     * out (m, N) for few output columns (a router: N = experts), where a GEMM would pad N to a whole NR panel:
     * w widened once, then one dot product per output, tasks over rows of x (by shape only)
     */
    private static void skinny(Workers workers, float[] out, float[] x, int m, Tensor w, int n, int k) {
        float[] wf = new float[n * k];
        widen(w, 0, wf, 0, n * k);
        int rowsPerTask = 64, tasks = (m + rowsPerTask - 1) / rowsPerTask;
        workers.parallelFor(tasks, (long) m * n * k >= PARALLEL_MIN_FMAS, t -> {
            for (int r = t * rowsPerTask, end = Math.min(m, r + rowsPerTask); r < end; r++)
                for (int j = 0; j < n; j++) out[r * n + j] = dotHeap(wf, j * k, x, r * k, k);
        });
    }

    // ---- GEMV: out (m, N) for small m, parallel over rows of w

    private static void gemv(Workers workers, float[] out, float[] x, int m, Tensor w, int n, int k) {
        int rowsPerTask = 64;
        int tasks = (n + rowsPerTask - 1) / rowsPerTask;
        boolean parallel = parallelGemv(workers, (long) n * k);
        if (!w.data().isNative()) { // heap-backed (Tensor.ofFloats, tests): vector loads from byte[] segments are slow
            workers.parallelFor(tasks, parallel, t -> gemvHeapRows(out, x, m, w, n, k, t * rowsPerTask, Math.min(n, t * rowsPerTask + rowsPerTask)));
            return;
        }
        gemvRows(workers, out, x, 0, m, w, n, k);  // the same kernels, rows of x from 0
    }

    /**
     * rows j, j+1 of BF16/F16 w · rows g .. g+3 of x → out[q·n + j], out[q·n + j + 1] for q in g .. g+3 (their even and
     * odd halves at xEven/xOdd[r .. r+3]): each load and
     * widening of w serves 4 rows of x. Every output is summed exactly as {@link #gemvHalfx4} sums it (the same even and
     * odd accumulators in the same order, the same reduction and tail), so a row's result does not depend on how many
     * rows the call has.
     */
    private static void gemvHalf2x4(float[] out, int n, int g, int r, float[] x, int k, float[][] xEven, float[][] xOdd, int pairedK,
                                    Tensor wt, int j) {
        MemorySegment w = wt.data();
        boolean bf16 = wt.dtype() == DType.BF16;
        long b0 = (long) j * k * 2, b1 = b0 + (long) k * 2;
        float[] xe0 = xEven[r], xe1 = xEven[r + 1], xe2 = xEven[r + 2], xe3 = xEven[r + 3];
        float[] xo0 = xOdd[r], xo1 = xOdd[r + 1], xo2 = xOdd[r + 2], xo3 = xOdd[r + 3];
        FloatVector e00 = FloatVector.zero(F), e01 = e00, e02 = e00, e03 = e00, e10 = e00, e11 = e00, e12 = e00, e13 = e00;
        FloatVector o00 = e00, o01 = e00, o02 = e00, o03 = e00, o10 = e00, o11 = e00, o12 = e00, o13 = e00;
        for (int i = 0; i < pairedK; i += 2 * L) {
            long d = (long) i * 2;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + d, LE), v1 = IntVector.fromMemorySegment(I, w, b1 + d, LE);
            FloatVector w0e = bf16 ? lowBf16(v0) : lowF16(v0), w0o = bf16 ? highBf16(v0) : highF16(v0);
            FloatVector w1e = bf16 ? lowBf16(v1) : lowF16(v1), w1o = bf16 ? highBf16(v1) : highF16(v1);
            int h = i / 2;
            FloatVector xe = FloatVector.fromArray(F, xe0, h), xd = FloatVector.fromArray(F, xo0, h);
            e00 = w0e.fma(xe, e00); o00 = w0o.fma(xd, o00); e10 = w1e.fma(xe, e10); o10 = w1o.fma(xd, o10);
            xe = FloatVector.fromArray(F, xe1, h); xd = FloatVector.fromArray(F, xo1, h);
            e01 = w0e.fma(xe, e01); o01 = w0o.fma(xd, o01); e11 = w1e.fma(xe, e11); o11 = w1o.fma(xd, o11);
            xe = FloatVector.fromArray(F, xe2, h); xd = FloatVector.fromArray(F, xo2, h);
            e02 = w0e.fma(xe, e02); o02 = w0o.fma(xd, o02); e12 = w1e.fma(xe, e12); o12 = w1o.fma(xd, o12);
            xe = FloatVector.fromArray(F, xe3, h); xd = FloatVector.fromArray(F, xo3, h);
            e03 = w0e.fma(xe, e03); o03 = w0o.fma(xd, o03); e13 = w1e.fma(xe, e13); o13 = w1o.fma(xd, o13);
        }
        // (no arrays of vectors here: they would keep the vectors boxed)
        finish2x4(out, n, g, j, x, k, pairedK, wt, 0, 0, sumLanes(e00.add(o00)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 0, 1, sumLanes(e01.add(o01)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 0, 2, sumLanes(e02.add(o02)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 0, 3, sumLanes(e03.add(o03)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 1, 0, sumLanes(e10.add(o10)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 1, 1, sumLanes(e11.add(o11)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 1, 2, sumLanes(e12.add(o12)));
        finish2x4(out, n, g, j, x, k, pairedK, wt, 1, 3, sumLanes(e13.add(o13)));
    }

    /** out for row j + c of w and row r + q of x: the vector part {@code s} plus the depth tail past pairedK */
    private static void finish2x4(float[] out, int n, int r, int j, float[] x, int k, int pairedK, Tensor wt, int c, int q, float s) {
        long row = (long) (j + c) * k;
        int xo = (r + q) * k;
        for (int i = pairedK; i < k; i++) s += x[xo + i] * wt.getFloat(row + i);
        out[(r + q) * n + j + c] = s;
    }

    /** rows n0..n1 of a heap-backed w: each row widened into a float[] once, then dotted with every row of x */
    private static void gemvHeapRows(float[] out, float[] x, int m, Tensor w, int n, int k, int n0, int n1) {
        float[] row = new float[k];
        int upper = k - k % L;
        for (int j = n0; j < n1; j++) {
            widen(w, (long) j * k, row, 0, k);
            for (int r = 0; r < m; r++) {
                FloatVector acc = FloatVector.zero(F);
                int i = 0;
                for (; i < upper; i += L) acc = FloatVector.fromArray(F, row, i).fma(FloatVector.fromArray(F, x, r * k + i), acc);
                float s = sumLanes(acc);
                for (; i < k; i++) s += row[i] * x[r * k + i];
                out[r * n + j] = s;
            }
        }
    }

    /** out[o .. o+4) = rows j .. j+3 of F32 w · x[xo .. xo+k) */
    private static void gemvF32x4(float[] out, int o, float[] x, int xo, MemorySegment w, int j, int k) {
        long b0 = (long) j * k * 4, b1 = b0 + (long) k * 4, b2 = b1 + (long) k * 4, b3 = b2 + (long) k * 4;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int upper = k - k % L, i = 0;
        for (; i < upper; i += L) {
            FloatVector xv = FloatVector.fromArray(F, x, xo + i);
            long d = (long) i * 4;
            a0 = FloatVector.fromMemorySegment(F, w, b0 + d, LE).fma(xv, a0);
            a1 = FloatVector.fromMemorySegment(F, w, b1 + d, LE).fma(xv, a1);
            a2 = FloatVector.fromMemorySegment(F, w, b2 + d, LE).fma(xv, a2);
            a3 = FloatVector.fromMemorySegment(F, w, b3 + d, LE).fma(xv, a3);
        }
        float s0 = sumLanes(a0), s1 = sumLanes(a1);
        float s2 = sumLanes(a2), s3 = sumLanes(a3);
        for (; i < k; i++) {
            float xi = x[xo + i];
            long d = (long) i * 4;
            s0 += xi * w.get(Tensor.F32, b0 + d);
            s1 += xi * w.get(Tensor.F32, b1 + d);
            s2 += xi * w.get(Tensor.F32, b2 + d);
            s3 += xi * w.get(Tensor.F32, b3 + d);
        }
        out[o] = s0; out[o + 1] = s1; out[o + 2] = s2; out[o + 3] = s3;
    }

    /** the same for BF16/F16 w: each int lane holds elements (2l, 2l+1) of a block of 2L */
    private static void gemvHalfx4(float[] out, int o, float[] x, int xo, float[] xEven, float[] xOdd, int pairedK,
                                   Tensor wt, int j, int k) {
        MemorySegment w = wt.data();
        boolean bf16 = wt.dtype() == DType.BF16;
        long b0 = (long) j * k * 2, b1 = b0 + (long) k * 2, b2 = b1 + (long) k * 2, b3 = b2 + (long) k * 2;
        FloatVector e0 = FloatVector.zero(F), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
        for (int i = 0; i < pairedK; i += 2 * L) {
            FloatVector xe = FloatVector.fromArray(F, xEven, i / 2), xd = FloatVector.fromArray(F, xOdd, i / 2);
            long d = (long) i * 2;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + d, LE), v1 = IntVector.fromMemorySegment(I, w, b1 + d, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, b2 + d, LE), v3 = IntVector.fromMemorySegment(I, w, b3 + d, LE);
            if (bf16) {
                e0 = lowBf16(v0).fma(xe, e0); o0 = highBf16(v0).fma(xd, o0);
                e1 = lowBf16(v1).fma(xe, e1); o1 = highBf16(v1).fma(xd, o1);
                e2 = lowBf16(v2).fma(xe, e2); o2 = highBf16(v2).fma(xd, o2);
                e3 = lowBf16(v3).fma(xe, e3); o3 = highBf16(v3).fma(xd, o3);
            } else {
                e0 = lowF16(v0).fma(xe, e0); o0 = highF16(v0).fma(xd, o0);
                e1 = lowF16(v1).fma(xe, e1); o1 = highF16(v1).fma(xd, o1);
                e2 = lowF16(v2).fma(xe, e2); o2 = highF16(v2).fma(xd, o2);
                e3 = lowF16(v3).fma(xe, e3); o3 = highF16(v3).fma(xd, o3);
            }
        }
        float s0 = sumLanes(e0.add(o0)), s1 = sumLanes(e1.add(o1));
        float s2 = sumLanes(e2.add(o2)), s3 = sumLanes(e3.add(o3));
        long row = (long) j * k;
        for (int i = pairedK; i < k; i++) {
            float xi = x[xo + i];
            s0 += xi * wt.getFloat(row + i);
            s1 += xi * wt.getFloat(row + k + i);
            s2 += xi * wt.getFloat(row + 2L * k + i);
            s3 += xi * wt.getFloat(row + 3L * k + i);
        }
        out[o] = s0; out[o + 1] = s1; out[o + 2] = s2; out[o + 3] = s3;
    }

    /** one row j of w · x[xo .. xo+k), any float dtype */
    private static float dotRow(float[] x, int xo, Tensor w, int j, int k, float[] xEven, float[] xOdd, int pairedK) {
        MemorySegment seg = w.data();
        FloatVector acc = FloatVector.zero(F), acc2 = acc;
        int i = 0;
        if (w.dtype() == DType.F32) {
            long b = (long) j * k * 4;
            for (int upper = k - k % L; i < upper; i += L)
                acc = FloatVector.fromMemorySegment(F, seg, b + (long) i * 4, LE).fma(FloatVector.fromArray(F, x, xo + i), acc);
        } else {
            long b = (long) j * k * 2;
            boolean bf16 = w.dtype() == DType.BF16;
            for (; i < pairedK; i += 2 * L) {
                IntVector v = IntVector.fromMemorySegment(I, seg, b + (long) i * 2, LE);
                acc = (bf16 ? lowBf16(v) : lowF16(v)).fma(FloatVector.fromArray(F, xEven, i / 2), acc);
                acc2 = (bf16 ? highBf16(v) : highF16(v)).fma(FloatVector.fromArray(F, xOdd, i / 2), acc2);
            }
        }
        float s = sumLanes(acc.add(acc2));
        long row = (long) j * k;
        for (; i < k; i++) s += x[xo + i] * w.getFloat(row + i);
        return s;
    }

    // ---- GEMM: register-tiled, w widened and packed per panel inside each task

    /**
     * out (m, N) = x · wᵀ, x's rows read in place. Each task widens and packs the panels of w it is about to use, one
     * depth block (KC) of its panels at a time ({@link #packPanel}, into a buffer that stays in L2), then runs blocks of MC
     * rows of x (in L2) against one KC × NR panel after the other (in L1), so w is read from memory once, in its own dtype, and no packed copy of it outlives the task; small read-only
     * weights come packed whole from {@link PackedWeights} instead. Tasks: column tiles of 4 panels of NR columns
     * (packing per panel: 1 to 4 panels, at least 8 tiles where there are 8 panels), cut along rows too when that gives
     * fewer than 8 tiles; by shape only, so results don't depend on the thread count.
     */
    private static void gemm(Workers workers, float[] out, float[] x, int m, Tensor w, int n, int k) {
        boolean parallel = (long) m * n * k >= PARALLEL_MIN_FMAS;
        float[] cached = cachedPacked(w, n, k);
        // per-panel packing: narrower tiles before cutting rows (which would pack the panels again per row tile)
        int nc = (cached != null ? 4 : Math.clamp((n + NR - 1) / NR / 8, 1, 4)) * NR;
        int nTiles = (n + nc - 1) / nc;
        int mTiles = nTiles >= 8 ? 1 : Math.min((8 + nTiles - 1) / nTiles, (m + MR - 1) / MR);
        int mc = roundUp((m + mTiles - 1) / mTiles, MR);
        int mTilesFinal = (m + mc - 1) / mc;
        workers.parallelFor(nTiles * mTilesFinal, parallel, t -> {
            int nt = t % nTiles, mt = t / nTiles;
            gemmTile(out, n, 0, 0, x, 0, k, null, cached, cached == null ? w : null, false, k, mt * mc, Math.min(m, mt * mc + mc), nt * nc, Math.min(n, nt * nc + nc), false);
        });
    }

    static int packedColumnsSize(int cols, int k) { return (cols + NR - 1) / NR * k * NR; }

    /**
     * w (n, k) packed whole, (column panels of NR, k, NR), from {@link PackedWeights} where w is small and read-only
     * (packed and cached on first use), else null: the GEMM then packs w panel by panel
     */
    static float[] cachedPacked(Tensor w, int n, int k) {
        float[] packed = PackedWeights.lookup(w);
        if (packed != null || !PackedWeights.cacheable(w, packedColumnsSize(n, k))) return packed;
        packed = new float[packedColumnsSize(n, k)];
        for (int j0 = 0, dst = 0; j0 < n; j0 += NR)
            for (int k0 = 0; k0 < k; dst += Math.min(KC, k - k0) * NR, k0 += KC)
                packPanel(w, k, j0, Math.min(NR, n - j0), k0, Math.min(KC, k - k0), packed, dst);
        PackedWeights.offer(w, packed);
        return packed;
    }

    /**
     * dst[dstOff + kk·NR + j] = w[j0 + j, k0 + kk] widened to F32 for kk &lt; kc, j &lt; cols, and 0 for cols ≤ j &lt; NR:
     * one packed (kc, NR) panel, k-major, as the micro-kernels read it. Whole panels are transposed in registers, L rows × L int
     * lanes at a time (BF16/F16: two elements per lane, widened after the transpose into the even and odd depths); the
     * rest (a last partial panel, depth tails, vectors other than 8 or 16 floats) goes through {@link VectorSupport#widen}. Every
     * element gets the bits {@link VectorSupport#widen} gives it.
     */
    static void packPanel(Tensor w, int k, int j0, int cols, int k0, int kc, float[] dst, int dstOff) {
        MemorySegment seg = w.data();
        DType dtype = w.dtype();
        int done = 0;
        if (cols == NR && (L == 16 || L == 8)) {
            // the panel's rows copied as int lanes (F32: one depth per lane; BF16/F16: two, the even one in the low
            // half) into rows[j·units + u], transposed into lanes[u·NR + j], then widened into dst in one pass (F32
            // with 16 lanes: transposed straight into dst)
            int depthsPerLane = dtype == DType.F32 ? 1 : 2, step = L * depthsPerLane;
            done = kc - kc % step;
            int units = done / depthsPerLane;
            int[] rows = rowBuffer(NR * units), lanes = laneBuffer(units * NR);
            for (int j = 0; j < NR; j++)
                MemorySegment.copy(seg, Tensor.I32, ((long) (j0 + j) * k + k0) * dtype.bytes, rows, j * units, units);
            for (int h = 0; h < NR; h += L)
                for (int u = 0; u < units; u += L) {
                    if (L == 16 && dtype == DType.F32) transpose16f(rows, h * units + u, units, dst, dstOff + u * NR + h);
                    else if (L == 16) transpose16(rows, h * units + u, units, lanes, u * NR + h);
                    else transpose8(rows, h * units + u, units, lanes, u * NR + h);
                }
            if (dtype == DType.F32 && L != 16) {
                for (int o = 0; o < units * NR; o += L) IntVector.fromArray(I, lanes, o).reinterpretAsFloats().intoArray(dst, dstOff + o);
            } else if (dtype == DType.BF16) {
                for (int u = 0; u < units; u++)
                    for (int h = 0; h < NR; h += L) {
                        IntVector v = IntVector.fromArray(I, lanes, u * NR + h);
                        lowBf16(v).intoArray(dst, dstOff + 2 * u * NR + h);
                        highBf16(v).intoArray(dst, dstOff + (2 * u + 1) * NR + h);
                    }
            } else if (dtype == DType.F16) {
                for (int u = 0; u < units; u++)
                    for (int h = 0; h < NR; h += L) {
                        IntVector v = IntVector.fromArray(I, lanes, u * NR + h);
                        lowF16(v).intoArray(dst, dstOff + 2 * u * NR + h);
                        highF16(v).intoArray(dst, dstOff + (2 * u + 1) * NR + h);
                    }
            }
        }
        if (done == kc) return;
        float[] depths = scratch(3, kc - done);
        for (int j = 0; j < NR; j++) {
            if (j < cols) {
                widen(w, (long) (j0 + j) * k + k0 + done, depths, 0, kc - done);
                for (int kk = done; kk < kc; kk++) dst[dstOff + kk * NR + j] = depths[kk - done];
            } else {
                for (int kk = done; kk < kc; kk++) dst[dstOff + kk * NR + j] = 0f;
            }
        }
    }

    /**
     * dst[dstOff + kk·NR + j] = w[k0 + kk, j0 + j] widened to F32 for kk &lt; kc, j &lt; cols, and 0 for cols ≤ j &lt; NR:
     * the packed (kc, NR) panel of a w whose rows are the depth (dx = dOut · w), kc contiguous row slices, no transpose
     */
    static void packDepthPanel(Tensor w, int j0, int cols, int k0, int kc, float[] dst, int dstOff) {
        long ld = w.cols();
        for (int kk = 0, d = dstOff; kk < kc; kk++, d += NR) {
            widen(w, (k0 + kk) * ld + j0, dst, d, cols);
            if (cols < NR) Arrays.fill(dst, d + cols, d + NR, 0f);
        }
    }

    /**
     * Index vectors of the in-register transposes ({@code selectFrom(a, b)}, lanes ≥ L from b): at distance d, rows i
     * and i + d (i without bit d) swap their off-diagonal d-lane blocks; d = L/2, …, 1 transposes L rows of L lanes.
     */
    private static final IntVector T8L = transposeIndexes(8, false), T8H = transposeIndexes(8, true),
            T4L = transposeIndexes(4, false), T4H = transposeIndexes(4, true), T2L = transposeIndexes(2, false),
            T2H = transposeIndexes(2, true), T1L = transposeIndexes(1, false), T1H = transposeIndexes(1, true);

    private static IntVector transposeIndexes(int d, boolean high) {
        int[] index = new int[L];
        for (int l = 0; l < L; l++) index[l] = ((l & d) == 0 ? l : L + l - d) + (high ? d : 0);
        return IntVector.fromArray(I, index, 0);
    }

    /**
     * L = 16: 16 rows of 16 int lanes, at rows[off + r·stride ..], transposed: lane r of lanes[d + i·NR ..] = lane i of
     * row r. (Kept to loads from an int[] and one form of store: C1 gives up on a bigger method ("out of virtual
     * registers"), which leaves it in slow tier-2 code that C2 never replaces: loading straight from the segment, or two
     * forms of store in one method, was enough for that.)
     */
    private static void transpose16(int[] rows, int off, int stride, int[] lanes, int d) {
        IntVector r0 = IntVector.fromArray(I, rows, off), r1 = IntVector.fromArray(I, rows, off + stride),
                r2 = IntVector.fromArray(I, rows, off + 2 * stride), r3 = IntVector.fromArray(I, rows, off + 3 * stride),
                r4 = IntVector.fromArray(I, rows, off + 4 * stride), r5 = IntVector.fromArray(I, rows, off + 5 * stride),
                r6 = IntVector.fromArray(I, rows, off + 6 * stride), r7 = IntVector.fromArray(I, rows, off + 7 * stride),
                r8 = IntVector.fromArray(I, rows, off + 8 * stride), r9 = IntVector.fromArray(I, rows, off + 9 * stride),
                r10 = IntVector.fromArray(I, rows, off + 10 * stride), r11 = IntVector.fromArray(I, rows, off + 11 * stride),
                r12 = IntVector.fromArray(I, rows, off + 12 * stride), r13 = IntVector.fromArray(I, rows, off + 13 * stride),
                r14 = IntVector.fromArray(I, rows, off + 14 * stride), r15 = IntVector.fromArray(I, rows, off + 15 * stride);
        IntVector t;
        t = T8L.selectFrom(r0, r8); r8 = T8H.selectFrom(r0, r8); r0 = t;
        t = T8L.selectFrom(r1, r9); r9 = T8H.selectFrom(r1, r9); r1 = t;
        t = T8L.selectFrom(r2, r10); r10 = T8H.selectFrom(r2, r10); r2 = t;
        t = T8L.selectFrom(r3, r11); r11 = T8H.selectFrom(r3, r11); r3 = t;
        t = T8L.selectFrom(r4, r12); r12 = T8H.selectFrom(r4, r12); r4 = t;
        t = T8L.selectFrom(r5, r13); r13 = T8H.selectFrom(r5, r13); r5 = t;
        t = T8L.selectFrom(r6, r14); r14 = T8H.selectFrom(r6, r14); r6 = t;
        t = T8L.selectFrom(r7, r15); r15 = T8H.selectFrom(r7, r15); r7 = t;
        t = T4L.selectFrom(r0, r4); r4 = T4H.selectFrom(r0, r4); r0 = t;
        t = T4L.selectFrom(r1, r5); r5 = T4H.selectFrom(r1, r5); r1 = t;
        t = T4L.selectFrom(r2, r6); r6 = T4H.selectFrom(r2, r6); r2 = t;
        t = T4L.selectFrom(r3, r7); r7 = T4H.selectFrom(r3, r7); r3 = t;
        t = T4L.selectFrom(r8, r12); r12 = T4H.selectFrom(r8, r12); r8 = t;
        t = T4L.selectFrom(r9, r13); r13 = T4H.selectFrom(r9, r13); r9 = t;
        t = T4L.selectFrom(r10, r14); r14 = T4H.selectFrom(r10, r14); r10 = t;
        t = T4L.selectFrom(r11, r15); r15 = T4H.selectFrom(r11, r15); r11 = t;
        t = T2L.selectFrom(r0, r2); r2 = T2H.selectFrom(r0, r2); r0 = t;
        t = T2L.selectFrom(r1, r3); r3 = T2H.selectFrom(r1, r3); r1 = t;
        t = T2L.selectFrom(r4, r6); r6 = T2H.selectFrom(r4, r6); r4 = t;
        t = T2L.selectFrom(r5, r7); r7 = T2H.selectFrom(r5, r7); r5 = t;
        t = T2L.selectFrom(r8, r10); r10 = T2H.selectFrom(r8, r10); r8 = t;
        t = T2L.selectFrom(r9, r11); r11 = T2H.selectFrom(r9, r11); r9 = t;
        t = T2L.selectFrom(r12, r14); r14 = T2H.selectFrom(r12, r14); r12 = t;
        t = T2L.selectFrom(r13, r15); r15 = T2H.selectFrom(r13, r15); r13 = t;
        t = T1L.selectFrom(r0, r1); r1 = T1H.selectFrom(r0, r1); r0 = t;
        t = T1L.selectFrom(r2, r3); r3 = T1H.selectFrom(r2, r3); r2 = t;
        t = T1L.selectFrom(r4, r5); r5 = T1H.selectFrom(r4, r5); r4 = t;
        t = T1L.selectFrom(r6, r7); r7 = T1H.selectFrom(r6, r7); r6 = t;
        t = T1L.selectFrom(r8, r9); r9 = T1H.selectFrom(r8, r9); r8 = t;
        t = T1L.selectFrom(r10, r11); r11 = T1H.selectFrom(r10, r11); r10 = t;
        t = T1L.selectFrom(r12, r13); r13 = T1H.selectFrom(r12, r13); r12 = t;
        t = T1L.selectFrom(r14, r15); r15 = T1H.selectFrom(r14, r15); r14 = t;
        r0.intoArray(lanes, d); r1.intoArray(lanes, d + NR); r2.intoArray(lanes, d + 2 * NR); r3.intoArray(lanes, d + 3 * NR);
        r4.intoArray(lanes, d + 4 * NR); r5.intoArray(lanes, d + 5 * NR); r6.intoArray(lanes, d + 6 * NR); r7.intoArray(lanes, d + 7 * NR);
        r8.intoArray(lanes, d + 8 * NR); r9.intoArray(lanes, d + 9 * NR); r10.intoArray(lanes, d + 10 * NR); r11.intoArray(lanes, d + 11 * NR);
        r12.intoArray(lanes, d + 12 * NR); r13.intoArray(lanes, d + 13 * NR); r14.intoArray(lanes, d + 14 * NR); r15.intoArray(lanes, d + 15 * NR);
    }

    /** F32, L = 16: as {@link #transpose16}, the lanes stored as floats straight into the panel */
    private static void transpose16f(int[] rows, int off, int stride, float[] dst, int d) {
        IntVector r0 = IntVector.fromArray(I, rows, off), r1 = IntVector.fromArray(I, rows, off + stride),
                r2 = IntVector.fromArray(I, rows, off + 2 * stride), r3 = IntVector.fromArray(I, rows, off + 3 * stride),
                r4 = IntVector.fromArray(I, rows, off + 4 * stride), r5 = IntVector.fromArray(I, rows, off + 5 * stride),
                r6 = IntVector.fromArray(I, rows, off + 6 * stride), r7 = IntVector.fromArray(I, rows, off + 7 * stride),
                r8 = IntVector.fromArray(I, rows, off + 8 * stride), r9 = IntVector.fromArray(I, rows, off + 9 * stride),
                r10 = IntVector.fromArray(I, rows, off + 10 * stride), r11 = IntVector.fromArray(I, rows, off + 11 * stride),
                r12 = IntVector.fromArray(I, rows, off + 12 * stride), r13 = IntVector.fromArray(I, rows, off + 13 * stride),
                r14 = IntVector.fromArray(I, rows, off + 14 * stride), r15 = IntVector.fromArray(I, rows, off + 15 * stride);
        IntVector t;
        t = T8L.selectFrom(r0, r8); r8 = T8H.selectFrom(r0, r8); r0 = t;
        t = T8L.selectFrom(r1, r9); r9 = T8H.selectFrom(r1, r9); r1 = t;
        t = T8L.selectFrom(r2, r10); r10 = T8H.selectFrom(r2, r10); r2 = t;
        t = T8L.selectFrom(r3, r11); r11 = T8H.selectFrom(r3, r11); r3 = t;
        t = T8L.selectFrom(r4, r12); r12 = T8H.selectFrom(r4, r12); r4 = t;
        t = T8L.selectFrom(r5, r13); r13 = T8H.selectFrom(r5, r13); r5 = t;
        t = T8L.selectFrom(r6, r14); r14 = T8H.selectFrom(r6, r14); r6 = t;
        t = T8L.selectFrom(r7, r15); r15 = T8H.selectFrom(r7, r15); r7 = t;
        t = T4L.selectFrom(r0, r4); r4 = T4H.selectFrom(r0, r4); r0 = t;
        t = T4L.selectFrom(r1, r5); r5 = T4H.selectFrom(r1, r5); r1 = t;
        t = T4L.selectFrom(r2, r6); r6 = T4H.selectFrom(r2, r6); r2 = t;
        t = T4L.selectFrom(r3, r7); r7 = T4H.selectFrom(r3, r7); r3 = t;
        t = T4L.selectFrom(r8, r12); r12 = T4H.selectFrom(r8, r12); r8 = t;
        t = T4L.selectFrom(r9, r13); r13 = T4H.selectFrom(r9, r13); r9 = t;
        t = T4L.selectFrom(r10, r14); r14 = T4H.selectFrom(r10, r14); r10 = t;
        t = T4L.selectFrom(r11, r15); r15 = T4H.selectFrom(r11, r15); r11 = t;
        t = T2L.selectFrom(r0, r2); r2 = T2H.selectFrom(r0, r2); r0 = t;
        t = T2L.selectFrom(r1, r3); r3 = T2H.selectFrom(r1, r3); r1 = t;
        t = T2L.selectFrom(r4, r6); r6 = T2H.selectFrom(r4, r6); r4 = t;
        t = T2L.selectFrom(r5, r7); r7 = T2H.selectFrom(r5, r7); r5 = t;
        t = T2L.selectFrom(r8, r10); r10 = T2H.selectFrom(r8, r10); r8 = t;
        t = T2L.selectFrom(r9, r11); r11 = T2H.selectFrom(r9, r11); r9 = t;
        t = T2L.selectFrom(r12, r14); r14 = T2H.selectFrom(r12, r14); r12 = t;
        t = T2L.selectFrom(r13, r15); r15 = T2H.selectFrom(r13, r15); r13 = t;
        t = T1L.selectFrom(r0, r1); r1 = T1H.selectFrom(r0, r1); r0 = t;
        t = T1L.selectFrom(r2, r3); r3 = T1H.selectFrom(r2, r3); r2 = t;
        t = T1L.selectFrom(r4, r5); r5 = T1H.selectFrom(r4, r5); r4 = t;
        t = T1L.selectFrom(r6, r7); r7 = T1H.selectFrom(r6, r7); r6 = t;
        t = T1L.selectFrom(r8, r9); r9 = T1H.selectFrom(r8, r9); r8 = t;
        t = T1L.selectFrom(r10, r11); r11 = T1H.selectFrom(r10, r11); r10 = t;
        t = T1L.selectFrom(r12, r13); r13 = T1H.selectFrom(r12, r13); r12 = t;
        t = T1L.selectFrom(r14, r15); r15 = T1H.selectFrom(r14, r15); r14 = t;
        r0.reinterpretAsFloats().intoArray(dst, d); r1.reinterpretAsFloats().intoArray(dst, d + NR);
        r2.reinterpretAsFloats().intoArray(dst, d + 2 * NR); r3.reinterpretAsFloats().intoArray(dst, d + 3 * NR);
        r4.reinterpretAsFloats().intoArray(dst, d + 4 * NR); r5.reinterpretAsFloats().intoArray(dst, d + 5 * NR);
        r6.reinterpretAsFloats().intoArray(dst, d + 6 * NR); r7.reinterpretAsFloats().intoArray(dst, d + 7 * NR);
        r8.reinterpretAsFloats().intoArray(dst, d + 8 * NR); r9.reinterpretAsFloats().intoArray(dst, d + 9 * NR);
        r10.reinterpretAsFloats().intoArray(dst, d + 10 * NR); r11.reinterpretAsFloats().intoArray(dst, d + 11 * NR);
        r12.reinterpretAsFloats().intoArray(dst, d + 12 * NR); r13.reinterpretAsFloats().intoArray(dst, d + 13 * NR);
        r14.reinterpretAsFloats().intoArray(dst, d + 14 * NR); r15.reinterpretAsFloats().intoArray(dst, d + 15 * NR);
    }

    /** L = 8: as {@link #transpose16} for 8 rows */
    private static void transpose8(int[] rows, int off, int stride, int[] lanes, int d) {
        IntVector r0 = IntVector.fromArray(I, rows, off), r1 = IntVector.fromArray(I, rows, off + stride),
                r2 = IntVector.fromArray(I, rows, off + 2 * stride), r3 = IntVector.fromArray(I, rows, off + 3 * stride),
                r4 = IntVector.fromArray(I, rows, off + 4 * stride), r5 = IntVector.fromArray(I, rows, off + 5 * stride),
                r6 = IntVector.fromArray(I, rows, off + 6 * stride), r7 = IntVector.fromArray(I, rows, off + 7 * stride);
        IntVector t;
        t = T4L.selectFrom(r0, r4); r4 = T4H.selectFrom(r0, r4); r0 = t;
        t = T4L.selectFrom(r1, r5); r5 = T4H.selectFrom(r1, r5); r1 = t;
        t = T4L.selectFrom(r2, r6); r6 = T4H.selectFrom(r2, r6); r2 = t;
        t = T4L.selectFrom(r3, r7); r7 = T4H.selectFrom(r3, r7); r3 = t;
        t = T2L.selectFrom(r0, r2); r2 = T2H.selectFrom(r0, r2); r0 = t;
        t = T2L.selectFrom(r1, r3); r3 = T2H.selectFrom(r1, r3); r1 = t;
        t = T2L.selectFrom(r4, r6); r6 = T2H.selectFrom(r4, r6); r4 = t;
        t = T2L.selectFrom(r5, r7); r7 = T2H.selectFrom(r5, r7); r5 = t;
        t = T1L.selectFrom(r0, r1); r1 = T1H.selectFrom(r0, r1); r0 = t;
        t = T1L.selectFrom(r2, r3); r3 = T1H.selectFrom(r2, r3); r2 = t;
        t = T1L.selectFrom(r4, r5); r5 = T1H.selectFrom(r4, r5); r4 = t;
        t = T1L.selectFrom(r6, r7); r7 = T1H.selectFrom(r6, r7); r6 = t;
        r0.intoArray(lanes, d); r1.intoArray(lanes, d + NR); r2.intoArray(lanes, d + 2 * NR); r3.intoArray(lanes, d + 3 * NR);
        r4.intoArray(lanes, d + 4 * NR); r5.intoArray(lanes, d + 5 * NR); r6.intoArray(lanes, d + 6 * NR); r7.intoArray(lanes, d + 7 * NR);
    }

    /** {@link #gemmTile}'s lda for an x that comes packed in row panels (k, MR), as {@link #packDepthMajor} makes them */
    static final int PACKED = 0;

    /**
     * out[r0 + m0 .. r0 + m1, c0 + n0 .. c0 + n1) = x · wᵀ, m0..m1 and n0..n1 counted from r0, c0 (n0 a multiple of NR;
     * m0 a multiple of MR where x is packed). w comes either packed whole (wPacked: column panels (k, NR)), or as the
     * tensor w, whose panels are packed here one depth block (KC) of up to TILE_PANELS panels at a time, just before
     * the rows of x run against them in blocks of MC rows: from w (n, k) by {@link #packPanel}, or, {@code wByDepth}, from w (k, ≥ n) whose rows are the depth
     * (dx = dOut · w) by {@link #packDepthPanel}. x is either packed in row panels ({@code lda == PACKED}) or read in place: row i (from r0) at
     * a[aBase + i·lda ..] (row-major, lda ≥ k), or, with a row map, at a[rowMap[r0 + i]·lda ..] (aBase unused).
     * {@code accumulateInto}: out += instead. All layouts sum every output element in the same order (depth blocks of
     * KC in order, each summed by the micro-kernel from zero, then added to out), so they give the same bits.
     */
    static void gemmTile(float[] out, int n, int r0, int c0, float[] a, int aBase, int lda, int[] rowMap, float[] wPacked, Tensor w,
                                 boolean wByDepth, int k, int m0, int m1, int n0, int n1, boolean accumulateInto) {
        float[] tile = new float[MR * NR];
        float[] panels = w == null ? wPacked : scratch(2, Math.min(k, KC) * NR * TILE_PANELS);
        for (int k0 = 0; k0 < k; k0 += KC) { // a block of MC rows of x over one depth block stays in L2 for the tile's panels
            int kc = Math.min(KC, k - k0);
            boolean accumulate = accumulateInto || k0 > 0;
            for (int chunk0 = n0; chunk0 < n1; chunk0 += TILE_PANELS * NR) {
                int chunk1 = Math.min(n1, chunk0 + TILE_PANELS * NR);
                if (w != null)  // this depth block of up to TILE_PANELS panels, packed once for every row block
                    for (int col0 = chunk0, p = 0; col0 < chunk1; col0 += NR, p += kc * NR) {
                        if (wByDepth) packDepthPanel(w, c0 + col0, Math.min(NR, chunk1 - col0), k0, kc, panels, p);
                        else packPanel(w, k, c0 + col0, Math.min(NR, chunk1 - col0), k0, kc, panels, p);
                    }
                for (int ib = m0; ib < m1; ib += MC) {
                    int ie = Math.min(m1, ib + MC);
                    for (int col0 = chunk0; col0 < chunk1; col0 += NR) { // one panel (kc × NR) stays in L1 while the block's rows pass
                        int cols = Math.min(NR, chunk1 - col0);
                        int pOff = w == null ? ((col0 / NR) * k + k0) * NR : (col0 - chunk0) / NR * kc * NR;
                        for (int i0 = ib; i0 < ie; i0 += MR) {
                            int rows = Math.min(MR, ie - i0);
                            if (lda == PACKED) {
                                int aOff = ((i0 / MR) * k + k0) * MR;
                                if (MR == 12) microKernel12(a, aOff, kc, panels, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                                else microKernel6(a, aOff, kc, panels, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                            } else {
                                int aOff = rowMap == null ? aBase + i0 * lda + k0 : k0;
                                if (MR == 12) microKernel12Rows(a, rowMap, r0 + i0, aOff, lda, kc, panels, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                                else microKernel6Rows(a, rowMap, r0 + i0, aOff, lda, kc, panels, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * out[i0..i0+rows, col0..col0+cols) (+)= x[i0..i0+rows, k0..k0+kc) · panel, where the panel is (kc, NR)
     * k-major, and x rows come packed (k, MR): 6 rows × 2 vectors of accumulators, one broadcast of x[m, k] per row and two loads of
     * the panel per k. Missing rows and columns are zeros in the packed operands (their results are
     * dropped). Whole tiles go from the accumulators straight to out; partial ones through {@code tile} (MR, NR).
     */
    private static void microKernel6(float[] xPacked, int aOff, int kc, float[] packed, int pOff,
                                    float[] out, int n, int i0, int rows, int col0, int cols, boolean accumulate, float[] tile) {
        FloatVector c00 = FloatVector.zero(F), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
        for (int kk = 0; kk < kc; kk++) {
            int b = pOff + kk * NR, ax = aOff + kk * MR;
            FloatVector b0 = FloatVector.fromArray(F, packed, b);
            FloatVector b1 = FloatVector.fromArray(F, packed, b + L);
            FloatVector a;
            a = FloatVector.broadcast(F, xPacked[ax + 0]); c00 = a.fma(b0, c00); c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(F, xPacked[ax + 1]); c10 = a.fma(b0, c10); c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(F, xPacked[ax + 2]); c20 = a.fma(b0, c20); c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(F, xPacked[ax + 3]); c30 = a.fma(b0, c30); c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(F, xPacked[ax + 4]); c40 = a.fma(b0, c40); c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(F, xPacked[ax + 5]); c50 = a.fma(b0, c50); c51 = a.fma(b1, c51);
        }
        if (rows == MR && cols == NR) {
            int o = i0 * n + col0;
            if (accumulate) { c00 = c00.add(FloatVector.fromArray(F, out, o)); c01 = c01.add(FloatVector.fromArray(F, out, o + L)); }
            c00.intoArray(out, o); c01.intoArray(out, o + L); o += n;
            if (accumulate) { c10 = c10.add(FloatVector.fromArray(F, out, o)); c11 = c11.add(FloatVector.fromArray(F, out, o + L)); }
            c10.intoArray(out, o); c11.intoArray(out, o + L); o += n;
            if (accumulate) { c20 = c20.add(FloatVector.fromArray(F, out, o)); c21 = c21.add(FloatVector.fromArray(F, out, o + L)); }
            c20.intoArray(out, o); c21.intoArray(out, o + L); o += n;
            if (accumulate) { c30 = c30.add(FloatVector.fromArray(F, out, o)); c31 = c31.add(FloatVector.fromArray(F, out, o + L)); }
            c30.intoArray(out, o); c31.intoArray(out, o + L); o += n;
            if (accumulate) { c40 = c40.add(FloatVector.fromArray(F, out, o)); c41 = c41.add(FloatVector.fromArray(F, out, o + L)); }
            c40.intoArray(out, o); c41.intoArray(out, o + L); o += n;
            if (accumulate) { c50 = c50.add(FloatVector.fromArray(F, out, o)); c51 = c51.add(FloatVector.fromArray(F, out, o + L)); }
            c50.intoArray(out, o); c51.intoArray(out, o + L);
            return;
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + L);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + L);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + L);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + L);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + L);
        flushTile(tile, out, n, i0, rows, col0, cols, accumulate);
    }

    /**
     * out[i0..i0+rows, col0..col0+cols) (+)= x[i0..i0+rows, k0..k0+kc) · panel, where the panel is (kc, NR)
     * k-major, and x rows come packed (k, MR): 12 rows × 2 vectors of accumulators, one broadcast of x[m, k] per row and two loads of
     * the panel per k. Missing rows and columns are zeros in the packed operands (their results are
     * dropped). Whole tiles go from the accumulators straight to out; partial ones through {@code tile} (MR, NR).
     */
    private static void microKernel12(float[] xPacked, int aOff, int kc, float[] packed, int pOff,
                                    float[] out, int n, int i0, int rows, int col0, int cols, boolean accumulate, float[] tile) {
        FloatVector c00 = FloatVector.zero(F), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
        for (int kk = 0; kk < kc; kk++) {
            int b = pOff + kk * NR, ax = aOff + kk * MR;
            FloatVector b0 = FloatVector.fromArray(F, packed, b);
            FloatVector b1 = FloatVector.fromArray(F, packed, b + L);
            FloatVector a;
            a = FloatVector.broadcast(F, xPacked[ax + 0]); c00 = a.fma(b0, c00); c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(F, xPacked[ax + 1]); c10 = a.fma(b0, c10); c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(F, xPacked[ax + 2]); c20 = a.fma(b0, c20); c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(F, xPacked[ax + 3]); c30 = a.fma(b0, c30); c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(F, xPacked[ax + 4]); c40 = a.fma(b0, c40); c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(F, xPacked[ax + 5]); c50 = a.fma(b0, c50); c51 = a.fma(b1, c51);
            a = FloatVector.broadcast(F, xPacked[ax + 6]); c60 = a.fma(b0, c60); c61 = a.fma(b1, c61);
            a = FloatVector.broadcast(F, xPacked[ax + 7]); c70 = a.fma(b0, c70); c71 = a.fma(b1, c71);
            a = FloatVector.broadcast(F, xPacked[ax + 8]); c80 = a.fma(b0, c80); c81 = a.fma(b1, c81);
            a = FloatVector.broadcast(F, xPacked[ax + 9]); c90 = a.fma(b0, c90); c91 = a.fma(b1, c91);
            a = FloatVector.broadcast(F, xPacked[ax + 10]); c100 = a.fma(b0, c100); c101 = a.fma(b1, c101);
            a = FloatVector.broadcast(F, xPacked[ax + 11]); c110 = a.fma(b0, c110); c111 = a.fma(b1, c111);
        }
        if (rows == MR && cols == NR) {
            int o = i0 * n + col0;
            if (accumulate) { c00 = c00.add(FloatVector.fromArray(F, out, o)); c01 = c01.add(FloatVector.fromArray(F, out, o + L)); }
            c00.intoArray(out, o); c01.intoArray(out, o + L); o += n;
            if (accumulate) { c10 = c10.add(FloatVector.fromArray(F, out, o)); c11 = c11.add(FloatVector.fromArray(F, out, o + L)); }
            c10.intoArray(out, o); c11.intoArray(out, o + L); o += n;
            if (accumulate) { c20 = c20.add(FloatVector.fromArray(F, out, o)); c21 = c21.add(FloatVector.fromArray(F, out, o + L)); }
            c20.intoArray(out, o); c21.intoArray(out, o + L); o += n;
            if (accumulate) { c30 = c30.add(FloatVector.fromArray(F, out, o)); c31 = c31.add(FloatVector.fromArray(F, out, o + L)); }
            c30.intoArray(out, o); c31.intoArray(out, o + L); o += n;
            if (accumulate) { c40 = c40.add(FloatVector.fromArray(F, out, o)); c41 = c41.add(FloatVector.fromArray(F, out, o + L)); }
            c40.intoArray(out, o); c41.intoArray(out, o + L); o += n;
            if (accumulate) { c50 = c50.add(FloatVector.fromArray(F, out, o)); c51 = c51.add(FloatVector.fromArray(F, out, o + L)); }
            c50.intoArray(out, o); c51.intoArray(out, o + L); o += n;
            if (accumulate) { c60 = c60.add(FloatVector.fromArray(F, out, o)); c61 = c61.add(FloatVector.fromArray(F, out, o + L)); }
            c60.intoArray(out, o); c61.intoArray(out, o + L); o += n;
            if (accumulate) { c70 = c70.add(FloatVector.fromArray(F, out, o)); c71 = c71.add(FloatVector.fromArray(F, out, o + L)); }
            c70.intoArray(out, o); c71.intoArray(out, o + L); o += n;
            if (accumulate) { c80 = c80.add(FloatVector.fromArray(F, out, o)); c81 = c81.add(FloatVector.fromArray(F, out, o + L)); }
            c80.intoArray(out, o); c81.intoArray(out, o + L); o += n;
            if (accumulate) { c90 = c90.add(FloatVector.fromArray(F, out, o)); c91 = c91.add(FloatVector.fromArray(F, out, o + L)); }
            c90.intoArray(out, o); c91.intoArray(out, o + L); o += n;
            if (accumulate) { c100 = c100.add(FloatVector.fromArray(F, out, o)); c101 = c101.add(FloatVector.fromArray(F, out, o + L)); }
            c100.intoArray(out, o); c101.intoArray(out, o + L); o += n;
            if (accumulate) { c110 = c110.add(FloatVector.fromArray(F, out, o)); c111 = c111.add(FloatVector.fromArray(F, out, o + L)); }
            c110.intoArray(out, o); c111.intoArray(out, o + L);
            return;
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + L);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + L);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + L);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + L);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + L);
        c60.intoArray(tile, 6 * NR); c61.intoArray(tile, 6 * NR + L);
        c70.intoArray(tile, 7 * NR); c71.intoArray(tile, 7 * NR + L);
        c80.intoArray(tile, 8 * NR); c81.intoArray(tile, 8 * NR + L);
        c90.intoArray(tile, 9 * NR); c91.intoArray(tile, 9 * NR + L);
        c100.intoArray(tile, 10 * NR); c101.intoArray(tile, 10 * NR + L);
        c110.intoArray(tile, 11 * NR); c111.intoArray(tile, 11 * NR + L);
        flushTile(tile, out, n, i0, rows, col0, cols, accumulate);
    }

    /**
     * As {@link #microKernel6}, with x's rows read in place (row r at x[aOff + r·lda ..], so no packing): the
     * broadcasts walk 6 row streams along k. Rows past {@code rows} repeat the last row (their results are dropped).
     */
    private static void microKernel6Rows(float[] x, int[] rowMap, int mapRow0, int aOff, int lda, int kc, float[] packed, int pOff,
                                    float[] out, int n, int i0, int rows, int col0, int cols, boolean accumulate, float[] tile) {
        FloatVector c00 = FloatVector.zero(F), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
        int last = rows - 1;
        int a0 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(0, last));
        int a1 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(1, last));
        int a2 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(2, last));
        int a3 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(3, last));
        int a4 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(4, last));
        int a5 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(5, last));
        for (int kk = 0; kk < kc; kk++) {
            int b = pOff + kk * NR;
            FloatVector b0 = FloatVector.fromArray(F, packed, b);
            FloatVector b1 = FloatVector.fromArray(F, packed, b + L);
            FloatVector a;
            a = FloatVector.broadcast(F, x[a0 + kk]); c00 = a.fma(b0, c00); c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(F, x[a1 + kk]); c10 = a.fma(b0, c10); c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(F, x[a2 + kk]); c20 = a.fma(b0, c20); c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(F, x[a3 + kk]); c30 = a.fma(b0, c30); c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(F, x[a4 + kk]); c40 = a.fma(b0, c40); c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(F, x[a5 + kk]); c50 = a.fma(b0, c50); c51 = a.fma(b1, c51);
        }
        if (rows == MR && cols == NR) {
            int o = i0 * n + col0;
            if (accumulate) { c00 = c00.add(FloatVector.fromArray(F, out, o)); c01 = c01.add(FloatVector.fromArray(F, out, o + L)); }
            c00.intoArray(out, o); c01.intoArray(out, o + L); o += n;
            if (accumulate) { c10 = c10.add(FloatVector.fromArray(F, out, o)); c11 = c11.add(FloatVector.fromArray(F, out, o + L)); }
            c10.intoArray(out, o); c11.intoArray(out, o + L); o += n;
            if (accumulate) { c20 = c20.add(FloatVector.fromArray(F, out, o)); c21 = c21.add(FloatVector.fromArray(F, out, o + L)); }
            c20.intoArray(out, o); c21.intoArray(out, o + L); o += n;
            if (accumulate) { c30 = c30.add(FloatVector.fromArray(F, out, o)); c31 = c31.add(FloatVector.fromArray(F, out, o + L)); }
            c30.intoArray(out, o); c31.intoArray(out, o + L); o += n;
            if (accumulate) { c40 = c40.add(FloatVector.fromArray(F, out, o)); c41 = c41.add(FloatVector.fromArray(F, out, o + L)); }
            c40.intoArray(out, o); c41.intoArray(out, o + L); o += n;
            if (accumulate) { c50 = c50.add(FloatVector.fromArray(F, out, o)); c51 = c51.add(FloatVector.fromArray(F, out, o + L)); }
            c50.intoArray(out, o); c51.intoArray(out, o + L);
            return;
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + L);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + L);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + L);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + L);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + L);
        flushTile(tile, out, n, i0, rows, col0, cols, accumulate);
    }

    /**
     * As {@link #microKernel12}, with x's rows read in place (row r at x[aOff + r·lda ..], or through a row map at
     * x[rowMap[mapRow0 + r]·lda + aOff ..], so no packing and no gather): the broadcasts walk 12 row streams along k.
     * Rows past {@code rows} repeat the last row (their results are dropped).
     */
    private static void microKernel12Rows(float[] x, int[] rowMap, int mapRow0, int aOff, int lda, int kc, float[] packed, int pOff,
                                    float[] out, int n, int i0, int rows, int col0, int cols, boolean accumulate, float[] tile) {
        FloatVector c00 = FloatVector.zero(F), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
        int last = rows - 1;
        int a0 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(0, last));
        int a1 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(1, last));
        int a2 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(2, last));
        int a3 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(3, last));
        int a4 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(4, last));
        int a5 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(5, last));
        int a6 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(6, last));
        int a7 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(7, last));
        int a8 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(8, last));
        int a9 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(9, last));
        int a10 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(10, last));
        int a11 = rowStart(rowMap, mapRow0, aOff, lda, Math.min(11, last));
        for (int kk = 0; kk < kc; kk++) {
            int b = pOff + kk * NR;
            FloatVector b0 = FloatVector.fromArray(F, packed, b);
            FloatVector b1 = FloatVector.fromArray(F, packed, b + L);
            FloatVector a;
            a = FloatVector.broadcast(F, x[a0 + kk]); c00 = a.fma(b0, c00); c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(F, x[a1 + kk]); c10 = a.fma(b0, c10); c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(F, x[a2 + kk]); c20 = a.fma(b0, c20); c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(F, x[a3 + kk]); c30 = a.fma(b0, c30); c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(F, x[a4 + kk]); c40 = a.fma(b0, c40); c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(F, x[a5 + kk]); c50 = a.fma(b0, c50); c51 = a.fma(b1, c51);
            a = FloatVector.broadcast(F, x[a6 + kk]); c60 = a.fma(b0, c60); c61 = a.fma(b1, c61);
            a = FloatVector.broadcast(F, x[a7 + kk]); c70 = a.fma(b0, c70); c71 = a.fma(b1, c71);
            a = FloatVector.broadcast(F, x[a8 + kk]); c80 = a.fma(b0, c80); c81 = a.fma(b1, c81);
            a = FloatVector.broadcast(F, x[a9 + kk]); c90 = a.fma(b0, c90); c91 = a.fma(b1, c91);
            a = FloatVector.broadcast(F, x[a10 + kk]); c100 = a.fma(b0, c100); c101 = a.fma(b1, c101);
            a = FloatVector.broadcast(F, x[a11 + kk]); c110 = a.fma(b0, c110); c111 = a.fma(b1, c111);
        }
        if (rows == MR && cols == NR) {
            int o = i0 * n + col0;
            if (accumulate) { c00 = c00.add(FloatVector.fromArray(F, out, o)); c01 = c01.add(FloatVector.fromArray(F, out, o + L)); }
            c00.intoArray(out, o); c01.intoArray(out, o + L); o += n;
            if (accumulate) { c10 = c10.add(FloatVector.fromArray(F, out, o)); c11 = c11.add(FloatVector.fromArray(F, out, o + L)); }
            c10.intoArray(out, o); c11.intoArray(out, o + L); o += n;
            if (accumulate) { c20 = c20.add(FloatVector.fromArray(F, out, o)); c21 = c21.add(FloatVector.fromArray(F, out, o + L)); }
            c20.intoArray(out, o); c21.intoArray(out, o + L); o += n;
            if (accumulate) { c30 = c30.add(FloatVector.fromArray(F, out, o)); c31 = c31.add(FloatVector.fromArray(F, out, o + L)); }
            c30.intoArray(out, o); c31.intoArray(out, o + L); o += n;
            if (accumulate) { c40 = c40.add(FloatVector.fromArray(F, out, o)); c41 = c41.add(FloatVector.fromArray(F, out, o + L)); }
            c40.intoArray(out, o); c41.intoArray(out, o + L); o += n;
            if (accumulate) { c50 = c50.add(FloatVector.fromArray(F, out, o)); c51 = c51.add(FloatVector.fromArray(F, out, o + L)); }
            c50.intoArray(out, o); c51.intoArray(out, o + L); o += n;
            if (accumulate) { c60 = c60.add(FloatVector.fromArray(F, out, o)); c61 = c61.add(FloatVector.fromArray(F, out, o + L)); }
            c60.intoArray(out, o); c61.intoArray(out, o + L); o += n;
            if (accumulate) { c70 = c70.add(FloatVector.fromArray(F, out, o)); c71 = c71.add(FloatVector.fromArray(F, out, o + L)); }
            c70.intoArray(out, o); c71.intoArray(out, o + L); o += n;
            if (accumulate) { c80 = c80.add(FloatVector.fromArray(F, out, o)); c81 = c81.add(FloatVector.fromArray(F, out, o + L)); }
            c80.intoArray(out, o); c81.intoArray(out, o + L); o += n;
            if (accumulate) { c90 = c90.add(FloatVector.fromArray(F, out, o)); c91 = c91.add(FloatVector.fromArray(F, out, o + L)); }
            c90.intoArray(out, o); c91.intoArray(out, o + L); o += n;
            if (accumulate) { c100 = c100.add(FloatVector.fromArray(F, out, o)); c101 = c101.add(FloatVector.fromArray(F, out, o + L)); }
            c100.intoArray(out, o); c101.intoArray(out, o + L); o += n;
            if (accumulate) { c110 = c110.add(FloatVector.fromArray(F, out, o)); c111 = c111.add(FloatVector.fromArray(F, out, o + L)); }
            c110.intoArray(out, o); c111.intoArray(out, o + L);
            return;
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + L);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + L);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + L);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + L);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + L);
        c60.intoArray(tile, 6 * NR); c61.intoArray(tile, 6 * NR + L);
        c70.intoArray(tile, 7 * NR); c71.intoArray(tile, 7 * NR + L);
        c80.intoArray(tile, 8 * NR); c81.intoArray(tile, 8 * NR + L);
        c90.intoArray(tile, 9 * NR); c91.intoArray(tile, 9 * NR + L);
        c100.intoArray(tile, 10 * NR); c101.intoArray(tile, 10 * NR + L);
        c110.intoArray(tile, 11 * NR); c111.intoArray(tile, 11 * NR + L);
        flushTile(tile, out, n, i0, rows, col0, cols, accumulate);
    }

    /** where row r of a row-major x block starts: aOff + r·lda, or through the row map (aOff = the depth offset) */
    private static int rowStart(int[] rowMap, int mapRow0, int aOff, int lda, int r) {
        return rowMap == null ? aOff + r * lda : rowMap[mapRow0 + r] * lda + aOff;
    }

    /** out[i0 + r, col0 + c] (+)= tile[r, c] for r &lt; rows, c &lt; cols (kept out of the kernels so C2 inlines them whole) */
    private static void flushTile(float[] tile, float[] out, int n, int i0, int rows, int col0, int cols, boolean accumulate) {
        for (int r = 0; r < rows; r++) {
            int o = (i0 + r) * n + col0, t = r * NR, c = 0;
            if (cols == NR) {
                for (; c < NR; c += L) {
                    FloatVector v = FloatVector.fromArray(F, tile, t + c);
                    if (accumulate) v = v.add(FloatVector.fromArray(F, out, o + c));
                    v.intoArray(out, o + c);
                }
            } else {
                for (; c < cols; c++) out[o + c] = accumulate ? out[o + c] + tile[t + c] : tile[t + c];
            }
        }
    }

    // ---------------------------------------------------------------- backward passes

    /**
     * dx (M, K) = dOut (M, N) · w (N, K): the GEMM with dOut's rows read in place (depth N), w widened and packed per
     * panel inside each task as {@link #gemm} does (row n of w is depth n of every output column, so a KC × NR panel is
     * KC contiguous row slices of w: {@link #packDepthPanel}); no packed copy of w outlives the panel. Tiles as gemm's.
     */
    static void matmulBackwardInput(Workers workers, float[] dx, float[] dOut, int m, Tensor w) {
        checkWeight(w);
        int n = w.rows(), k = w.cols();
        if ((long) m * n > dOut.length) throw new IllegalArgumentException("matmulBackwardInput with '" + w.name() + "': dOut has " + dOut.length + " floats, expected ≥ m·N = " + m + "·" + n);
        if ((long) m * k > dx.length) throw new IllegalArgumentException("matmulBackwardInput with '" + w.name() + "': dx has " + dx.length + " floats, expected ≥ m·K = " + m + "·" + k);
        if (n == 0) {
            Arrays.fill(dx, 0, m * k, 0f);
            return;
        }
        boolean parallel = (long) m * n * k >= PARALLEL_MIN_FMAS;
        // tiles as gemm's with per-panel packing: narrower column tiles before cutting rows (which would pack the
        // panels again per row tile)
        int nc = Math.clamp((k + NR - 1) / NR / 8, 1, 4) * NR;
        int nTiles = (k + nc - 1) / nc;
        int mTiles = nTiles >= 8 ? 1 : Math.min((8 + nTiles - 1) / nTiles, (m + MR - 1) / MR);
        int mc = roundUp((m + mTiles - 1) / mTiles, MR);
        int mTilesFinal = (m + mc - 1) / mc;
        workers.parallelFor(nTiles * mTilesFinal, parallel, t -> {
            int nt = t % nTiles, mt = t / nTiles;
            gemmTile(dx, k, 0, 0, dOut, 0, n, null, null, w, true, n, mt * mc, Math.min(m, mt * mc + mc), nt * nc, Math.min(k, nt * nc + nc), false);
        });
    }

    /**
     * dw (N, K) += dOut (M, N)ᵀ · x (M, K): the GEMM over depth M with both operands packed from their rows
     * (row i of dOut holds depth i of every output row, row i of x depth i of every output column).
     */
    static void matmulBackwardWeight(Workers workers, float[] dw, float[] dOut, float[] x, int m, int n, int k) {
        if ((long) m * n > dOut.length || (long) m * k > x.length || (long) n * k > dw.length)
            throw new IllegalArgumentException("matmulBackwardWeight: arrays of " + dOut.length + ", " + x.length + ", " + dw.length
                    + " floats are too small for dOut (" + m + ", " + n + "), x (" + m + ", " + k + "), dw (" + n + ", " + k + ")");
        boolean parallel = (long) m * n * k >= PARALLEL_MIN_FMAS;
        float[] aPacked = packDepthMajor(workers, dOut, n, n, m, MR, scratch(0, (n + MR - 1) / MR * m * MR), parallel);
        float[] bPacked = packDepthMajor(workers, x, k, k, m, NR, scratch(1, packedColumnsSize(k, m)), parallel);
        gemmPacked(workers, dw, k, n, k, m, aPacked, PACKED, bPacked, true, parallel);
    }

    /**
     * src (depth, ld), whose row d holds depth d of {@code count} rows/columns of the product, packed into
     * panels (count / width, depth, width), zeros past the last one
     */
    private static float[] packDepthMajor(Workers workers, float[] src, int ld, int count, int depth, int width, float[] into, boolean parallel) {
        int panels = (count + width - 1) / width;
        workers.parallelFor(panels, parallel, p -> {
            int c0 = p * width, cols = Math.min(width, count - c0);
            // per L-lane piece of the panel row: lanes < the columns left are copied, the rest written as zeros
            for (int d = 0, dst = p * depth * width, s = c0; d < depth; d++, dst += width, s += ld) {
                for (int c = 0; c < width; c += L) {
                    VectorMask<Float> copy = F.indexInRange(c, cols), store = F.indexInRange(c, width);
                    FloatVector v = FloatVector.fromArray(F, src, s + c, copy);
                    if (store.allTrue()) v.intoArray(into, dst + c);
                    else v.intoArray(into, dst + c, store);
                }
            }
        });
        return into;
    }

    /**
     * out (rows, cols) (+)= A · B over depth k, A packed in panels of MR rows ({@code lda == PACKED}) or row-major
     * with row stride lda, B packed in panels of NR columns; in tiles cut by shape only (as {@link #gemm})
     */
    private static void gemmPacked(Workers workers, float[] out, int ldOut, int rows, int cols, int k, float[] a, int lda, float[] bPacked,
                            boolean accumulateInto, boolean parallel) {
        if (k == 0) {
            if (!accumulateInto) for (int r = 0; r < rows; r++) Arrays.fill(out, r * ldOut, r * ldOut + cols, 0f);
            return;
        }
        int nc = 4 * NR;
        int nTiles = (cols + nc - 1) / nc;
        int mTiles = nTiles >= 8 ? 1 : Math.min((8 + nTiles - 1) / nTiles, (rows + MR - 1) / MR);
        int mc = roundUp((rows + mTiles - 1) / mTiles, MR);
        int mTilesFinal = (rows + mc - 1) / mc;
        workers.parallelFor(nTiles * mTilesFinal, parallel, t -> {
            int nt = t % nTiles, mt = t / nTiles;
            gemmTile(out, ldOut, 0, 0, a, 0, lda, null, bPacked, null, false, k, mt * mc, Math.min(rows, mt * mc + mc), nt * nc, Math.min(cols, nt * nc + nc), accumulateInto);
        });
    }

    // ---------------------------------------------------------------- the GEMV of the grouped (MoE) matmuls

    /**
     * GEMV on rows [row0, row0+m) of x and out, in place, tasks over rows of w: a plain matmul's few rows (row0 = 0,
     * native w) and the grouped matmuls' experts with few rows ({@link VectorMoe})
     */
    static void gemvRows(Workers workers, float[] out, float[] x, int row0, int m, Tensor w, int n, int k) {
        int rowsPerTask = 64;
        int tasks = (n + rowsPerTask - 1) / rowsPerTask;
        boolean parallel = parallelGemv(workers, (long) n * k);
        if (!w.data().isNative()) {
            workers.parallelFor(tasks, parallel, t -> {
                int n0 = t * rowsPerTask, n1 = Math.min(n, n0 + rowsPerTask);
                float[] row = new float[k];
                for (int j = n0; j < n1; j++) {
                    widen(w, (long) j * k, row, 0, k);
                    for (int r = row0; r < row0 + m; r++) out[r * n + j] = dotHeap(row, x, r * k, k);
                }
            });
            return;
        }
        int pairedK = w.dtype() == DType.F32 ? 0 : k - k % (2 * L);
        float[][] xEven = new float[m][], xOdd = new float[m][];
        for (int r = 0; r < m && pairedK > 0; r++) {
            xEven[r] = new float[pairedK / 2];
            xOdd[r] = new float[pairedK / 2];
            int xo = (row0 + r) * k;
            for (int j = 0; j < pairedK / 2; j++) {
                int block = j / L, lane = j % L;
                xEven[r][j] = x[xo + block * 2 * L + 2 * lane];
                xOdd[r][j] = x[xo + block * 2 * L + 2 * lane + 1];
            }
        }
        workers.parallelFor(tasks, parallel, t -> {
            int n0 = t * rowsPerTask, n1 = Math.min(n, n0 + rowsPerTask);
            int r = 0;
            if (w.dtype() != DType.F32)  // rows of x in groups of 4 share each load and widening of w (a decode batch)
                for (; r + 4 <= m; r += 4) {
                    int j = n0;
                    for (; j + 2 <= n1; j += 2) gemvHalf2x4(out, n, row0 + r, r, x, k, xEven, xOdd, pairedK, w, j);
                    for (; j < n1; j++)
                        for (int q = r; q < r + 4; q++) out[(row0 + q) * n + j] = dotRow(x, (row0 + q) * k, w, j, k, xEven[q], xOdd[q], pairedK);
                }
            for (; r < m; r++) {
                int xo = (row0 + r) * k, o = (row0 + r) * n;
                int j = n0;
                for (; j + 4 <= n1; j += 4) {
                    if (w.dtype() == DType.F32) gemvF32x4(out, o + j, x, xo, w.data(), j, k);
                    else gemvHalfx4(out, o + j, x, xo, xEven[r], xOdd[r], pairedK, w, j, k);
                }
                for (; j < n1; j++) out[o + j] = dotRow(x, xo, w, j, k, xEven[r], xOdd[r], pairedK);
            }
        });
    }

    /** Σ_i row[i]·x[xo + i] with lanes summed by the fixed tree */
    private static float dotHeap(float[] row, float[] x, int xo, int k) { return dotHeap(row, 0, x, xo, k); }

    /** Σ_i row[ro + i]·x[xo + i] with lanes summed by the fixed tree */
    private static float dotHeap(float[] row, int ro, float[] x, int xo, int k) {
        FloatVector acc = FloatVector.zero(F);
        int upper = k - k % L, i = 0;
        for (; i < upper; i += L) acc = FloatVector.fromArray(F, row, ro + i).fma(FloatVector.fromArray(F, x, xo + i), acc);
        float s = sumLanes(acc);
        for (; i < k; i++) s += row[ro + i] * x[xo + i];
        return s;
    }
}
