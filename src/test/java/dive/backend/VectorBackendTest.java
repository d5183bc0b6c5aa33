package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Parity of {@link VectorBackend} with the plain {@link ScalarBackend} on seeded random inputs, at
 * shapes that are not multiples of the vector width (8 or 16 floats) or of the GEMM tiles (6 rows ×
 * 2 vectors, depth 256), for F32, BF16 and F16 weights in heap and in unaligned off-heap memory (as
 * a memory-mapped safetensors file gives them).
 *
 * <p>Tolerance. Both backends round every product and partial sum to F32 but in different orders
 * (vector lanes, K blocks, FMA). Each error is then of order √K·2⁻²⁴ times the size of the terms
 * summed, not of the result: where a sum cancels to near zero its relative error means nothing.
 * So outputs are compared as |vector − scalar| ≤ 1e-5 · max(|scalar|, rms(scalar output)): relative
 * 1e-5 for typical values, and an absolute floor of 1e-5 × the output's RMS for cancelled ones.
 * Ops that do the same arithmetic in the same order (add, embedding, widening) must match exactly.
 *
 * <p>Every output array is poisoned with NaN (and has NaN guard cells past its end) before a call,
 * so an element the kernel forgets to write, or a write past the end, fails the comparison.
 */
class VectorBackendTest {
    private static final int GUARD = 5;
    private final ScalarBackend scalar = new ScalarBackend();
    private final VectorBackend vector = new VectorBackend(2);

    enum Storage { HEAP, OFF_HEAP_UNALIGNED }

    // ---------------------------------------------------------------- helpers

    static float[] random(Random r, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (r.nextFloat() * 2 - 1) * scale;
        return a;
    }

    /** a weight of the given dtype holding {@code values} rounded to that dtype */
    static Tensor weight(String name, DType dtype, Storage storage, float[] values, long... shape) {
        long bytes = (long) values.length * dtype.bytes;
        MemorySegment seg = storage == Storage.HEAP
                ? MemorySegment.ofArray(new byte[(int) bytes])
                : Arena.ofAuto().allocate(bytes + 2, 1).asSlice(2, bytes); // 2-byte offset: unaligned for floats
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> seg.setAtIndex(Tensor.F32, i, values[i]);
                case BF16 -> seg.setAtIndex(Tensor.I16, i, DType.floatToBf16(values[i]));
                case F16 -> seg.setAtIndex(Tensor.I16, i, Float.floatToFloat16(values[i]));
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new Tensor(name, dtype, shape, seg);
    }

