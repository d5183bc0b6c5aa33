package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.IntConsumer;

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
 * <p>Threads: system property {@code dive.threads} (default {@link Runtime#availableProcessors()}).
 */
public final class VectorBackend extends CpuBackend {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Integer> I = F.withLanes(int.class);
    /** shorts with as many lanes as F: widened 1:1 by S2I */
    static final VectorSpecies<Short> SH = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /**
     * micro-kernel rows of x: 12 × 2 vectors = 24 accumulators where vectors are 512-bit (AVX-512 has 32
     * registers), 6 × 2 = 12 with 256-bit AVX2 (16 registers)
     */
    static final int MR = L >= 16 ? 12 : 6;
    /** micro-kernel columns of out (= rows of w): two vectors */
    static final int NR = 2 * L;
    /** depth of one packed block of w */
    static final int KC = 256;
    /** below this many rows of x, matmul runs as GEMV per row (packing w costs more than it saves) */
    static final int GEMM_MIN_ROWS = 4;
    /** multiply-adds below which GEMM and attention stay on the calling thread */
    static final long PARALLEL_MIN_FMAS = 1L << 18;
    /**
     * weights below which a GEMV stays on the calling thread: handing work to a pool thread costs a few
     * µs to tens of µs; a 1024 × 256 GEMV takes ~13 µs on one thread here (measured with GemvBenchmark)
     */
    static final long GEMV_PARALLEL_MIN_WEIGHTS = 1L << 19;

    private static final class DefaultPool {
        static final int THREADS = defaultThreads();
        static final ForkJoinPool POOL = new ForkJoinPool(THREADS);
    }

    private final ForkJoinPool pool;
    private final int threads;

    /** the shared pool of {@code dive.threads} threads */
    public VectorBackend() {
        this.threads = DefaultPool.THREADS;
        this.pool = DefaultPool.POOL;
    }

    /** a backend with its own pool of {@code threads} threads (tests, benchmarks) */
    public VectorBackend(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be ≥ 1, got " + threads);
        this.threads = threads;
        this.pool = threads == DefaultPool.THREADS ? DefaultPool.POOL : new ForkJoinPool(threads);
    }

    static int defaultThreads() {
        String p = System.getProperty("dive.threads");
        if (p == null || p.isBlank()) return Runtime.getRuntime().availableProcessors();
        try {
            int t = Integer.parseInt(p.trim());
            if (t < 1) throw new NumberFormatException();
            return t;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("system property dive.threads='" + p + "': expected a positive integer");
        }
    }

    public int threads() { return threads; }

    @Override public String name() { return "vector(" + F.vectorBitSize() + "-bit, " + threads + " threads)"; }

    // ---------------------------------------------------------------- parallel loop

    /**
     * body(i) for i in [0, tasks), returning when all are done. The calling thread works too: it and up to
     * threads−1 pool helpers claim indices from a shared counter, and the caller then waits only for
     * indices a helper has claimed and is running. A helper that wakes up late finds nothing left and
     * returns, so thread wake-up latency never adds to a call, and nested calls cannot deadlock.
     */
    private void parallelFor(int tasks, boolean parallel, IntConsumer body) {
        int helpers = parallel ? Math.min(threads, tasks) - 1 : 0;
        if (helpers <= 0) {
            for (int i = 0; i < tasks; i++) body.accept(i);
            return;
        }
        AtomicInteger next = new AtomicInteger();
        CountDownLatch unfinished = new CountDownLatch(tasks);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Runnable drain = () -> {
            for (int i; (i = next.getAndIncrement()) < tasks; ) {
                try {
                    body.accept(i);
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                } finally {
                    unfinished.countDown();
                }
            }
        };
        for (int h = 0; h < helpers; h++) pool.execute(drain);
        drain.run();
        boolean interrupted = false;
        while (true) {
            try {
                unfinished.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        Throwable t = failure.get();
        if (t instanceof RuntimeException e) throw e;
        if (t instanceof Error e) throw e;
        if (t != null) throw new IllegalStateException(t);
    }

    // ---------------------------------------------------------------- matmul

    @Override
    public void matmul(float[] out, float[] x, int m, Tensor w) {
        checkWeight(w);
        int n = w.rows(), k = w.cols();
        if (m < 1) throw new IllegalArgumentException("matmul with '" + w.name() + "': m = " + m + ", expected ≥ 1");
        if ((long) m * k > x.length) throw new IllegalArgumentException("matmul with '" + w.name() + "': x has " + x.length + " floats, expected ≥ m·K = " + m + "·" + k);
        if ((long) m * n > out.length) throw new IllegalArgumentException("matmul with '" + w.name() + "': out has " + out.length + " floats, expected ≥ m·N = " + m + "·" + n);
        if (m < GEMM_MIN_ROWS) gemv(out, x, m, w, n, k);
        else if (n <= NR / 2) skinny(out, x, m, w, n, k);
        else gemm(out, x, m, w, n, k);
    }

    /**
     * out (m, N) for few output columns (a router: N = experts), where a GEMM would pad N to a whole NR panel:
     * w widened once, then one dot product per output, tasks over rows of x (by shape only)
     */
    private void skinny(float[] out, float[] x, int m, Tensor w, int n, int k) {
        float[] wf = new float[n * k];
        widen(w, 0, wf, 0, n * k);
        int rowsPerTask = 64, tasks = (m + rowsPerTask - 1) / rowsPerTask;
        parallelFor(tasks, (long) m * n * k >= PARALLEL_MIN_FMAS, t -> {
            for (int r = t * rowsPerTask, end = Math.min(m, r + rowsPerTask); r < end; r++)
                for (int j = 0; j < n; j++) out[r * n + j] = dotHeap(wf, j * k, x, r * k, k);
        });
    }

    private static void checkWeight(Tensor w) {
        if (!w.dtype().isFloatWeight()) throw new IllegalArgumentException("weight '" + w.name() + "' is " + w.dtype() + ", expected F32, BF16 or F16");
    }

    // ---- GEMV: out (m, N) for small m, parallel over rows of w

    private void gemv(float[] out, float[] x, int m, Tensor w, int n, int k) {
        int rowsPerTask = 64;
        int tasks = (n + rowsPerTask - 1) / rowsPerTask;
        boolean parallel = (long) n * k >= GEMV_PARALLEL_MIN_WEIGHTS;
        if (!w.data().isNative()) { // heap-backed (Tensor.ofFloats, tests): vector loads from byte[] segments are slow
            parallelFor(tasks, parallel, t -> gemvHeapRows(out, x, m, w, n, k, t * rowsPerTask, Math.min(n, t * rowsPerTask + rowsPerTask)));
            return;
        }
        // BF16/F16: x split into even/odd elements per block of 2L (matches the int-lane layout of w)
        int pairedK = w.dtype() == DType.F32 ? 0 : k - k % (2 * L);
        float[][] xEven = new float[m][], xOdd = new float[m][];
        for (int r = 0; r < m && pairedK > 0; r++) {
            xEven[r] = new float[pairedK / 2];
            xOdd[r] = new float[pairedK / 2];
            for (int j = 0; j < pairedK / 2; j++) {
                int block = j / L, lane = j % L;
                xEven[r][j] = x[r * k + block * 2 * L + 2 * lane];
                xOdd[r][j] = x[r * k + block * 2 * L + 2 * lane + 1];
            }
        }
        parallelFor(tasks, parallel, t -> {
            int n0 = t * rowsPerTask, n1 = Math.min(n, n0 + rowsPerTask);
            for (int r = 0; r < m; r++) {
                int j = n0;
                for (; j + 4 <= n1; j += 4) {
                    if (w.dtype() == DType.F32) gemvF32x4(out, r * n + j, x, r * k, w.data(), j, k);
                    else gemvHalfx4(out, r * n + j, x, r * k, xEven[r], xOdd[r], pairedK, w, j, k);
                }
                for (; j < n1; j++) out[r * n + j] = dotRow(x, r * k, w, j, k, xEven[r], xOdd[r], pairedK);
            }
        });
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

    // ---- deterministic lane sum

    // rotations by 32, 16, 8, 4, 2, 1 lanes (those ≥ L are unused): constants, so C2 folds them
    private static final VectorShuffle<Float> ROT32 = rotation(32), ROT16 = rotation(16), ROT8 = rotation(8),
            ROT4 = rotation(4), ROT2 = rotation(2), ROT1 = rotation(1);

    private static VectorShuffle<Float> rotation(int lanes) {
        return VectorShuffle.fromOp(F, i -> (i + lanes) % L);
    }

    /**
     * Σ lanes of v by a fixed pairwise tree. reduceLanes(ADD) leaves the order open, and its intrinsic
     * (compiled) and Java (interpreted) forms do differ, which would make the same call give different
     * bits before and after JIT compilation.
     */
    static float sumLanes(FloatVector v) {
        if (L > 32) v = v.add(v.rearrange(ROT32));
        if (L > 16) v = v.add(v.rearrange(ROT16));
        if (L > 8) v = v.add(v.rearrange(ROT8));
        if (L > 4) v = v.add(v.rearrange(ROT4));
        if (L > 2) v = v.add(v.rearrange(ROT2));
        if (L > 1) v = v.add(v.rearrange(ROT1));
        return v.lane(0);
    }

    // ---- half-precision widening in registers

    private static final int BF16_HIGH_MASK = 0xFFFF0000;

    /** elements 2l of int lanes holding bf16 pairs */
    static FloatVector lowBf16(IntVector v) { return v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(); }
    /** elements 2l+1 */
    static FloatVector highBf16(IntVector v) { return v.and(BF16_HIGH_MASK).reinterpretAsFloats(); }
    static FloatVector lowF16(IntVector v) { return halfToFloat(v.and(0xFFFF)); }
    static FloatVector highF16(IntVector v) { return halfToFloat(v.lanewise(VectorOperators.LSHR, 16)); }

    private static final float TWO_POW_112 = 0x1p112f;

    /**
     * IEEE binary16 bits (low 16 bits of each lane; sign bit 15) to float, exactly: the exponent and
     * mantissa shifted into float position read as a float and scaled by 2^(127−15) is right for normal
     * and subnormal halves alike (a power-of-two scaling is exact); exponent 31 (inf/NaN) maps to 255.
     */
    static FloatVector halfToFloat(IntVector h) {
        IntVector magnitude = h.and(0x7fff);
        IntVector shifted = magnitude.lanewise(VectorOperators.LSHL, 13);
        IntVector finite = shifted.reinterpretAsFloats().mul(TWO_POW_112).reinterpretAsInts();
        VectorMask<Integer> infOrNan = magnitude.compare(VectorOperators.GE, 0x7c00);
        IntVector bits = finite.blend(shifted.or(0x7f800000), infOrNan);
        return bits.or(h.and(0x8000).lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats();
    }

    /**
     * dst[dstOff .. dstOff+n) = w elements [first, first+n) widened to float; F32, BF16 or F16.
     */
    static void widen(Tensor w, long first, float[] dst, int dstOff, int n) {
        MemorySegment seg = w.data();
        int i = 0;
        switch (w.dtype()) {
            case F32 -> MemorySegment.copy(seg, Tensor.F32, first * 4, dst, dstOff, n);
            case BF16, F16 -> {
                boolean bf16 = w.dtype() == DType.BF16;
                for (int upper = n - n % L; i < upper; i += L) {
                    ShortVector s = ShortVector.fromMemorySegment(SH, seg, (first + i) * 2, LE);
                    IntVector v = (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
                    FloatVector f = bf16 ? v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats() : halfToFloat(v);
                    f.intoArray(dst, dstOff + i);
                }
                for (; i < n; i++) dst[dstOff + i] = w.getFloat(first + i);
            }
            default -> throw new IllegalArgumentException("weight '" + w.name() + "' is " + w.dtype() + ", expected F32, BF16 or F16");
        }
    }

    // ---- GEMM: register-tiled, w widened and packed per panel inside each task

    /**
     * out (m, N) = x · wᵀ, x's rows read in place. Each task widens and packs the panels of w it is about to use, one
     * KC × NR panel at a time ({@link #packPanel}, into a buffer that stays in L1 while every row of x runs against it),
     * so w is read from memory once, in its own dtype, and no packed copy of it outlives the task; small read-only
     * weights come packed whole from {@link PackedWeights} instead. Tasks: column tiles of 4 panels of NR columns
     * (packing per panel: 1 to 4 panels, at least 8 tiles where there are 8 panels), cut along rows too when that gives
     * fewer than 8 tiles; by shape only, so results don't depend on the thread count.
     */
    private void gemm(float[] out, float[] x, int m, Tensor w, int n, int k) {
        boolean parallel = (long) m * n * k >= PARALLEL_MIN_FMAS;
        float[] cached = cachedPacked(w, n, k);
        // per-panel packing: narrower tiles before cutting rows (which would pack the panels again per row tile)
        int nc = (cached != null ? 4 : Math.clamp((n + NR - 1) / NR / 8, 1, 4)) * NR;
        int nTiles = (n + nc - 1) / nc;
        int mTiles = nTiles >= 8 ? 1 : Math.min((8 + nTiles - 1) / nTiles, (m + MR - 1) / MR);
        int mc = roundUp((m + mTiles - 1) / mTiles, MR);
        int mTilesFinal = (m + mc - 1) / mc;
        parallelFor(nTiles * mTilesFinal, parallel, t -> {
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
     * rest (a last partial panel, depth tails, vectors other than 8 or 16 floats) goes through {@link #widen}. Every
     * element gets the bits {@link #widen} gives it.
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

    /**
     * Packing buffers of the calling thread, reused across calls: fresh multi-MB arrays cost more in
     * zeroing and page faults than the packing itself. The caller waits inside the call while pool
     * threads read them, and every caller has its own, so concurrent calls never share one. They grow to
     * the largest matmul a thread has run and stay (a few MB for a small model). Slots 0 and 1: the backward
     * passes' packed operands; 2: a GEMM task's panel of w; 3: {@link #packPanel}'s widened depth tails.
     */
    private static final ThreadLocal<float[][]> PACK_BUFFERS = ThreadLocal.withInitial(() -> new float[4][0]);
    private static final ThreadLocal<int[][]> LANE_BUFFERS = ThreadLocal.withInitial(() -> new int[2][0]);

    private static float[] scratch(int slot, int size) {
        float[][] buffers = PACK_BUFFERS.get();
        if (buffers[slot].length < size) buffers[slot] = new float[size];
        return buffers[slot];
    }

    /** {@link #packPanel}'s int lanes of the calling thread: the panel's rows of w, and their transpose */
    private static int[] rowBuffer(int size) { return intScratch(0, size); }

    private static int[] laneBuffer(int size) { return intScratch(1, size); }

    private static int[] intScratch(int slot, int size) {
        int[][] buffers = LANE_BUFFERS.get();
        if (buffers[slot].length < size) buffers[slot] = new int[size];
        return buffers[slot];
    }

    private static int roundUp(int v, int to) { return (v + to - 1) / to * to; }

    /** {@link #gemmTile}'s lda for an x that comes packed in row panels (k, MR), as {@link #packDepthMajor} makes them */
    static final int PACKED = 0;

    /**
     * out[r0 + m0 .. r0 + m1, c0 + n0 .. c0 + n1) = x · wᵀ, m0..m1 and n0..n1 counted from r0, c0 (n0 a multiple of NR;
     * m0 a multiple of MR where x is packed). w comes either packed whole (wPacked: column panels (k, NR)), or as the
     * tensor w, whose panels are packed here one (KC × NR) block at a time, just before every row of x runs against
     * it: from w (n, k) by {@link #packPanel}, or, {@code wByDepth}, from w (k, ≥ n) whose rows are the depth
     * (dx = dOut · w) by {@link #packDepthPanel}. x is either packed in row panels ({@code lda == PACKED}) or read in place: row i (from r0) at
     * a[aBase + i·lda ..] (row-major, lda ≥ k), or, with a row map, at a[rowMap[r0 + i]·lda ..] (aBase unused).
     * {@code accumulateInto}: out += instead. All layouts sum every output element in the same order (depth blocks of
     * KC in order, each summed by the micro-kernel from zero, then added to out), so they give the same bits.
     */
    private static void gemmTile(float[] out, int n, int r0, int c0, float[] a, int aBase, int lda, int[] rowMap, float[] wPacked, Tensor w,
                                 boolean wByDepth, int k, int m0, int m1, int n0, int n1, boolean accumulateInto) {
        float[] tile = new float[MR * NR];
        float[] panel = w == null ? wPacked : scratch(2, Math.min(k, KC) * NR);
        for (int k0 = 0; k0 < k; k0 += KC) { // the tile's rows of x over one depth block stay in L2 for all its panels
            int kc = Math.min(KC, k - k0);
            boolean accumulate = accumulateInto || k0 > 0;
            for (int col0 = n0; col0 < n1; col0 += NR) { // one panel (kc × NR) stays in L1 while the rows pass
                int cols = Math.min(NR, n1 - col0), pOff;
                if (w == null) {
                    pOff = ((col0 / NR) * k + k0) * NR;
                } else {
                    if (wByDepth) packDepthPanel(w, c0 + col0, cols, k0, kc, panel, 0);
                    else packPanel(w, k, c0 + col0, cols, k0, kc, panel, 0);
                    pOff = 0;
                }
                for (int i0 = m0; i0 < m1; i0 += MR) {
                    int rows = Math.min(MR, m1 - i0);
                    if (lda == PACKED) {
                        int aOff = ((i0 / MR) * k + k0) * MR;
                        if (MR == 12) microKernel12(a, aOff, kc, panel, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                        else microKernel6(a, aOff, kc, panel, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                    } else {
                        int aOff = rowMap == null ? aBase + i0 * lda + k0 : k0;
                        if (MR == 12) microKernel12Rows(a, rowMap, r0 + i0, aOff, lda, kc, panel, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
                        else microKernel6Rows(a, rowMap, r0 + i0, aOff, lda, kc, panel, pOff, out, n, r0 + i0, rows, c0 + col0, cols, accumulate, tile);
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

    // ---------------------------------------------------------------- the other ops

    @Override
    public void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps) {
        checkWeight(weight);
        int d = Math.toIntExact(weight.numel());
        float[] g = new float[d];
        widen(weight, 0, g, 0, d);
        int upper = d - d % L;
        for (int r = 0; r < rows; r++) {
            int base = r * d;
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            for (; i < upper; i += L) {
                FloatVector v = FloatVector.fromArray(F, x, base + i);
                acc = v.fma(v, acc);
            }
            double ss = sumLanes(acc);
            for (; i < d; i++) ss += (double) x[base + i] * x[base + i];
            float inv = (float) (1.0 / Math.sqrt(ss / d + eps));
            for (i = 0; i < upper; i += L)
                FloatVector.fromArray(F, x, base + i).mul(inv).mul(FloatVector.fromArray(F, g, i)).intoArray(out, base + i);
            for (; i < d; i++) out[base + i] = x[base + i] * inv * g[i];
        }
    }

    @Override
    public void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        int half = headDim / 2, upper = half - half % L;
        float[] cos = new float[half], sin = new float[half];
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < half; i++) {
                float angle = positions[r] * invFreq[i];
                cos[i] = (float) Math.cos(angle);
                sin[i] = (float) Math.sin(angle);
            }
            for (int h = 0; h < heads; h++) {
                int base = (r * heads + h) * headDim;
                int i = 0;
                for (; i < upper; i += L) {
                    FloatVector a = FloatVector.fromArray(F, x, base + i), b = FloatVector.fromArray(F, x, base + half + i);
                    FloatVector c = FloatVector.fromArray(F, cos, i), s = FloatVector.fromArray(F, sin, i);
                    a.mul(c).sub(b.mul(s)).intoArray(x, base + i);
                    b.mul(c).add(a.mul(s)).intoArray(x, base + half + i);
                }
                for (; i < half; i++) {
                    float a = x[base + i], b = x[base + i + half];
                    x[base + i] = a * cos[i] - b * sin[i];
                    x[base + i + half] = b * cos[i] + a * sin[i];
                }
            }
        }
    }

    @Override
    public void attention(float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos,
                          int nHeads, int nKvHeads, int headDim, float scale) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException("attention: nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        int group = nHeads / nKvHeads;
        int len = startPos + T, lenPadded = roundUp(len, L);
        int units = T * nHeads; // one (query, head) each
        long work = (long) units * len * headDim;
        int tasks = Math.min(units, 64);
        if (T * group < TRANSPOSED_KEYS_MIN_QUERIES) { // decode: each key is read by few queries, dot products directly
            parallelFor(tasks, work >= PARALLEL_MIN_FMAS, task -> {
                float[] scores = new float[len];
                for (int u = task; u < units; u += tasks) {
                    int t = u / nHeads, h = u % nHeads, kvh = h / group;
                    int qOff = (t * nHeads + h) * headDim, visible = startPos + t + 1;
                    attentionScoresDirect(scores, q, qOff, kCache, kvh, nKvHeads, visible, headDim, scale);
                    softmax(scores, 0, visible);
                    attentionValues(out, qOff, scores, 0, visible, vCache, kvh, nKvHeads, headDim);
                }
            });
            return;
        }
        // prefill: keysT (nKvHeads, headDim, lenPadded) holds the keys transposed, so the scores of L
        // positions are one vector FMA per head dimension (no horizontal sums); zero past len
        float[] keysT = new float[nKvHeads * headDim * lenPadded];
        for (int kvh = 0; kvh < nKvHeads; kvh++)
            for (int s = 0; s < len; s++) {
                int src = (s * nKvHeads + kvh) * headDim, dst = kvh * headDim * lenPadded + s;
                for (int i = 0; i < headDim; i++) keysT[dst + i * lenPadded] = kCache[src + i];
            }
        int blocks = (T + 3) / 4, blockUnits = blocks * nHeads; // 4 consecutive queries of one head share each key load
        int blockTasks = Math.min(blockUnits, 64);
        parallelFor(blockTasks, work >= PARALLEL_MIN_FMAS, task -> {
            float[] scores = new float[4 * lenPadded]; // (4, lenPadded)
            // interleaved so that long (late) and short (early) causal rows mix in every task
            for (int u = task; u < blockUnits; u += blockTasks) {
                int t0 = (u / nHeads) * 4, h = u % nHeads, kvh = h / group, queries = Math.min(4, T - t0);
                attentionScores4(scores, 0, lenPadded, q, h * headDim, nHeads * headDim, t0, queries, keysT, kvh * headDim * lenPadded,
                        lenPadded, startPos + t0 + queries, headDim, scale);
                int visibleMax = startPos + t0 + queries;
                for (int j = 0; j < 4; j++) {
                    int visible = startPos + t0 + Math.min(j, queries - 1) + 1;
                    softmax(scores, j * lenPadded, visible);
                    Arrays.fill(scores, j * lenPadded + visible, j * lenPadded + visibleMax, 0f); // causal mask
                }
                attentionValues4(out, t0, queries, h, nHeads, scores, lenPadded, visibleMax, vCache, kvh, nKvHeads, headDim);
            }
        });
    }

    /** below this many queries per KV head (T · group), attention skips transposing the keys */
    static final int TRANSPOSED_KEYS_MIN_QUERIES = 8;

    /** scores[s] = scale · q · k[s, kvh] for s &lt; visible, one dot product per position */
    private static void attentionScoresDirect(float[] scores, float[] q, int qOff, float[] kCache, int kvh, int nKvHeads,
                                              int visible, int headDim, float scale) {
        int upper = headDim - headDim % L;
        for (int s = 0; s < visible; s++) {
            int kOff = (s * nKvHeads + kvh) * headDim;
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            for (; i < upper; i += L)
                acc = FloatVector.fromArray(F, q, qOff + i).fma(FloatVector.fromArray(F, kCache, kOff + i), acc);
            float dot = sumLanes(acc);
            for (; i < headDim; i++) dot += q[qOff + i] * kCache[kOff + i];
            scores[s] = dot * scale;
        }
    }

    /**
     * scores[scoreOff + j·scoreStride + s] = scale · Σ_i q[qBase + (t0+j)·qRowStride + i]·keysT[kOff + i·stride + s] for
     * queries j &lt; 4 (missing ones repeat the last; results unused) and s &lt; visible (rounded up to L lanes)
     */
    private static void attentionScores4(float[] scores, int scoreOff, int scoreStride, float[] q, int qBase, int qRowStride,
                                         int t0, int queries, float[] keysT, int kOff, int stride, int visible, int headDim,
                                         float scale) {
        int q0 = qBase + t0 * qRowStride;
        int q1 = qBase + (t0 + Math.min(1, queries - 1)) * qRowStride;
        int q2 = qBase + (t0 + Math.min(2, queries - 1)) * qRowStride;
        int q3 = qBase + (t0 + Math.min(3, queries - 1)) * qRowStride;
        for (int s = 0; s < visible; s += L) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0, row = kOff + s; i < headDim; i++, row += stride) {
                FloatVector key = FloatVector.fromArray(F, keysT, row);
                a0 = FloatVector.broadcast(F, q[q0 + i]).fma(key, a0);
                a1 = FloatVector.broadcast(F, q[q1 + i]).fma(key, a1);
                a2 = FloatVector.broadcast(F, q[q2 + i]).fma(key, a2);
                a3 = FloatVector.broadcast(F, q[q3 + i]).fma(key, a3);
            }
            a0.mul(scale).intoArray(scores, scoreOff + s);
            a1.mul(scale).intoArray(scores, scoreOff + scoreStride + s);
            a2.mul(scale).intoArray(scores, scoreOff + 2 * scoreStride + s);
            a3.mul(scale).intoArray(scores, scoreOff + 3 * scoreStride + s);
        }
    }

    /**
     * out[t0+j, h, i] = Σ_{s &lt; visible} p[j·pStride + s]·v[s, kvh, i] for queries j &lt; queries: each
     * value row is loaded once for 4 queries (p is zero past each query's causal end; rows of missing
     * queries are computed and dropped)
     */
    private static void attentionValues4(float[] out, int t0, int queries, int h, int nHeads, float[] p, int pStride,
                                         int visible, float[] vCache, int kvh, int nKvHeads, int headDim) {
        int rowStride = nKvHeads * headDim, base = kvh * headDim;
        int p1 = pStride, p2 = 2 * pStride, p3 = 3 * pStride;
        int i = 0;
        for (; i + L <= headDim; i += L) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int s = 0, v = base + i; s < visible; s++, v += rowStride) {
                FloatVector value = FloatVector.fromArray(F, vCache, v);
                a0 = FloatVector.broadcast(F, p[s]).fma(value, a0);
                a1 = FloatVector.broadcast(F, p[p1 + s]).fma(value, a1);
                a2 = FloatVector.broadcast(F, p[p2 + s]).fma(value, a2);
                a3 = FloatVector.broadcast(F, p[p3 + s]).fma(value, a3);
            }
            int o = (t0 * nHeads + h) * headDim + i, step = nHeads * headDim;
            a0.intoArray(out, o);
            if (queries > 1) a1.intoArray(out, o + step);
            if (queries > 2) a2.intoArray(out, o + 2 * step);
            if (queries > 3) a3.intoArray(out, o + 3 * step);
        }
        for (; i < headDim; i++) {
            for (int j = 0; j < queries; j++) {
                float acc = 0f;
                for (int s = 0; s < visible; s++) acc += p[j * pStride + s] * vCache[s * rowStride + base + i];
                out[((t0 + j) * nHeads + h) * headDim + i] = acc;
            }
        }
    }

    /** out[qOff + i] = Σ_{s &lt; visible} p[pOff + s]·v[s, kvh, i] */
    private static void attentionValues(float[] out, int qOff, float[] p, int pOff, int visible, float[] vCache, int kvh,
                                        int nKvHeads, int headDim) {
        int rowStride = nKvHeads * headDim, base = kvh * headDim;
        int i = 0;
        for (; i + 2 * L <= headDim; i += 2 * L) { // two column vectors × even/odd positions: 4 FMA chains
            FloatVector e0 = FloatVector.zero(F), e1 = e0, o0 = e0, o1 = e0;
            int s = 0;
            for (; s + 1 < visible; s += 2) {
                int v0 = s * rowStride + base + i, v1 = v0 + rowStride;
                FloatVector pe = FloatVector.broadcast(F, p[pOff + s]), po = FloatVector.broadcast(F, p[pOff + s + 1]);
                e0 = pe.fma(FloatVector.fromArray(F, vCache, v0), e0);
                e1 = pe.fma(FloatVector.fromArray(F, vCache, v0 + L), e1);
                o0 = po.fma(FloatVector.fromArray(F, vCache, v1), o0);
                o1 = po.fma(FloatVector.fromArray(F, vCache, v1 + L), o1);
            }
            if (s < visible) {
                int v0 = s * rowStride + base + i;
                FloatVector pe = FloatVector.broadcast(F, p[pOff + s]);
                e0 = pe.fma(FloatVector.fromArray(F, vCache, v0), e0);
                e1 = pe.fma(FloatVector.fromArray(F, vCache, v0 + L), e1);
            }
            e0.add(o0).intoArray(out, qOff + i);
            e1.add(o1).intoArray(out, qOff + i + L);
        }
        for (; i + L <= headDim; i += L) {
            FloatVector acc = FloatVector.zero(F);
            for (int s = 0; s < visible; s++)
                acc = FloatVector.broadcast(F, p[pOff + s]).fma(FloatVector.fromArray(F, vCache, s * rowStride + base + i), acc);
            acc.intoArray(out, qOff + i);
        }
        for (; i < headDim; i++) {
            float acc = 0f;
            for (int s = 0; s < visible; s++) acc += p[pOff + s] * vCache[s * rowStride + base + i];
            out[qOff + i] = acc;
        }
    }

    @Override
    public void swiglu(float[] out, float[] gate, float[] up, int n) {
        int chunk = 1 << 14, tasks = (n + chunk - 1) / chunk;
        parallelFor(tasks, n >= PARALLEL_MIN_FMAS / 4, t -> swigluRange(out, gate, up, t * chunk, Math.min(n, t * chunk + chunk)));
    }

    /** out[i] = SiLU(gate[i])·up[i] for i in [start, end); start a multiple of L */
    private static void swigluRange(float[] out, float[] gate, float[] up, int start, int end) {
        int upper = end - (end - start) % L, i = start;
        FloatVector one = FloatVector.broadcast(F, 1f);
        for (; i < upper; i += L) {
            FloatVector g = FloatVector.fromArray(F, gate, i);
            g.div(one.add(exp(g.neg()))).mul(FloatVector.fromArray(F, up, i)).intoArray(out, i);
        }
        for (; i < end; i++) {
            float g = gate[i];
            out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }

    @Override
    public void softmax(float[] x, int off, int n) { softmaxInPlace(x, off, n); }

    /** x[off .. off+n) ← softmax, max-subtracted, lanes summed by the fixed tree */
    static void softmaxInPlace(float[] x, int off, int n) {
        int upper = n - n % L, i = 0;
        float max = Float.NEGATIVE_INFINITY;
        if (upper > 0) {
            FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            for (; i < upper; i += L) m = m.max(FloatVector.fromArray(F, x, off + i));
            max = m.reduceLanes(VectorOperators.MAX); // exact in any order
        }
        for (; i < n; i++) max = Math.max(max, x[off + i]);
        FloatVector sums = FloatVector.zero(F);
        for (i = 0; i < upper; i += L) {
            FloatVector e = exp(FloatVector.fromArray(F, x, off + i).sub(max));
            e.intoArray(x, off + i);
            sums = sums.add(e);
        }
        double sum = sumLanes(sums);
        for (; i < n; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (i = 0; i < upper; i += L) FloatVector.fromArray(F, x, off + i).mul(inv).intoArray(x, off + i);
        for (; i < n; i++) x[off + i] *= inv;
    }

    // ---- e^x in lanes

    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HIGH = 0.693359375f, LN2_LOW = -2.12194440e-4f; // LN2_HIGH + LN2_LOW = ln 2
    /** 1.5 · 2^23: adding it rounds a float of magnitude &lt; 2^22 to an integer, kept in the low mantissa bits */
    private static final float ROUNDER = 12582912f;
    private static final int ROUNDER_BITS = 0x4B400000;

    /**
     * e^x per lane, within 2 ulp of {@link Math#exp} (tested): x = n·ln 2 + r, |r| ≤ ln2/2, e^r by the
     * Cephes expf polynomial, times 2^n built in the exponent bits (in two halves, so subnormal results
     * and overflow to ∞ come out right). Only add, mul and fma, which the Vector API defines exactly,
     * so compiled and interpreted code give the same bits (the library EXP does not: its intrinsic and
     * its Java fallback differ in the last bit).
     */
    static FloatVector exp(FloatVector x) {
        x = x.max(-104f).min(89f); // e^−104 rounds to 0 and e^89 to ∞; NaN stays NaN
        FloatVector t = x.fma(LOG2E, ROUNDER);
        IntVector n = t.reinterpretAsInts().sub(ROUNDER_BITS);
        FloatVector nf = t.sub(ROUNDER);
        FloatVector r = x.sub(nf.mul(LN2_HIGH)); // exact: LN2_HIGH has 9 significant bits, |n| ≤ 150
        r = nf.fma(FloatVector.broadcast(F, -LN2_LOW), r);
        FloatVector p = r.fma(1.9875691500e-4f, 1.3981999507e-3f);
        p = p.fma(r, FloatVector.broadcast(F, 8.3334519073e-3f));
        p = p.fma(r, FloatVector.broadcast(F, 4.1665795894e-2f));
        p = p.fma(r, FloatVector.broadcast(F, 1.6666665459e-1f));
        p = p.fma(r, FloatVector.broadcast(F, 5.0000001201e-1f));
        FloatVector er = p.mul(r).fma(r, r).add(1f); // 1 + r + r²·p
        IntVector n1 = n.lanewise(VectorOperators.ASHR, 1), n2 = n.sub(n1);
        FloatVector scale1 = n1.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        FloatVector scale2 = n2.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        return er.mul(scale1).mul(scale2);
    }

    @Override
    public void embedding(float[] out, Tensor table, int[] ids) {
        checkWeight(table);
        int vocab = table.rows(), d = table.cols();
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= vocab) throw new IllegalArgumentException("token id " + id + " at position " + t + " is outside the vocabulary [0, " + vocab + ") of '" + table.name() + "'");
            widen(table, (long) id * d, out, t * d, d);
        }
    }

    @Override
    public void add(float[] x, float[] y, int n) {
        int upper = n - n % L, i = 0;
        for (; i < upper; i += L) FloatVector.fromArray(F, x, i).add(FloatVector.fromArray(F, y, i)).intoArray(x, i);
        for (; i < n; i++) x[i] += y[i];
    }

    // ---------------------------------------------------------------- backward passes

    /**
     * dx (M, K) = dOut (M, N) · w (N, K): the GEMM with dOut's rows read in place (depth N), w widened and packed per
     * panel inside each task as {@link #gemm} does (row n of w is depth n of every output column, so a KC × NR panel is
     * KC contiguous row slices of w: {@link #packDepthPanel}); no packed copy of w outlives the panel. Tiles as gemm's.
     */
    @Override
    public void matmulBackwardInput(float[] dx, float[] dOut, int m, Tensor w) {
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
        parallelFor(nTiles * mTilesFinal, parallel, t -> {
            int nt = t % nTiles, mt = t / nTiles;
            gemmTile(dx, k, 0, 0, dOut, 0, n, null, null, w, true, n, mt * mc, Math.min(m, mt * mc + mc), nt * nc, Math.min(k, nt * nc + nc), false);
        });
    }

    /**
     * dw (N, K) += dOut (M, N)ᵀ · x (M, K): the GEMM over depth M with both operands packed from their rows
     * (row i of dOut holds depth i of every output row, row i of x depth i of every output column).
     */
    @Override
    public void matmulBackwardWeight(float[] dw, float[] dOut, float[] x, int m, int n, int k) {
        if ((long) m * n > dOut.length || (long) m * k > x.length || (long) n * k > dw.length)
            throw new IllegalArgumentException("matmulBackwardWeight: arrays of " + dOut.length + ", " + x.length + ", " + dw.length
                    + " floats are too small for dOut (" + m + ", " + n + "), x (" + m + ", " + k + "), dw (" + n + ", " + k + ")");
        boolean parallel = (long) m * n * k >= PARALLEL_MIN_FMAS;
        float[] aPacked = packDepthMajor(dOut, n, n, m, MR, scratch(0, (n + MR - 1) / MR * m * MR), parallel);
        float[] bPacked = packDepthMajor(x, k, k, m, NR, scratch(1, packedColumnsSize(k, m)), parallel);
        gemmPacked(dw, k, n, k, m, aPacked, PACKED, bPacked, true, parallel);
    }

    /**
     * src (depth, ld), whose row d holds depth d of {@code count} rows/columns of the product, packed into
     * panels (count / width, depth, width), zeros past the last one
     */
    private float[] packDepthMajor(float[] src, int ld, int count, int depth, int width, float[] into, boolean parallel) {
        int panels = (count + width - 1) / width;
        parallelFor(panels, parallel, p -> {
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
    private void gemmPacked(float[] out, int ldOut, int rows, int cols, int k, float[] a, int lda, float[] bPacked,
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
        parallelFor(nTiles * mTilesFinal, parallel, t -> {
            int nt = t % nTiles, mt = t / nTiles;
            gemmTile(out, ldOut, 0, 0, a, 0, lda, null, bPacked, null, false, k, mt * mc, Math.min(rows, mt * mc + mc), nt * nc, Math.min(cols, nt * nc + nc), accumulateInto);
        });
    }

    @Override
    public void rmsNormBackward(float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps) {
        checkWeight(weight);
        int d = Math.toIntExact(weight.numel());
        float[] g = new float[d];
        widen(weight, 0, g, 0, d);
        int upper = d - d % L;
        int rowsPerTask = 16, tasks = (rows + rowsPerTask - 1) / rowsPerTask;
        boolean parallel = (long) rows * d >= PARALLEL_MIN_FMAS / 4;
        if (dWeight != null) { // before dx: dx may be dOut. Tasks own columns and sum rows in order.
            float[] inv = new float[rows];
            for (int r = 0; r < rows; r++) inv[r] = rmsInverse(x, r * d, d, eps);
            int colTasks = (d + 4 * L - 1) / (4 * L);
            parallelFor(colTasks, parallel, c -> {
                int c0 = c * 4 * L, c1 = Math.min(d, c0 + 4 * L);
                float[] acc = new float[c1 - c0];
                for (int r = 0; r < rows; r++) {
                    int base = r * d, i = c0;
                    for (; i + L <= c1; i += L)
                        FloatVector.fromArray(F, dOut, base + i).mul(FloatVector.fromArray(F, x, base + i)).mul(inv[r])
                                .add(FloatVector.fromArray(F, acc, i - c0)).intoArray(acc, i - c0);
                    for (; i < c1; i++) acc[i - c0] += dOut[base + i] * x[base + i] * inv[r];
                }
                for (int i = c0; i < c1; i++) dWeight[i] += acc[i - c0];
            });
        }
        parallelFor(tasks, parallel, task -> {
            for (int r = task * rowsPerTask, end = Math.min(rows, r + rowsPerTask); r < end; r++) {
                int base = r * d;
                float ir = rmsInverse(x, base, d, eps);
                FloatVector acc = FloatVector.zero(F);
                int i = 0;
                for (; i < upper; i += L)
                    acc = FloatVector.fromArray(F, g, i).mul(FloatVector.fromArray(F, dOut, base + i)).fma(FloatVector.fromArray(F, x, base + i), acc);
                double dot = sumLanes(acc);
                for (; i < d; i++) dot += (double) g[i] * dOut[base + i] * x[base + i];
                float c = (float) (dot * ir * ir * ir / d);
                for (i = 0; i < upper; i += L)
                    FloatVector.fromArray(F, g, i).mul(FloatVector.fromArray(F, dOut, base + i)).mul(ir)
                            .sub(FloatVector.fromArray(F, x, base + i).mul(c)).intoArray(dx, base + i);
                for (; i < d; i++) dx[base + i] = ir * g[i] * dOut[base + i] - c * x[base + i];
            }
        });
    }

    /** 1 / sqrt(mean(x[base .. base+d)²) + eps), as {@link #rmsNorm} computes it */
    private static float rmsInverse(float[] x, int base, int d, float eps) {
        FloatVector acc = FloatVector.zero(F);
        int i = 0, upper = d - d % L;
        for (; i < upper; i += L) {
            FloatVector v = FloatVector.fromArray(F, x, base + i);
            acc = v.fma(v, acc);
        }
        double ss = sumLanes(acc);
        for (; i < d; i++) ss += (double) x[base + i] * x[base + i];
        return (float) (1.0 / Math.sqrt(ss / d + eps));
    }

    /** the inverse rotation = the rotation by −angle: rope with negated positions */
    @Override
    public void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        int[] negated = new int[rows];
        for (int r = 0; r < rows; r++) negated[r] = -positions[r];
        rope(dx, rows, heads, headDim, negated, invFreq);
    }

    /**
     * One task per (sequence, KV head): it owns that slice of dk and dv and the dq of the query heads sharing it,
     * and runs them in a fixed order, so the sums are deterministic without locks. Per query head, blocks of 4
     * queries at a time: the rows of P = softmax(scale·q·kᵀ) and of dP = dOut·vᵀ come from vertical FMAs over the
     * transposed keys and values (as in {@link #attention}), then dS row by row; dq = dS·k, dk += dSᵀ·q and
     * dv += Pᵀ·dOut are register-tiled row combinations (4 output rows share each loaded input row).
     */
    @Override
    public void attentionBackward(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                  int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException("attentionBackward: nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        long work = (long) B * nHeads * T * T * headDim * 2;
        parallelFor(B * nKvHeads, work >= PARALLEL_MIN_FMAS, task ->
                attentionBackwardTask(dq, dk, dv, dOut, q, k, v, task / nKvHeads, task % nKvHeads, T, nHeads, nKvHeads, headDim, scale));
    }

    /** {@link #attentionBackward} of sequence b, KV head kvh and the query heads reading it */
    private static void attentionBackwardTask(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                              int b, int kvh, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        int group = nHeads / nKvHeads, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        int tPadded = roundUp(T, L), blocksPadded = roundUp(T, 4);
        // keysT, valuesT (headDim, tPadded): scores and dOut·vᵀ of L positions are vertical FMAs; zero past T
        float[] keysT = new float[headDim * tPadded], valuesT = new float[headDim * tPadded];
        for (int s = 0; s < T; s++) {
            int kOff = (b * T + s) * kvDim + kvh * headDim;
            for (int i = 0; i < headDim; i++) {
                keysT[i * tPadded + s] = k[kOff + i];
                valuesT[i * tPadded + s] = v[kOff + i];
            }
        }
        // p, ds (blocksPadded, tPadded): rows of one head; zero past each query's causal end
        float[] p = new float[blocksPadded * tPadded], dp = new float[4 * tPadded], ds = new float[blocksPadded * tPadded];
        int kv0 = b * T * kvDim + kvh * headDim;       // k[b, 0, kvh, 0]
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            int q0 = b * T * qDim + h * headDim;       // q[b, 0, h, 0]
            for (int t0 = 0; t0 < T; t0 += 4) {
                int queries = Math.min(4, T - t0), visibleMax = t0 + queries;
                int sEnd = roundUp(visibleMax, L);
                attentionScores4(p, t0 * tPadded, tPadded, q, q0, qDim, t0, queries, keysT, 0, tPadded, sEnd, headDim, scale);
                attentionScores4(dp, 0, tPadded, dOut, q0, qDim, t0, queries, valuesT, 0, tPadded, sEnd, headDim, 1f);
                for (int j = 0; j < queries; j++) {
                    int t = t0 + j, row = t * tPadded;
                    softmaxInPlace(p, row, t + 1);
                    Arrays.fill(p, row + t + 1, row + tPadded, 0f);   // causal mask; padding adds nothing below
                    float pdp = dot(p, row, dp, j * tPadded, t + 1);
                    softmaxGradient(ds, row, p, dp, j * tPadded, pdp, scale, t + 1);
                    Arrays.fill(ds, row + t + 1, row + tPadded, 0f);
                }
            }
            // dq[t] = Σ_{s ≤ t} ds[t, s]·k[s]  (overwritten)
            for (int t0 = 0; t0 < T; t0 += 4)
                combineRows4(dq, q0 + t0 * qDim, qDim, Math.min(4, T - t0), ds, t0 * tPadded, tPadded, 1,
                        0, Math.min(T, t0 + 4), k, kv0, kvDim, headDim, false);
            // dk[s] (+)= Σ_{t ≥ s} ds[t, s]·q[t], dv[s] (+)= Σ_{t ≥ s} p[t, s]·dOut[t]; the group's first head overwrites
            boolean accumulate = h > kvh * group;
            for (int s0 = 0; s0 < T; s0 += 4) {
                int keys = Math.min(4, T - s0);
                combineRows4(dk, kv0 + s0 * kvDim, kvDim, keys, ds, s0, 1, tPadded, s0, T, q, q0, qDim, headDim, accumulate);
                combineRows4(dv, kv0 + s0 * kvDim, kvDim, keys, p, s0, 1, tPadded, s0, T, dOut, q0, qDim, headDim, accumulate);
            }
        }
    }

    /** ds[row + s] = scale · p[row + s]·(dp[dpOff + s] − pdp) for s &lt; n */
    private static void softmaxGradient(float[] ds, int row, float[] p, float[] dp, int dpOff, float pdp, float scale, int n) {
        int s = 0;
        for (int upper = n - n % L; s < upper; s += L)
            FloatVector.fromArray(F, p, row + s).mul(FloatVector.fromArray(F, dp, dpOff + s).sub(pdp)).mul(scale).intoArray(ds, row + s);
        for (; s < n; s++) ds[row + s] = p[row + s] * (dp[dpOff + s] - pdp) * scale;
    }

    /**
     * dst[d0 + r·dStride + i] (+)= Σ_{j = j0 .. j1−1} coef[c0 + r·cStride + j·cStep] · src[s0 + j·sStride + i] for output
     * rows r &lt; rows (≤ 4) and i &lt; width, j ascending. Each src row chunk is loaded once for the 4 rows (a missing row
     * repeats the last one's coefficients; its result is dropped).
     */
    private static void combineRows4(float[] dst, int d0, int dStride, int rows, float[] coef, int c0, int cStride, int cStep,
                                     int j0, int j1, float[] src, int s0, int sStride, int width, boolean accumulate) {
        int c1 = c0 + Math.min(1, rows - 1) * cStride, c2 = c0 + Math.min(2, rows - 1) * cStride, c3 = c0 + Math.min(3, rows - 1) * cStride;
        int i = 0;
        for (; i + L <= width; i += L) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int j = j0, c = j0 * cStep, sr = s0 + j0 * sStride + i; j < j1; j++, c += cStep, sr += sStride) {
                FloatVector row = FloatVector.fromArray(F, src, sr);
                a0 = FloatVector.broadcast(F, coef[c0 + c]).fma(row, a0);
                a1 = FloatVector.broadcast(F, coef[c1 + c]).fma(row, a1);
                a2 = FloatVector.broadcast(F, coef[c2 + c]).fma(row, a2);
                a3 = FloatVector.broadcast(F, coef[c3 + c]).fma(row, a3);
            }
            int o = d0 + i;
            storeRow(dst, o, a0, accumulate);
            if (rows > 1) storeRow(dst, o + dStride, a1, accumulate);
            if (rows > 2) storeRow(dst, o + 2 * dStride, a2, accumulate);
            if (rows > 3) storeRow(dst, o + 3 * dStride, a3, accumulate);
        }
        for (; i < width; i++) {
            for (int r = 0; r < rows; r++) {
                float acc = 0f;
                for (int j = j0; j < j1; j++) acc = Math.fma(coef[c0 + r * cStride + j * cStep], src[s0 + j * sStride + i], acc);
                int o = d0 + r * dStride + i;
                dst[o] = accumulate ? dst[o] + acc : acc;
            }
        }
    }

    private static void storeRow(float[] dst, int o, FloatVector v, boolean accumulate) {
        (accumulate ? v.add(FloatVector.fromArray(F, dst, o)) : v).intoArray(dst, o);
    }

    /** Σ a[ao + i]·b[bo + i], i &lt; n */
    private static float dot(float[] a, int ao, float[] b, int bo, int n) {
        FloatVector acc = FloatVector.zero(F);
        int i = 0;
        for (int upper = n - n % L; i < upper; i += L)
            acc = FloatVector.fromArray(F, a, ao + i).fma(FloatVector.fromArray(F, b, bo + i), acc);
        float s = sumLanes(acc);
        for (; i < n; i++) s += a[ao + i] * b[bo + i];
        return s;
    }


    @Override
    public void swigluBackward(float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n) {
        int chunk = 1 << 14, tasks = (n + chunk - 1) / chunk;
        parallelFor(tasks, n >= PARALLEL_MIN_FMAS / 4, task -> {
            int i = task * chunk, end = Math.min(n, i + chunk), upper = end - (end - i) % L;
            FloatVector one = FloatVector.broadcast(F, 1f);
            for (; i < upper; i += L) {
                FloatVector g = FloatVector.fromArray(F, gate, i), dy = FloatVector.fromArray(F, dOut, i);
                FloatVector sig = one.div(one.add(exp(g.neg())));
                dy.mul(FloatVector.fromArray(F, up, i)).mul(sig).mul(one.add(g.mul(one.sub(sig)))).intoArray(dGate, i);
                dy.mul(g).mul(sig).intoArray(dUp, i);
            }
            for (; i < end; i++) {
                float g = gate[i], sig = 1f / (1f + (float) Math.exp(-g));
                dGate[i] = dOut[i] * up[i] * sig * (1f + g * (1f - sig));
                dUp[i] = dOut[i] * g * sig;
            }
        });
    }

    @Override
    public void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d) {
        for (int t = 0; t < ids.length; t++) {
            if (ids[t] < 0 || ids[t] * (long) d + d > dTable.length)
                throw new IllegalArgumentException("embeddingBackward: token id " + ids[t] + " at position " + t + " is outside the table of " + dTable.length / d + " rows");
            addScaled(dTable, ids[t] * d, dOut, t * d, 1f, d);
        }
    }

    @Override
    public double crossEntropy(float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale) {
        int count = 0;
        for (int r = 0; r < rows; r++) {
            int target = targets[r];
            if (target == IGNORE_INDEX) continue;
            if (target < 0 || target >= vocab)
                throw new IllegalArgumentException("target " + target + " of row " + r + " is outside the vocabulary [0, " + vocab + ") and not " + IGNORE_INDEX);
            count++;
        }
        double[] rowLoss = new double[rows];
        float g = gradScale / Math.max(1, count);
        int upper = vocab - vocab % L;
        parallelFor(rows, (long) rows * vocab >= PARALLEL_MIN_FMAS / 4, r -> {
            int target = targets[r], off = r * vocab;
            if (target == IGNORE_INDEX) {
                if (dLogits != null) Arrays.fill(dLogits, off, off + vocab, 0f);
                return;
            }
            float max = Float.NEGATIVE_INFINITY;
            int i = 0;
            if (upper > 0) {
                FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
                for (; i < upper; i += L) m = m.max(FloatVector.fromArray(F, logits, off + i));
                max = m.reduceLanes(VectorOperators.MAX);
            }
            for (; i < vocab; i++) max = Math.max(max, logits[off + i]);
            FloatVector sums = FloatVector.zero(F);
            for (i = 0; i < upper; i += L) sums = sums.add(exp(FloatVector.fromArray(F, logits, off + i).sub(max)));
            double sum = sumLanes(sums);
            for (; i < vocab; i++) sum += (float) Math.exp(logits[off + i] - max);
            float targetLogit = logits[off + target];
            rowLoss[r] = Math.log(sum) + max - targetLogit;
            if (dLogits != null) {
                float scaleByInv = (float) (1.0 / sum) * g;
                for (i = 0; i < upper; i += L)
                    exp(FloatVector.fromArray(F, logits, off + i).sub(max)).mul(scaleByInv).intoArray(dLogits, off + i);
                for (; i < vocab; i++) dLogits[off + i] = (float) Math.exp(logits[off + i] - max) * scaleByInv;
                dLogits[off + target] -= g;
            }
        });
        double lossSum = 0;
        for (int r = 0; r < rows; r++) lossSum += rowLoss[r];
        return count == 0 ? Double.NaN : lossSum / count;
    }

    @Override
    public void addScaled(float[] x, float[] y, float a, int n) {
        addScaled(x, 0, y, 0, a, n);
    }

    /** x[xo + i] += a·y[yo + i], i &lt; n */
    private static void addScaled(float[] x, int xo, float[] y, int yo, float a, int n) {
        int i = 0;
        for (int upper = n - n % L; i < upper; i += L)
            FloatVector.fromArray(F, y, yo + i).fma(FloatVector.broadcast(F, a), FloatVector.fromArray(F, x, xo + i)).intoArray(x, xo + i);
        for (; i < n; i++) x[xo + i] += a * y[yo + i];
    }

    // ================================================================ Mixture of Experts
    // Routing and the weighted sum are per-token loops cut into token chunks (by shape only); the grouped
    // matmul runs each expert's row range through the same GEMM / GEMV code as matmul, reading x and
    // writing out in place at the range's offset (no copies of the rows).

    /** tokens per task in routeTopK and combineExperts */
    static final int MOE_TOKENS_PER_TASK = 64;

    @Override
    public void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k) {
        MoeChecks.routeTopK(expertIds, expertWeights, routerLogits, n, numExperts, k);
        int tasks = (n + MOE_TOKENS_PER_TASK - 1) / MOE_TOKENS_PER_TASK;
        parallelFor(tasks, (long) n * numExperts * k >= PARALLEL_MIN_FMAS / 4, task -> {
            for (int t = task * MOE_TOKENS_PER_TASK, end = Math.min(n, t + MOE_TOKENS_PER_TASK); t < end; t++)
                routeToken(expertIds, expertWeights, routerLogits, t, numExperts, k);
        });
    }

    /** top-k of one token by repeated selection (k and E are small): strict > keeps the lower index on ties */
    private static void routeToken(int[] expertIds, float[] expertWeights, float[] routerLogits, int t, int numExperts, int k) {
        int row = t * numExperts, out = t * k;
        long taken = 0; // bit e set once expert e is chosen (E ≤ 64); larger E falls back to a scan of chosen ids
        for (int s = 0; s < k; s++) {
            int best = -1;
            for (int e = 0; e < numExperts; e++) {
                if (isTaken(taken, expertIds, out, s, e)) continue;
                if (best < 0 || routerLogits[row + e] > routerLogits[row + best]) best = e;
            }
            if (best < 64) taken |= 1L << best;
            expertIds[out + s] = best;
            expertWeights[out + s] = routerLogits[row + best];
        }
        // softmax over the k chosen logits; the first is the largest (NaN propagates as in the reference)
        float max = expertWeights[out];
        double sum = 0;
        for (int s = 0; s < k; s++) {
            float e = (float) Math.exp(expertWeights[out + s] - max);
            expertWeights[out + s] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (int s = 0; s < k; s++) expertWeights[out + s] *= inv;
    }

    private static boolean isTaken(long taken, int[] expertIds, int out, int chosen, int e) {
        if (e < 64) return (taken & (1L << e)) != 0;
        for (int s = 0; s < chosen; s++) if (expertIds[out + s] == e) return true;
        return false;
    }

    @Override
    public void gather(float[] out, float[] x, int[] rows, int count, int width) {
        int rowsPerTask = Math.max(1, (1 << 14) / Math.max(1, width)), tasks = (count + rowsPerTask - 1) / rowsPerTask;
        parallelFor(tasks, (long) count * width >= PARALLEL_MIN_FMAS, t -> {
            for (int r = t * rowsPerTask, end = Math.min(count, r + rowsPerTask); r < end; r++)
                System.arraycopy(x, rows[r] * width, out, r * width, width);
        });
    }

    /**
     * Experts with fewer than {@value #GEMM_MIN_ROWS} rows run as GEMVs on their rows. The others run as one grouped
     * GEMM ({@link #groupedGemm}: all experts' tiles in a single parallel loop, so a pool hand-off is paid once per
     * call, not once per expert).
     */
    @Override
    public void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias) {
        MoeChecks.groupedMatmul(out, x, offsets, w, bias);
        groupedMatmuls(new float[][] {out}, x, null, offsets, new Tensor[][] {w}, bias);
    }

    /**
     * Both of the MoE layer's input matmuls in one grouped GEMM, x's rows read in place through xRows (no gathered
     * copy): the tiles of gate and up share one parallel loop (one pool hand-off, and the threads balance over both).
     * Each output gets the same bits as gather + {@link #groupedMatmul}.
     */
    @Override
    public void groupedMatmul2(float[] outGate, float[] outUp, float[] x, int[] xRows, int[] offsets, Tensor[] wGate, Tensor[] wUp) {
        MoeChecks.groupedMatmul2(outGate, outUp, x, xRows, offsets, wGate, wUp);
        groupedMatmuls(new float[][] {outGate, outUp}, x, xRows, offsets, new Tensor[][] {wGate, wUp}, null);
    }

    /**
     * outs[s] = grouped x · w[s][e]ᵀ (+ bias, only with one set) for each set s of expert weights of one shape (N, K);
     * permuted row r reads x's row r, or x's row xRows[r] where xRows is given
     */
    private void groupedMatmuls(float[][] outs, float[] x, int[] xRows, int[] offsets, Tensor[][] w, Tensor[] bias) {
        int n = w[0][0].rows(), k = w[0][0].cols(), experts = w[0].length;
        long gemmRows = 0;
        for (int e = 0; e < experts; e++) {
            int m = offsets[e + 1] - offsets[e];
            if (m >= GEMM_MIN_ROWS) gemmRows += m;
        }
        for (int set = 0; set < outs.length; set++)
            for (int e = 0; e < experts; e++) {
                int row0 = offsets[e], m = offsets[e + 1] - row0;
                if (m == 0) continue;
                if (m < GEMM_MIN_ROWS) {
                    if (xRows == null) {
                        gemvRows(outs[set], x, row0, m, w[set][e], n, k);
                    } else { // a few rows: gathered, multiplied, copied out
                        float[] xs = new float[m * k], part = new float[m * n];
                        for (int r = 0; r < m; r++) System.arraycopy(x, xRows[row0 + r] * k, xs, r * k, k);
                        gemvRows(part, xs, 0, m, w[set][e], n, k);
                        System.arraycopy(part, 0, outs[set], row0 * n, m * n);
                    }
                }
            }
        if (gemmRows > 0) groupedGemm(outs, x, xRows, offsets, w, n, k, gemmRows);
        for (int e = 0; e < experts; e++) {
            int row0 = offsets[e], m = offsets[e + 1] - row0;
            if (m > 0 && bias != null && bias[e] != null) addBiasRows(outs[0], row0, m, bias[e], n);
        }
    }

    /** rows of x per grouped-GEMM task (32 micro-kernel panels) */
    static final int GROUPED_TILE_ROWS = 32 * MR;

    /**
     * The GEMM experts (≥ {@value #GEMM_MIN_ROWS} rows) of one or more grouped matmuls over the same x in one go, x's
     * rows read in place (row r, or row xRows[r] where given). Tasks: (set, expert, row tile, column tile), by shape
     * only; each packs the panels of its expert's w that it uses as it goes, as in {@link #gemm} (small read-only
     * experts come packed whole from {@link PackedWeights}), and every output element is summed in the same order as
     * there, so the bits equal a plain matmul's on the expert's rows.
     */
    private void groupedGemm(float[][] outs, float[] x, int[] xRows, int[] offsets, Tensor[][] w, int n, int k, long gemmRows) {
        int sets = outs.length, experts = w[0].length;
        boolean parallel = sets * gemmRows * n * k >= PARALLEL_MIN_FMAS;
        float[][] cached = new float[sets * experts][]; // small read-only experts: packed whole, from the cache
        for (int g = 0; g < sets * experts; g++)
            if (offsets[g % experts + 1] - offsets[g % experts] >= GEMM_MIN_ROWS) cached[g] = cachedPacked(w[g / experts][g % experts], n, k);
        // tasks: (set, expert, row tile, column tile); group g = set · experts + e
        int nc = 4 * NR, nTiles = (n + nc - 1) / nc, groups = sets * experts;
        int[] taskStart = new int[groups + 1];
        for (int g = 0; g < groups; g++) {
            int e = g % experts, m = offsets[e + 1] - offsets[e];
            int mTiles = m < GEMM_MIN_ROWS ? 0 : (m + GROUPED_TILE_ROWS - 1) / GROUPED_TILE_ROWS;
            taskStart[g + 1] = taskStart[g] + mTiles * nTiles;
        }
        // largest tiles first (longest-processing-time order), so no thread is left with a big tile at the end;
        // the order changes only which thread computes a tile, never the tile's bits
        int tasks = taskStart[groups];
        Integer[] bySize = new Integer[tasks];
        long[] tileRows = new long[tasks];
        for (int g = 0; g < groups; g++)
            for (int task = taskStart[g]; task < taskStart[g + 1]; task++) {
                int e = g % experts, mt = (task - taskStart[g]) / nTiles, m = offsets[e + 1] - offsets[e];
                tileRows[task] = Math.min(m, (mt + 1) * GROUPED_TILE_ROWS) - mt * GROUPED_TILE_ROWS;
                bySize[task] = task;
            }
        Arrays.sort(bySize, (a, b) -> tileRows[a] != tileRows[b] ? Long.compare(tileRows[b], tileRows[a]) : Integer.compare(a, b));
        parallelFor(tasks, parallel, i -> {
            int task = bySize[i], g = 0;
            while (taskStart[g + 1] <= task) g++;
            int e = g % experts, local = task - taskStart[g], mt = local / nTiles, nt = local % nTiles;
            int row0 = offsets[e], m = offsets[e + 1] - row0;
            int m0 = row0 + mt * GROUPED_TILE_ROWS, m1 = row0 + Math.min(m, (mt + 1) * GROUPED_TILE_ROWS);
            gemmTile(outs[g / experts], n, 0, 0, x, 0, k, xRows, cached[g], cached[g] == null ? w[g / experts][e] : null, false, k, m0, m1, nt * nc, Math.min(n, nt * nc + nc), false);
        });
    }

    /** out rows [row0, row0+m) += bias (N) */
    private static void addBiasRows(float[] out, int row0, int m, Tensor bias, int n) {
        float[] b = new float[n];
        widen(bias, 0, b, 0, n);
        int upper = n - n % L;
        for (int r = row0; r < row0 + m; r++) {
            int o = r * n, i = 0;
            for (; i < upper; i += L) FloatVector.fromArray(F, out, o + i).add(FloatVector.fromArray(F, b, i)).intoArray(out, o + i);
            for (; i < n; i++) out[o + i] += b[i];
        }
    }

    /** {@link #gemv} on rows [row0, row0+m) of x and out, in place */
    private void gemvRows(float[] out, float[] x, int row0, int m, Tensor w, int n, int k) {
        int rowsPerTask = 64;
        int tasks = (n + rowsPerTask - 1) / rowsPerTask;
        boolean parallel = (long) n * k >= GEMV_PARALLEL_MIN_WEIGHTS;
        if (!w.data().isNative()) {
            parallelFor(tasks, parallel, t -> {
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
        parallelFor(tasks, parallel, t -> {
            int n0 = t * rowsPerTask, n1 = Math.min(n, n0 + rowsPerTask);
            for (int r = 0; r < m; r++) {
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

    @Override
    public void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d) {
        int tasks = (n + MOE_TOKENS_PER_TASK - 1) / MOE_TOKENS_PER_TASK;
        int upper = d - d % L;
        parallelFor(tasks, (long) n * k * d >= PARALLEL_MIN_FMAS, task -> {
            for (int t = task * MOE_TOKENS_PER_TASK, end = Math.min(n, t + MOE_TOKENS_PER_TASK); t < end; t++) {
                int o = t * d, i = 0;
                // slot order, multiply then add (no FMA): the same roundings as the scalar reference
                for (; i < upper; i += L) {
                    FloatVector acc = FloatVector.zero(F);
                    for (int s = 0; s < k; s++)
                        acc = acc.add(FloatVector.fromArray(F, expertOut, slotRow[t * k + s] * d + i).mul(expertWeights[t * k + s]));
                    acc.intoArray(y, o + i);
                }
                for (; i < d; i++) {
                    float acc = 0f;
                    for (int s = 0; s < k; s++) acc += expertWeights[t * k + s] * expertOut[slotRow[t * k + s] * d + i];
                    y[o + i] = acc;
                }
            }
        });
    }

    /** tokens cut into chunks (by shape only); each (token, slot) owns its row of dExpertOut, so no two tasks write the same place */
    @Override
    public void combineExpertsBackward(float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                       float[] expertWeights, int n, int k, int d) {
        int tasks = (n + MOE_TOKENS_PER_TASK - 1) / MOE_TOKENS_PER_TASK;
        int upper = d - d % L;
        parallelFor(tasks, (long) n * k * d >= PARALLEL_MIN_FMAS, task -> {
            for (int t = task * MOE_TOKENS_PER_TASK, end = Math.min(n, t + MOE_TOKENS_PER_TASK); t < end; t++) {
                for (int s = 0; s < k; s++) {
                    int r = slotRow[t * k + s], yo = t * d, ro = r * d, i = 0;
                    FloatVector g = FloatVector.broadcast(F, expertWeights[t * k + s]), dot = FloatVector.zero(F);
                    for (; i < upper; i += L) {
                        FloatVector dyv = FloatVector.fromArray(F, dy, yo + i);
                        dyv.mul(g).intoArray(dExpertOut, ro + i);
                        dot = dyv.fma(FloatVector.fromArray(F, expertOut, ro + i), dot);
                    }
                    float acc = sumLanes(dot), gs = expertWeights[t * k + s];
                    for (; i < d; i++) {
                        dExpertOut[ro + i] = gs * dy[yo + i];
                        acc += dy[yo + i] * expertOut[ro + i];
                    }
                    dWeights[t * k + s] = acc;
                }
            }
        });
    }

    /** rows in order (several may add into the same destination row), each row's add vectorized: the scalar reference's roundings */
    @Override
    public void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width) {
        for (int r = 0; r < count; r++) addScaled(x, rows[r] * width, src, r * width, 1f, width);
    }

    // ---------------------------------------------------------------- optimiser

    /** elements per AdamW task: a task streams 16 KiB of each of param, grad, m and v */
    private static final int ADAMW_CHUNK = 4096;

    /**
     * {@link Backend#adamW} element-wise in vectors, in chunks over the pool: the same separate roundings as the plain
     * loop (mul, add, sub, div and a correctly rounded sqrt, never fused), so the bits equal it whatever the threads.
     */
    @Override
    public void adamW(MemorySegment param, float[] grad, float[] m, float[] v, int n, AdamWStep s) {
        s.check(param, grad, m, v, n);
        int tasks = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
        parallelFor(tasks, n >= 4 * ADAMW_CHUNK, t -> adamWRange(param, grad, m, v, t * ADAMW_CHUNK, Math.min(n, t * ADAMW_CHUNK + ADAMW_CHUNK), s));
    }

    private static void adamWRange(MemorySegment param, float[] grad, float[] m, float[] v, int from, int to, AdamWStep s) {
        int i = from;
        for (; i + L <= to; i += L) {
            FloatVector p = FloatVector.fromMemorySegment(F, param, 4L * i, LE);
            if (s.decay()) p = p.mul(s.decayFactor());
            FloatVector g = FloatVector.fromArray(F, grad, i);
            FloatVector mi = FloatVector.fromArray(F, m, i);
            mi = mi.add(g.sub(mi).mul(s.oneMinusBeta1()));
            FloatVector vi = FloatVector.fromArray(F, v, i).mul(s.beta2()).add(g.mul(s.oneMinusBeta2()).mul(g));
            FloatVector denom = vi.sqrt().div(s.sqrtBiasCorrection2()).add(s.eps());
            p = p.sub(mi.div(denom).mul(s.stepSize()));
            mi.intoArray(m, i);
            vi.intoArray(v, i);
            p.intoMemorySegment(param, 4L * i, LE);
        }
        s.applyPlain(param, grad, m, v, i, to);
    }
}