    static float[] poisoned(int n) {
        float[] a = new float[n + GUARD];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    static float rms(float[] a, int n) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double) a[i] * a[i];
        return (float) Math.sqrt(ss / Math.max(1, n));
    }

    /** |actual − expected| ≤ relTol · max(|expected|, rms(expected)) on [0, n); guard cells stay NaN */
    static void assertClose(float[] expected, float[] actual, int n, double relTol, String what) {
        float floor = rms(expected, n);
        for (int i = 0; i < n; i++) {
            float e = expected[i], a = actual[i];
            assertFalse(Float.isNaN(a) && !Float.isNaN(e), what + ": element " + i + " not written (NaN)");
            double bound = relTol * Math.max(Math.abs(e), floor);
            assertTrue(Math.abs(a - e) <= bound, what + ": element " + i + " is " + a + ", expected " + e + " ± " + bound);
        }
        for (int i = n; i < actual.length; i++) assertTrue(Float.isNaN(actual[i]), what + ": wrote past the end at " + i);
    }

    // ---------------------------------------------------------------- matmul

    @Test
    void matmulMatchesScalarAtAwkwardShapes() {
        Random r = new Random(42);
        int[] ms = {1, 2, 3, 4, 5, 7, 17, 64};
        int[][] nks = {{33, 257}, {257, 33}, {64, 64}, {1, 5}, {130, 300}};
        for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
            for (Storage storage : Storage.values()) {
                for (int[] nk : nks) {
                    int n = nk[0], k = nk[1];
                    Tensor w = weight("w", dtype, storage, random(r, n * k, 1f), n, k);
                    for (int m : ms) checkMatmul(r, m, w, dtype + " " + storage + " m=" + m + " n=" + n + " k=" + k);
                }
            }
        }
    }

    @Test
    void matmulMatchesScalarAcrossSeveralDepthBlocksAndTasks() {
        // K > 2·256 (three packed depth blocks, the last partial), N over several column tiles, M over row tiles
        Random r = new Random(7);
        for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
            int m = 70, n = 301, k = 613;
            Tensor w = weight("w", dtype, Storage.OFF_HEAP_UNALIGNED, random(r, n * k, 0.5f), n, k);
            checkMatmul(r, m, w, dtype + " m=" + m + " n=" + n + " k=" + k);
            checkMatmul(r, 1, w, dtype + " gemv n=" + n + " k=" + k);
        }
    }

    /**
     * A decode batch on a large model's BF16/F16 weight (not cached packed) runs as GEMV with rows of x in groups of 4:
     * every row's result has the bits of that row computed alone, so batching sequences does not change them.
     */
    @Test
    void batchedGemvRowsHaveTheBitsOfSingleRows() {
        Random r = new Random(11);
        for (DType dtype : new DType[]{DType.BF16, DType.F16}) {
            int n = 67, k = 2 * VectorSupport.L * 5 + 3;  // odd rows (a last single row), a depth tail past the pairs
            Tensor w = weight("w", dtype, Storage.OFF_HEAP_UNALIGNED, random(r, n * k, 1f), n, k);
            for (int m : new int[] {4, 5, 9, VectorMatmul.GEMV_BATCH_MAX_ROWS - 1}) {
                float[] x = random(r, m * k, 1f), batched = new float[m * n], single = new float[n];
                vector.matmul(batched, x, m, w);
                for (int q = 0; q < m; q++) {
                    vector.matmul(single, Arrays.copyOfRange(x, q * k, q * k + k), 1, w);
                    for (int j = 0; j < n; j++)
                        assertEquals(Float.floatToRawIntBits(single[j]), Float.floatToRawIntBits(batched[q * n + j]),
                                dtype + " m=" + m + " row " + q + " col " + j);
                }
            }
        }
    }

    private void checkMatmul(Random r, int m, Tensor w, String what) {
        int n = w.rows(), k = w.cols();
        float[] x = random(r, m * k, 1f);
        float[] expected = new float[m * n];
        scalar.matmul(expected, x, m, w);
        float[] actual = poisoned(m * n);
        vector.matmul(actual, x, m, w);
        assertClose(expected, actual, m * n, 1e-5, what);
    }

    @Test
    void packPanelWidensAndTransposesEveryElementExactly() {
        // a partial last panel, and a last depth block (37) that is not a multiple of the transposes' 2·L (or L for F32) depths
        Random r = new Random(31);
        int nr = VectorBackend.NR, kcMax = VectorBackend.KC, n = 2 * nr + 5, k = 2 * kcMax + 37;
        for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
            for (Storage storage : Storage.values()) {
                Tensor w = weight("w", dtype, storage, random(r, n * k, 1f), n, k);
                for (int j0 = 0; j0 < n; j0 += nr)
                    for (int k0 = 0; k0 < k; k0 += kcMax) {
                        int cols = Math.min(nr, n - j0), kc = Math.min(kcMax, k - k0);
                        int off = 5;
                        float[] panel = new float[off + kc * nr + 3];
                        Arrays.fill(panel, Float.NaN);
                        VectorBackend.packPanel(w, k, j0, cols, k0, kc, panel, off);
                        for (int kk = 0; kk < kc; kk++)
                            for (int j = 0; j < nr; j++) {
                                float want = j < cols ? w.getFloat((long) (j0 + j) * k + k0 + kk) : 0f;
                                assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(panel[off + kk * nr + j]),
                                        dtype + " " + storage + ": column " + (j0 + j) + ", depth " + (k0 + kk));
                            }
                        for (int i : new int[] {0, off - 1, off + kc * nr, panel.length - 1})
                            assertTrue(Float.isNaN(panel[i]), "wrote outside the panel at " + i);
                    }
            }
        }
    }

    @Test
    void matmulGivesTheSameBitsForEveryWeightStorage() {
        // heap (byte[], float[]) or unaligned off-heap w packed panel by panel, and read-only w packed whole once (cached):
        // the same packed panels, so the same bits
        Random r = new Random(32);
        int m = 70, n = 301, k = 613;
        for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
            float[] values = random(r, n * k, 0.5f), x = random(r, m * k, 1f);
            List<Tensor> ws = new ArrayList<>();
            for (Storage storage : Storage.values()) ws.add(weight("w", dtype, storage, values, n, k));
            Tensor offHeap = ws.get(ws.size() - 1);
            ws.add(new Tensor("w", dtype, offHeap.shape(), offHeap.data().asReadOnly())); // as a mapped checkpoint
            if (dtype == DType.F32) ws.add(Tensor.ofFloats("w", values, n, k));
            float[] first = null;
            for (Tensor w : ws) {
                float[] out = poisoned(m * n);
                vector.matmul(out, x, m, w);
                if (first == null) first = out;
                else assertArrayEquals(first, out, dtype + ": " + w.data());
            }
        }
    }

    /**
     * x one-hot at column i gives out[n] = w[n, i] exactly, so this checks the in-register BF16/F16
     * widening of the GEMV (even/odd lanes) and GEMM (packing) paths against the JDK's own conversion
     * ({@link Float#float16ToFloat}) and the bf16 definition, over every finite 16-bit pattern.
     */
    @Test
    void halfWidthWeightsWidenExactlyForEveryBitPattern() {
        int k = 64, n = 65536 / k;
        for (DType dtype : new DType[]{DType.F16, DType.BF16}) {
            MemorySegment seg = Arena.ofAuto().allocate(65536L * 2 + 2, 1).asSlice(2, 65536L * 2);
            float[] truth = new float[65536];
            for (int bits = 0; bits < 65536; bits++) {
                short h = (short) bits;
                float f = dtype == DType.F16 ? Float.float16ToFloat(h) : DType.bf16ToFloat(h);
                if (!Float.isFinite(f)) { h = 0; f = 0f; } // inf·0 would be NaN in the sum; inf/NaN checked below
                seg.setAtIndex(Tensor.I16, bits, h);
                truth[bits] = f;
            }
            Tensor w = new Tensor("all-patterns", dtype, new long[]{n, k}, seg);
            for (int m : new int[]{1, 6}) { // GEMV and GEMM
                for (int i = 0; i < k; i++) {
                    float[] x = new float[m * k];
                    for (int row = 0; row < m; row++) x[row * k + i] = 1f;
                    float[] out = poisoned(m * n);
                    vector.matmul(out, x, m, w);
                    for (int row = 0; row < m; row++)
                        for (int j = 0; j < n; j++)
                            assertEquals(truth[j * k + i], out[row * n + j], 0f, dtype + " m=" + m + " pattern 0x" + Integer.toHexString(j * k + i));
                }
            }
        }
    }

    @Test
    void embeddingWidensInfNanAndSubnormalsExactly() {
        for (DType dtype : new DType[]{DType.F16, DType.BF16}) {
            MemorySegment seg = Arena.ofAuto().allocate(65536L * 2);
            for (int bits = 0; bits < 65536; bits++) seg.setAtIndex(Tensor.I16, bits, (short) bits);
            Tensor table = new Tensor("all-patterns", dtype, new long[]{1024, 64}, seg);
            int[] ids = new int[1024];
            for (int i = 0; i < ids.length; i++) ids[i] = i;
            float[] out = poisoned(65536);
            vector.embedding(out, table, ids);
            for (int bits = 0; bits < 65536; bits++) {
                float want = dtype == DType.F16 ? Float.float16ToFloat((short) bits) : DType.bf16ToFloat((short) bits);
                if (Float.isNaN(want)) assertTrue(Float.isNaN(out[bits]), dtype + " 0x" + Integer.toHexString(bits));
                else assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(out[bits]), dtype + " 0x" + Integer.toHexString(bits));
            }
        }
    }

    /**
     * The backward GEMMs sum every output element in the kernel's order, whatever the tiling, storage or thread count:
     * depth blocks of KC in order, each an FMA chain from zero, then added to the output (dx: the first block stored).
     */
    @Test
    void backwardGemmsSumInKernelOrderForEveryThreadCount() {
        Random r = new Random(41);
        int kc = VectorBackend.KC;
        int[][] shapes = {{37, 2 * kc + 45, 3 * VectorBackend.NR + 7}, {13, 301, 70}, {1, 20, 5}, {25, kc, 2 * VectorBackend.NR}, {300, 33, 613}};
        for (int threads : new int[]{1, 3}) {
            VectorBackend backend = new VectorBackend(threads);
            for (int[] s : shapes) {
                int m = s[0], n = s[1], k = s[2];
                for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
                    for (Storage storage : Storage.values()) {
                        Tensor w = weight("w", dtype, storage, random(r, n * k, 0.5f), n, k);
                        float[] dOut = random(r, m * n, 1f), want = new float[m * k];
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < k; j++) {
                                float o = 0f;
                                for (int d0 = 0; d0 < n; d0 += kc) {
                                    float acc = 0f;
                                    for (int d = d0; d < Math.min(n, d0 + kc); d++) acc = Math.fma(dOut[i * n + d], w.getFloat((long) d * k + j), acc);
                                    o = d0 == 0 ? acc : o + acc;
                                }
                                want[i * k + j] = o;
                            }
                        float[] dx = poisoned(m * k);
                        backend.matmulBackwardInput(dx, dOut, m, w);
                        for (int i = 0; i < m * k; i++)
                            assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(dx[i]),
                                    "dx[" + i + "] " + dtype + " " + storage + " " + Arrays.toString(s) + " threads " + threads);
                        for (int i = m * k; i < dx.length; i++) assertTrue(Float.isNaN(dx[i]), "dx guard " + i);
                    }
                }
                float[] dOut = random(r, m * n, 1f), x = random(r, m * k, 1f), dw = random(r, n * k, 1f), want = dw.clone();
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < k; j++)
                        for (int d0 = 0; d0 < m; d0 += kc) {
                            float acc = 0f;
                            for (int d = d0; d < Math.min(m, d0 + kc); d++) acc = Math.fma(dOut[d * n + i], x[d * k + j], acc);
                            want[i * k + j] += acc;
                        }
                backend.matmulBackwardWeight(dw, dOut, x, m, n, k);
                for (int i = 0; i < n * k; i++)
                    assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(dw[i]), "dw[" + i + "] " + Arrays.toString(s) + " threads " + threads);
            }
        }
    }

    @Test
    void matmulRejectsBadInput() {
        Tensor ints = new Tensor("model.layers.0.mlp.up_proj.weight", DType.I32, new long[]{2, 2}, MemorySegment.ofArray(new byte[16]));
        var e = assertThrows(IllegalArgumentException.class, () -> vector.matmul(new float[4], new float[4], 2, ints));
        assertTrue(e.getMessage().contains("up_proj") && e.getMessage().contains("I32"), e.getMessage());
        Tensor w = Tensor.ofFloats("w", new float[6], 2, 3);
        assertThrows(IllegalArgumentException.class, () -> vector.matmul(new float[4], new float[5], 2, w));
        assertThrows(IllegalArgumentException.class, () -> vector.matmul(new float[3], new float[6], 2, w));
    }

    // ---------------------------------------------------------------- concurrency and thread-count independence

    @Test
    void concurrentCallsGiveTheSameBitsAsOneThread() throws Exception {
        Random r = new Random(3);
        VectorBackend one = new VectorBackend(1);
        VectorBackend many = new VectorBackend(3);
        // all above the parallel thresholds; {1, 1024, 256} and {3, 1100, 256}: GEMVs that only the spinning crew runs in parallel
        int[][] problems = {{1, 2048, 300}, {128, 256, 300}, {37, 500, 129}, {2, 1500, 400}, {1, 1024, 256}, {3, 1100, 256}};
        List<float[]> xs = new ArrayList<>(), refs = new ArrayList<>();
        List<Tensor> ws = new ArrayList<>();
        for (int[] p : problems) {
            int m = p[0], n = p[1], k = p[2];
            Tensor w = weight("w", p[0] % 2 == 0 ? DType.BF16 : DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, n * k, 1f), n, k);
            float[] x = random(r, m * k, 1f);
            float[] ref = new float[m * n];
            one.matmul(ref, x, m, w);
            float[] again = new float[m * n];
            many.matmul(again, x, m, w);
            assertArrayEquals(ref, again, "3 threads vs 1 thread, problem " + Arrays.toString(p));
            xs.add(x); ws.add(w); refs.add(ref);
        }
        ExecutorService callers = Executors.newFixedThreadPool(8);
        try {
            List<Future<?>> done = new ArrayList<>();
            for (int c = 0; c < 16; c++) {
                int first = c;
                done.add(callers.submit(() -> {
                    for (int rep = 0; rep < 6; rep++) {
                        int p = (first + rep) % problems.length;
                        float[] out = poisoned(refs.get(p).length);
                        many.matmul(out, xs.get(p), problems[p][0], ws.get(p));
                        assertArrayEquals(refs.get(p), Arrays.copyOf(out, refs.get(p).length), "concurrent call, problem " + p);
                    }
                    return null;
                }));
            }
            for (Future<?> f : done) f.get();
        } finally {
            callers.shutdownNow();
        }
    }

    @Test
    void crewLoopsRunEveryIndexOnceNestAndRethrow() {
        VectorSupport.Workers workers = VectorSupport.Workers.of(3);
        for (int rep = 0; rep < 200; rep++) {
            int tasks = 1 + rep % 17;
            java.util.concurrent.atomic.AtomicIntegerArray runs = new java.util.concurrent.atomic.AtomicIntegerArray(tasks * tasks);
            workers.parallelFor(tasks, true, i -> workers.parallelFor(tasks, true, j -> runs.incrementAndGet(i * tasks + j)));
            for (int i = 0; i < tasks * tasks; i++) assertEquals(1, runs.get(i), "index " + i + " of " + tasks + "², rep " + rep);
        }
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> workers.parallelFor(8, true, i -> {
            if (i == 5) throw new IllegalStateException("index 5");
        }));
        assertEquals("index 5", e.getMessage());
        int[] after = new int[8];
        workers.parallelFor(8, true, i -> after[i] = i + 1);  // the crew still works after a failure
        assertArrayEquals(new int[]{1, 2, 3, 4, 5, 6, 7, 8}, after);
    }

    @Test
    void idleCrewHelpersEndAndComeBack() throws Exception {
        VectorSupport.Crew crew = new VectorSupport.Crew(2, 20_000_000L);
        int[] out = new int[16];
        assertTrue(crew.tryRun(16, i -> out[i] = i));
        for (int deadline = 0; crew.helpersAlive() > 0 && deadline < 400; deadline++) Thread.sleep(10);
        assertEquals(0, crew.helpersAlive(), "idle helpers end");
        int[] again = new int[16];
        // restarts them (the caller alone would do as well); false only within a back-off after a stall on a busy machine
        for (int tries = 0; !crew.tryRun(16, i -> again[i] = 2 * i); tries++) {
            assertTrue(tries < 100, "the crew backs off for good");
            Thread.sleep(10);
        }
        assertEquals(2, crew.helpersAlive());
        for (int i = 0; i < 16; i++) assertEquals(i, out[i]);
        for (int i = 0; i < 16; i++) assertEquals(2 * i, again[i]);
    }

    @Test
    void threadCountIsAllCoresOrAsGivenAndIsValidated() {
        assertEquals(3, new VectorBackend(3).threads());
        assertEquals(Runtime.getRuntime().availableProcessors(), new VectorBackend().threads());
        assertThrows(IllegalArgumentException.class, () -> new VectorBackend(0));
    }

    // ---------------------------------------------------------------- the other ops

    @Test
    void rmsNormMatchesScalar() {
        Random r = new Random(11);
        for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
            for (int d : new int[]{1, 33, 256, 257}) {
                for (int rows : new int[]{1, 3, 7}) {
                    Tensor g = weight("norm", dtype, Storage.OFF_HEAP_UNALIGNED, random(r, d, 2f), d);
                    float[] x = random(r, rows * d, 3f);
                    float[] expected = new float[rows * d];
                    scalar.rmsNorm(expected, x, g, rows, 1e-5f);
                    float[] actual = poisoned(rows * d);
                    vector.rmsNorm(actual, x, g, rows, 1e-5f);
                    assertClose(expected, actual, rows * d, 1e-5, "rmsNorm " + dtype + " d=" + d + " rows=" + rows);
                    float[] inPlace = x.clone(); // out may be x
                    vector.rmsNorm(inPlace, inPlace, g, rows, 1e-5f);
                    assertClose(expected, inPlace, rows * d, 1e-5, "rmsNorm in place " + dtype + " d=" + d);
                }
            }
        }
    }

    @Test
    void ropeMatchesScalar() {
        Random r = new Random(5);
        for (int headDim : new int[]{2, 8, 32, 34, 64, 128}) {
            for (int heads : new int[]{1, 3}) {
                int rows = 5, half = headDim / 2;
                float[] invFreq = new float[half];
                for (int i = 0; i < half; i++) invFreq[i] = (float) Math.pow(10000.0, -2.0 * i / headDim);
                int[] positions = {0, 1, 17, 511, 4000};
                float[] x = random(r, rows * heads * headDim, 1f);
                float[] expected = x.clone();
                scalar.rope(expected, rows, heads, headDim, positions, invFreq);
                float[] actual = x.clone();
                vector.rope(actual, rows, heads, headDim, positions, invFreq);
                assertClose(expected, actual, x.length, 1e-6, "rope headDim=" + headDim + " heads=" + heads);
            }
        }
    }

    @Test
    void attentionMatchesScalarForPrefillAndDecodeWithGqa() {
        Random r = new Random(9);
        int[][] headConfigs = {{4, 4}, {4, 2}, {8, 2}}; // group sizes 1, 2, 4
        for (int[] hc : headConfigs) {
            int nHeads = hc[0], nKv = hc[1];
            for (int headDim : new int[]{8, 32, 40, 64}) {
                for (int[] ts : new int[][]{{1, 0}, {5, 0}, {17, 0}, {1, 30}, {3, 7}, {9, 30}, {64, 40}}) {
                    int T = ts[0], startPos = ts[1], maxSeq = startPos + T + 3;
                    float[] q = random(r, T * nHeads * headDim, 1f);
                    float[] kCache = random(r, maxSeq * nKv * headDim, 1f);
                    float[] vCache = random(r, maxSeq * nKv * headDim, 1f);
                    // positions past startPos+T−1 must not be read: make them poison
                    Arrays.fill(kCache, (startPos + T) * nKv * headDim, kCache.length, Float.NaN);
                    Arrays.fill(vCache, (startPos + T) * nKv * headDim, vCache.length, Float.NaN);
                    float scale = (float) (1 / Math.sqrt(headDim));
                    int n = T * nHeads * headDim;
                    float[] expected = new float[n];
                    scalar.attention(expected, q, kCache, vCache, T, startPos, nHeads, nKv, headDim, scale);
                    float[] actual = poisoned(n);
                    vector.attention(actual, q, kCache, vCache, T, startPos, nHeads, nKv, headDim, scale);
                    assertClose(expected, actual, n, 1e-5, "attention heads=" + nHeads + "/" + nKv + " hd=" + headDim + " T=" + T + " start=" + startPos);
                }
            }
        }
    }

    @Test
    void swigluMatchesScalarIncludingSaturation() {
        Random r = new Random(13);
        for (int n : new int[]{1, 7, 16, 33, 1000}) {
            float[] gate = random(r, n, 12f), up = random(r, n, 2f);
            if (n > 4) { gate[0] = -100f; gate[1] = 100f; gate[2] = 0f; gate[3] = -1e-30f; }
            float[] expected = new float[n];
            scalar.swiglu(expected, gate, up, n);
            float[] actual = poisoned(n);
            vector.swiglu(actual, gate, up, n);
            assertClose(expected, actual, n, 1e-6, "swiglu n=" + n);
            float[] aliased = gate.clone(); // out may alias gate
            vector.swiglu(aliased, aliased, up, n);
            assertClose(expected, aliased, n, 1e-6, "swiglu aliased n=" + n);
        }
    }

    /** the lane e^x against Math.exp over its whole range: normal, subnormal, underflow to 0, overflow to ∞, NaN */
    @Test
    void vectorExpIsWithinTwoUlpOfMathExp() {
        int lanes = VectorBackend.L;
        Random r = new Random(29);
        float[] x = new float[lanes * 20000];
        for (int i = 0; i < x.length; i++) x[i] = (r.nextFloat() * 2 - 1) * 110f;
        float[] special = {0f, -0f, 1f, -1f, 88.7f, 88.73f, -87.3f, -100f, -103.5f, -110f, 200f, -200f,
                Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 1e-8f};
        System.arraycopy(special, 0, x, 0, special.length);
        for (int i = 0; i < x.length; i += lanes) {
            float[] got = new float[lanes];
            VectorBackend.exp(jdk.incubator.vector.FloatVector.fromArray(VectorBackend.F, x, i)).intoArray(got, 0);
            for (int l = 0; l < lanes; l++) {
                float want = (float) Math.exp(x[i + l]);
                if (Float.isNaN(want)) { assertTrue(Float.isNaN(got[l]), "exp(" + x[i + l] + ")"); continue; }
                if (want < Float.MIN_NORMAL) { // subnormal: absolute error within 2 ulp of the smallest step
                    assertEquals(want, got[l], 2 * Float.MIN_VALUE, "exp(" + x[i + l] + ")");
                    continue;
                }
                if (Float.isInfinite(want)) { assertEquals(want, got[l], "exp(" + x[i + l] + ")"); continue; }
                int ulps = Math.abs(Float.floatToIntBits(want) - Float.floatToIntBits(got[l]));
                assertTrue(ulps <= 2, "exp(" + x[i + l] + ") = " + got[l] + ", Math.exp gives " + want + " (" + ulps + " ulp)");
            }
        }
    }

    @Test
    void softmaxMatchesScalarAtAnOffset() {
        Random r = new Random(17);
        for (int n : new int[]{1, 7, 16, 33, 1000}) {
            int off = 3;
            float[] x = random(r, off + n + 2, 20f);
            x[off] = 85f; // e^85 overflows F32 without the max subtraction
            float[] expected = x.clone();
            scalar.softmax(expected, off, n);
            float[] actual = x.clone();
            vector.softmax(actual, off, n);
            for (int i = 0; i < off; i++) assertEquals(x[i], actual[i], 0f, "softmax touched element " + i + " before off");
            for (int i = off + n; i < x.length; i++) assertEquals(x[i], actual[i], 0f, "softmax touched element " + i + " after off+n");
            assertClose(Arrays.copyOfRange(expected, off, off + n), Arrays.copyOfRange(actual, off, off + n), n, 1e-6, "softmax n=" + n);
        }
    }

    @Test
    void embeddingMatchesScalarExactly() {
        Random r = new Random(19);
        for (DType dtype : new DType[]{DType.F32, DType.BF16, DType.F16}) {
            for (Storage storage : Storage.values()) {
                for (int d : new int[]{33, 256}) {
                    int vocab = 50;
                    Tensor table = weight("embed_tokens", dtype, storage, random(r, vocab * d, 1f), vocab, d);
                    int[] ids = {0, 49, 7, 7, 13};
                    float[] expected = new float[ids.length * d];
                    scalar.embedding(expected, table, ids);
                    float[] actual = poisoned(ids.length * d);
                    vector.embedding(actual, table, ids);
                    assertClose(expected, actual, ids.length * d, 0, "embedding " + dtype + " " + storage + " d=" + d);
                }
            }
        }
        Tensor table = Tensor.ofFloats("embed_tokens", new float[6], 3, 2);
        var e = assertThrows(IllegalArgumentException.class, () -> vector.embedding(new float[2], table, new int[]{3}));
        assertTrue(e.getMessage().contains("token id 3"), e.getMessage());
    }

    @Test
    void addMatchesScalarExactly() {
        Random r = new Random(23);
        for (int n : new int[]{1, 15, 16, 17, 1001}) {
            float[] x = random(r, n + 3, 1f), y = random(r, n + 3, 1f);
            float[] expected = x.clone();
            scalar.add(expected, y, n);
            float[] actual = x.clone();
            vector.add(actual, y, n);
            assertArrayEquals(expected, actual, "add n=" + n + " (elements past n untouched)");
        }
    }

    /**
     * The same call gives the same bits before and after the JIT compiles it: Vector API float reductions
     * (reduceLanes ADD/MUL) leave their order open and differ between the interpreted and compiled forms, which
     * once made a resumed training run differ from a straight one in the last bit. A few thousand calls take a
     * kernel through the interpreter, C1 and C2.
     */
    @Test
    void combineExpertsBackwardGivesTheSameBitsBeforeAndAfterCompilation() {
        Random r = new Random(5);
        int n = 3, k = 2, d = 2 * VectorBackend.L + 3;
        float[] dy = random(r, n * d, 1f), expertOut = random(r, n * k * d, 1f), weights = random(r, n * k, 1f);
        int[] slotRow = {4, 1, 0, 5, 3, 2};
        float[] firstOut = new float[n * k * d], firstWeights = new float[n * k];
        vector.combineExpertsBackward(firstOut, firstWeights, dy, expertOut, slotRow, weights, n, k, d);
        float[] out = new float[n * k * d], dWeights = new float[n * k];
        for (int call = 0; call < 20_000; call++) {
            vector.combineExpertsBackward(out, dWeights, dy, expertOut, slotRow, weights, n, k, d);
            if (!Arrays.equals(firstWeights, dWeights) || !Arrays.equals(firstOut, out))
                fail("call " + call + " differs from the first: " + Arrays.toString(dWeights) + " vs " + Arrays.toString(firstWeights));
        }
    }

    /** no float reduction of open order anywhere in the CPU backend's sources (see the test above) */
    @Test
    void noFloatReductionOfOpenOrderInTheSources() throws Exception {
        java.nio.file.Path src = java.nio.file.Path.of("src/main/java");
        assertTrue(java.nio.file.Files.isDirectory(src), "run from the project root");
        var pattern = java.util.regex.Pattern.compile("reduceLanes\\(\\s*(VectorOperators\\.)?(ADD|MUL)");
        List<String> offenders = new ArrayList<>();
        try (var files = java.nio.file.Files.walk(src)) {
            for (var f : (Iterable<java.nio.file.Path>) files.filter(p -> p.toString().endsWith(".java"))::iterator) {
                List<String> lines = java.nio.file.Files.readAllLines(f);
                for (int i = 0; i < lines.size(); i++)
                    if (pattern.matcher(lines.get(i).replaceAll("^\\s*(\\*|//).*", "")).find()) offenders.add(f + ":" + (i + 1)); // code, not comments
            }
        }
        assertEquals(List.of(), offenders, "use VectorSupport.sumLanes (a fixed order) instead of reduceLanes(ADD)");
    }

    /** AdamW: the vector, multithreaded update gives the plain loop's bits (unaligned off-heap params, odd sizes, decay on/off) */
    @Test
    void adamWMatchesThePlainLoopExactly() {
        Random r = new Random(31);
        CpuBackend plain = scalar;  // ScalarBackend keeps the default: the plain loop
        for (int n : new int[]{1, 15, 17, 4095, 4 * 4096 + 3, 70_001}) {
            for (boolean decay : new boolean[]{false, true}) {
                float[] p0 = random(r, n, 1f), g = random(r, n, 0.1f), m0 = random(r, n, 0.01f), v0 = new float[n];
                for (int i = 0; i < n; i++) v0[i] = Math.abs(random(r, 1, 1e-3f)[0]);
                var step = new Backend.AdamWStep(decay, 0.9999f, 1.3e-3f, 0.0447f, 0.1f, 0.999f, 0.001f, 1e-8f);
                Arena arena = Arena.ofAuto();
                MemorySegment want = arena.allocate(4L * n + 4).asSlice(4), got = arena.allocate(4L * n + 4).asSlice(4); // unaligned by 4 bytes
                for (int i = 0; i < n; i++) { want.setAtIndex(Tensor.F32, i, p0[i]); got.setAtIndex(Tensor.F32, i, p0[i]); }
                float[] mWant = m0.clone(), vWant = v0.clone(), mGot = m0.clone(), vGot = v0.clone();
                plain.adamW(want, g, mWant, vWant, n, step);
                for (VectorBackend b : new VectorBackend[]{vector, new VectorBackend(3)}) {
                    if (b != vector) {
                        for (int i = 0; i < n; i++) got.setAtIndex(Tensor.F32, i, p0[i]);
                        mGot = m0.clone(); vGot = v0.clone();
                    }
                    b.adamW(got, g, mGot, vGot, n, step);
                    assertArrayEquals(mWant, mGot, "m, n=" + n + " decay=" + decay);
                    assertArrayEquals(vWant, vGot, "v, n=" + n + " decay=" + decay);
                    assertArrayEquals(want.toArray(Tensor.F32), got.toArray(Tensor.F32), "param, n=" + n + " decay=" + decay);
                }
            }
        }
    }
}
