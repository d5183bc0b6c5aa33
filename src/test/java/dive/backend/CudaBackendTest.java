package dive.backend;

import dive.cuda.CudaException;
import dive.cuda.DeviceArena;
import dive.cuda.GpuTests;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
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
 * Every op of {@link CudaBackend} against its CPU twin, the plain {@link ScalarBackend}, on fresh seeded random inputs
 * at shapes that are not multiples of 16/32/64/128, with single tokens, experts that receive no tokens, GQA, and
 * F32/BF16/F16 weights in read-only (cached) and writable (uploaded per call) memory. Outputs are poisoned with NaN
 * (plus NaN guard cells past the end) before each call, so unwritten elements and writes past the end fail.
 *
 * <p>Bounds: |cuda − cpu| ≤ tol · max(|cpu|, rms(cpu output)) per element — relative for typical values, with the
 * output's RMS as the floor where a sum cancels. F32: tol 1e-5 (different summation orders and expf/Math.exp differ by
 * a few ulps); BF16 weights: tol 1e-2 (the activation is rounded to BF16 for the tensor cores: 2⁻⁹ relative per
 * product, ≈1e-3 of the output's RMS per element); copies and integer bookkeeping: exact.
 * Skipped, saying why, where no GPU is usable.
 */
@Tag("gpu")
class CudaBackendTest {
    private static final int GUARD = 3;
    private static CudaBackend cuda;
    private static final ScalarBackend cpu = new ScalarBackend();

    /** per test, so each one is reported skipped with the reason where no GPU is usable */
    @BeforeEach
    void gpu() {
        GpuTests.assumeGpu(CudaBackendTest.class);
        if (cuda == null) cuda = new CudaBackend(new ScalarBackend());
    }

    @AfterAll
    static void close() {
        if (cuda != null) cuda.close();
    }

    // ---------------------------------------------------------------- helpers

    static float[] random(Random r, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (r.nextFloat() * 2 - 1) * scale;
        return a;
    }

    /** a weight of dtype holding values rounded to it, off-heap; read-only ones are what a mapped checkpoint gives (cached) */
    static Tensor weight(String name, DType dtype, boolean readOnly, float[] values, long... shape) {
        MemorySegment seg = Arena.ofAuto().allocate((long) values.length * dtype.bytes, 16);
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> seg.setAtIndex(Tensor.F32, i, values[i]);
                case BF16 -> seg.setAtIndex(Tensor.I16, i, DType.floatToBf16(values[i]));
                case F16 -> seg.setAtIndex(Tensor.I16, i, Float.floatToFloat16(values[i]));
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new Tensor(name, dtype, shape, readOnly ? seg.asReadOnly() : seg);
    }

    static float[] poisoned(int n) {
        float[] a = new float[n + GUARD];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    static int[] poisonedInts(int n) {
        int[] a = new int[n + GUARD];
        Arrays.fill(a, Integer.MIN_VALUE);
        return a;
    }

    /** got[0, n) within tol of want (see the class comment), the guard cells past n still NaN */
    static void assertClose(String what, float[] want, float[] got, int n, double tol) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double) want[i] * want[i];
        double rms = Math.sqrt(ss / Math.max(n, 1));
        for (int i = 0; i < n; i++) {
            assertFalse(Float.isNaN(got[i]), what + ": element " + i + " not written (NaN)");
            double bound = tol * Math.max(Math.abs(want[i]), rms);
            if (!(Math.abs(got[i] - want[i]) <= bound))
                fail(what + ": element " + i + " is " + got[i] + ", CPU " + want[i] + " (|diff| " + Math.abs(got[i] - want[i]) + " > " + bound + ")");
        }
        for (int i = n; i < got.length; i++) assertTrue(Float.isNaN(got[i]), what + ": guard cell " + (i - n) + " past the end was written");
    }

    // ---------------------------------------------------------------- dense matmul (cuBLAS)

    static final int[][] MATMUL_SHAPES = {{1, 37, 53}, {5, 130, 67}, {17, 64, 257}, {33, 1, 9}, {3, 300, 128}};

    @Test
    void matmulF32AndF16MatchTheCpu() {
        Random r = new Random(1);
        for (int[] s : MATMUL_SHAPES) {
            int m = s[0], n = s[1], k = s[2];
            for (DType dtype : new DType[] {DType.F32, DType.F16})
                for (boolean readOnly : new boolean[] {true, false}) {
                    Tensor w = weight("w", dtype, readOnly, random(r, n * k, 1f), n, k);
                    float[] x = random(r, m * k, 1f);
                    float[] want = new float[m * n], got = poisoned(m * n);
                    cpu.matmul(want, x, m, w);
                    cuda.matmul(got, x, m, w);
                    assertClose("matmul " + dtype + (readOnly ? " cached" : "") + " " + Arrays.toString(s), want, got, m * n, 1e-5);
                }
        }
    }

    @Test
    void matmulBf16OnTensorCoresIsWithinBf16Rounding() {
        Random r = new Random(2);
        for (int[] s : MATMUL_SHAPES) {
            int m = s[0], n = s[1], k = s[2];
            Tensor w = weight("w", DType.BF16, true, random(r, n * k, 1f), n, k);
            float[] x = random(r, m * k, 1f);
            float[] want = new float[m * n], got = poisoned(m * n);
            cpu.matmul(want, x, m, w);
            cuda.matmul(got, x, m, w);
            assertClose("matmul BF16 " + Arrays.toString(s), want, got, m * n, 1e-2);
            float[] dOut = random(r, m * n, 1f), dxWant = new float[m * k], dxGot = poisoned(m * k);
            cpu.matmulBackwardInput(dxWant, dOut, m, w);
            cuda.matmulBackwardInput(dxGot, dOut, m, w);
            assertClose("matmulBackwardInput BF16 " + Arrays.toString(s), dxWant, dxGot, m * k, 1e-2);
        }
    }

    @Test
    void matmulBackwardsMatchTheCpu() {
        Random r = new Random(3);
        for (int[] s : MATMUL_SHAPES) {
            int m = s[0], n = s[1], k = s[2];
            Tensor w = weight("w", DType.F32, false, random(r, n * k, 1f), n, k);
            float[] dOut = random(r, m * n, 1f), x = random(r, m * k, 1f);
            float[] dxWant = new float[m * k], dxGot = poisoned(m * k);
            cpu.matmulBackwardInput(dxWant, dOut, m, w);
            cuda.matmulBackwardInput(dxGot, dOut, m, w);
            assertClose("matmulBackwardInput " + Arrays.toString(s), dxWant, dxGot, m * k, 1e-5);
            float[] dw0 = random(r, n * k, 1f);   // accumulated into
            float[] dwWant = dw0.clone(), dwGot = Arrays.copyOf(dw0, n * k + GUARD);
            Arrays.fill(dwGot, n * k, dwGot.length, Float.NaN);
            cpu.matmulBackwardWeight(dwWant, dOut, x, m, n, k);
            cuda.matmulBackwardWeight(dwGot, dOut, x, m, n, k);
            assertClose("matmulBackwardWeight " + Arrays.toString(s), dwWant, dwGot, n * k, 1e-5);
        }
    }

    @Test
    void cachedWeightsAreUploadedOnceAndWritableOnesEveryCall() {
        Random r = new Random(4);
        int m = 3, n = 41, k = 29;
        try (CudaBackend own = new CudaBackend(new ScalarBackend())) {   // its own cache, empty
            Tensor fixed = weight("fixed", DType.F32, true, random(r, n * k, 1f), n, k);
            float[] x = random(r, m * k, 1f), want = new float[m * n], got = poisoned(m * n);
            assertEquals(0, own.cachedWeightBytes());
            own.matmul(got, x, m, fixed);
            assertEquals(4L * n * k, own.cachedWeightBytes(), "one upload of the read-only weight");
            got = poisoned(m * n);
            own.matmul(got, x, m, fixed);
            assertEquals(4L * n * k, own.cachedWeightBytes(), "no second upload");
            cpu.matmul(want, x, m, fixed);
            assertClose("cached matmul", want, got, m * n, 1e-5);

            Tensor trained = weight("trained", DType.F32, false, random(r, n * k, 1f), n, k);
            own.matmul(got, x, m, trained);
            trained.data().setAtIndex(Tensor.F32, 5, 100f);  // an optimizer step changes the weight
            got = poisoned(m * n);
            own.matmul(got, x, m, trained);
            cpu.matmul(want, x, m, trained);
            assertClose("matmul after the weight changed", want, got, m * n, 1e-5);
            assertEquals(4L * n * k, own.cachedWeightBytes(), "writable weights are not cached");
        }
    }

    @Test
    void manyThreadsAtOnceGetTheirOwnResults() throws Exception {
        Random r = new Random(5);
        int n = 70, k = 45;
        Tensor w = weight("w", DType.F32, true, random(r, n * k, 1f), n, k);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<?>> jobs = new ArrayList<>();
            for (int j = 0; j < 16; j++) {
                int m = 1 + j, seed = 100 + j;
                jobs.add(pool.submit(() -> {
                    float[] x = random(new Random(seed), m * k, 1f), want = new float[m * n], got = poisoned(m * n);
                    cpu.matmul(want, x, m, w);
                    cuda.matmul(got, x, m, w);
                    assertClose("threaded matmul m=" + m, want, got, m * n, 1e-5);
                    float[] y = random(new Random(seed + 1), m * k, 1f), xs = x.clone();
                    cpu.add(x, y, m * k);
                    cuda.add(xs, y, m * k);
                    assertArrayEquals(x, xs, "threaded add m=" + m);
                }));
            }
            for (Future<?> f : jobs) f.get();
        } finally {
            pool.shutdown();
        }
    }

    // ---------------------------------------------------------------- norm, rope, attention

    @Test
    void rmsNormAndItsBackwardMatchTheCpu() {
        Random r = new Random(6);
        for (int[] s : new int[][] {{1, 48}, {7, 77}, {33, 256}, {5, 1000}}) {
            int rows = s[0], d = s[1];
            for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
                Tensor g = weight("norm", dtype, true, random(r, d, 2f), d);
                float[] x = random(r, rows * d, 3f), want = new float[rows * d], got = poisoned(rows * d);
                cpu.rmsNorm(want, x, g, rows, 1e-5f);
                cuda.rmsNorm(got, x, g, rows, 1e-5f);
                assertClose("rmsNorm " + dtype + " " + Arrays.toString(s), want, got, rows * d, 1e-5);

                float[] dOut = random(r, rows * d, 1f), dxWant = new float[rows * d], dxGot = poisoned(rows * d);
                float[] dw0 = random(r, d, 1f), dwWant = dw0.clone(), dwGot = dw0.clone();
                cpu.rmsNormBackward(dxWant, dwWant, dOut, x, g, rows, 1e-5f);
                cuda.rmsNormBackward(dxGot, dwGot, dOut, x, g, rows, 1e-5f);
                assertClose("rmsNormBackward dx " + Arrays.toString(s), dxWant, dxGot, rows * d, 1e-5);
                assertClose("rmsNormBackward dWeight " + Arrays.toString(s), dwWant, dwGot, d, 1e-5);
                // dx may be dOut, dWeight may be null
                float[] inPlace = dOut.clone();
                cuda.rmsNormBackward(inPlace, null, inPlace, x, g, rows, 1e-5f);
                assertClose("rmsNormBackward in place", dxWant, inPlace, rows * d, 1e-5);
            }
        }
    }

    @Test
    void ropeAndItsBackwardMatchTheCpu() {
        Random r = new Random(7);
        for (int[] s : new int[][] {{1, 1, 8}, {7, 3, 10}, {19, 4, 64}, {4, 2, 128}}) {
            int rows = s[0], heads = s[1], hd = s[2];
            int[] positions = new int[rows];
            for (int i = 0; i < rows; i++) positions[i] = r.nextInt(300);
            float[] invFreq = new float[hd / 2];
            for (int i = 0; i < hd / 2; i++) invFreq[i] = (float) Math.pow(10000, -2.0 * i / hd);
            float[] x = random(r, rows * heads * hd, 1f);
            float[] want = x.clone(), got = Arrays.copyOf(x, x.length + GUARD);
            Arrays.fill(got, x.length, got.length, Float.NaN);
            cpu.rope(want, rows, heads, hd, positions, invFreq);
            cuda.rope(got, rows, heads, hd, positions, invFreq);
            assertClose("rope " + Arrays.toString(s), want, got, x.length, 1e-5);
            float[] back = x.clone(), backGot = x.clone();
            cpu.ropeBackward(back, rows, heads, hd, positions, invFreq);
            cuda.ropeBackward(backGot, rows, heads, hd, positions, invFreq);
            assertClose("ropeBackward " + Arrays.toString(s), back, backGot, x.length, 1e-5);
        }
    }

    @Test
    void attentionMatchesTheCpuWithGqaAndACache() {
        Random r = new Random(8);
        // T, startPos, nHeads, nKvHeads, headDim
        for (int[] s : new int[][] {{1, 0, 4, 4, 16}, {1, 37, 8, 2, 64}, {13, 0, 6, 2, 24}, {5, 11, 4, 1, 128}, {3, 2, 2, 2, 256}, {70, 5, 3, 1, 12}}) {
            int T = s[0], start = s[1], nh = s[2], nkv = s[3], hd = s[4], maxSeq = start + T + 3;
            float[] q = random(r, T * nh * hd, 1f), k = random(r, maxSeq * nkv * hd, 1f), v = random(r, maxSeq * nkv * hd, 1f);
            float scale = (float) (1 / Math.sqrt(hd));
            float[] want = new float[T * nh * hd], got = poisoned(T * nh * hd);
            cpu.attention(want, q, k, v, T, start, nh, nkv, hd, scale);
            cuda.attention(got, q, k, v, T, start, nh, nkv, hd, scale);
            assertClose("attention " + Arrays.toString(s), want, got, want.length, 1e-5);
        }
    }

    @Test
    void attentionBackwardMatchesTheCpu() {
        Random r = new Random(9);
        // B, T, nHeads, nKvHeads, headDim
        for (int[] s : new int[][] {{1, 1, 2, 1, 8}, {2, 9, 4, 2, 16}, {3, 17, 6, 3, 40}, {1, 33, 4, 4, 64}}) {
            int B = s[0], T = s[1], nh = s[2], nkv = s[3], hd = s[4];
            int qn = B * T * nh * hd, kvn = B * T * nkv * hd;
            float[] q = random(r, qn, 1f), k = random(r, kvn, 1f), v = random(r, kvn, 1f), dOut = random(r, qn, 1f);
            float scale = (float) (1 / Math.sqrt(hd));
            float[] dq = new float[qn], dk = new float[kvn], dv = new float[kvn];
            float[] dqG = poisoned(qn), dkG = poisoned(kvn), dvG = poisoned(kvn);
            cpu.attentionBackward(dq, dk, dv, dOut, q, k, v, B, T, nh, nkv, hd, scale);
            cuda.attentionBackward(dqG, dkG, dvG, dOut, q, k, v, B, T, nh, nkv, hd, scale);
            assertClose("attentionBackward dq " + Arrays.toString(s), dq, dqG, qn, 1e-5);
            assertClose("attentionBackward dk " + Arrays.toString(s), dk, dkG, kvn, 1e-5);
            assertClose("attentionBackward dv " + Arrays.toString(s), dv, dvG, kvn, 1e-5);
        }
    }

    // ---------------------------------------------------------------- elementwise, embedding, loss

    @Test
    void elementwiseOpsMatchTheCpu() {
        Random r = new Random(10);
        for (int n : new int[] {1, 1000, 4097}) {
            float[] gate = random(r, n, 6f), up = random(r, n, 2f), want = new float[n], got = poisoned(n);
            cpu.swiglu(want, gate, up, n);
            cuda.swiglu(got, gate, up, n);
            assertClose("swiglu n=" + n, want, got, n, 1e-5);
            float[] aliased = gate.clone();
            cuda.swiglu(aliased, aliased, up, n);
            assertClose("swiglu out = gate", want, aliased, n, 1e-5);

            float[] dOut = random(r, n, 1f), dg = new float[n], du = new float[n], dgG = poisoned(n), duG = poisoned(n);
            cpu.swigluBackward(dg, du, dOut, gate, up, n);
            cuda.swigluBackward(dgG, duG, dOut, gate, up, n);
            assertClose("swigluBackward dGate n=" + n, dg, dgG, n, 1e-5);
            assertClose("swigluBackward dUp n=" + n, du, duG, n, 1e-5);

            float[] x = random(r, n, 1f), y = random(r, n, 1f), xw = x.clone(), xg = x.clone();
            cpu.addScaled(xw, y, -0.37f, n);
            cuda.addScaled(xg, y, -0.37f, n);
            assertClose("addScaled n=" + n, xw, xg, n, 1e-6);
            xw = x.clone();
            xg = x.clone();
            cpu.add(xw, y, n);
            cuda.add(xg, y, n);
            assertArrayEquals(xw, xg, "add n=" + n + ": one rounding, the same bits");

            float[] sw = random(r, n + 4, 5f), sg = sw.clone();
            cpu.softmax(sw, 2, n);
            cuda.softmax(sg, 2, n);
            assertArrayEquals(sw, sg, "softmax (the CPU fallback) n=" + n);
        }
    }

    @Test
    void embeddingIsAnExactCopyAndChecksIds() {
        Random r = new Random(11);
        int vocab = 301, d = 37;
        int[] ids = {0, 300, 5, 5, 17, 299, 1};
        for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            Tensor table = weight("embed", dtype, true, random(r, vocab * d, 1f), vocab, d);
            float[] want = new float[ids.length * d], got = poisoned(ids.length * d);
            cpu.embedding(want, table, ids);
            cuda.embedding(got, table, ids);
            assertClose("embedding " + dtype, want, got, want.length, 0);
            IllegalArgumentException ec = assertThrows(IllegalArgumentException.class, () -> cpu.embedding(new float[2 * d], table, new int[] {3, 301}));
            IllegalArgumentException eg = assertThrows(IllegalArgumentException.class, () -> cuda.embedding(new float[2 * d], table, new int[] {3, 301}));
            assertEquals(ec.getMessage(), eg.getMessage());
        }
        float[] dOut = random(r, ids.length * d, 1f), table0 = random(r, vocab * d, 1f);
        float[] want = table0.clone(), got = table0.clone();
        cpu.embeddingBackward(want, dOut, ids, d);
        cuda.embeddingBackward(got, dOut, ids, d);
        assertClose("embeddingBackward (id 5 twice)", want, got, want.length, 1e-6);
    }

    @Test
    void crossEntropyMatchesTheCpuWithIgnoredRows() {
        Random r = new Random(12);
        for (int[] s : new int[][] {{1, 7}, {9, 301}, {40, 4096}}) {
            int rows = s[0], vocab = s[1];
            float[] logits = random(r, rows * vocab, 8f);
            int[] targets = new int[rows];
            for (int i = 0; i < rows; i++) targets[i] = i % 4 == 3 ? Backend.IGNORE_INDEX : r.nextInt(vocab);
            float[] dWant = new float[rows * vocab], dGot = poisoned(rows * vocab);
            double lossWant = cpu.crossEntropy(dWant, logits, targets, rows, vocab, 0.5f);
            double lossGot = cuda.crossEntropy(dGot, logits, targets, rows, vocab, 0.5f);
            assertEquals(lossWant, lossGot, 1e-5 * Math.abs(lossWant), "loss " + Arrays.toString(s));
            assertClose("dLogits " + Arrays.toString(s), dWant, dGot, rows * vocab, 1e-5);
            assertEquals(lossWant, cuda.crossEntropy(null, logits, targets, rows, vocab, 1f), 1e-5 * Math.abs(lossWant), "without gradient");
            float[] inPlace = logits.clone();
            cuda.crossEntropy(inPlace, inPlace, targets, rows, vocab, 0.5f);
            assertClose("dLogits = logits", dWant, inPlace, rows * vocab, 1e-5);
        }
        int[] ignored = {Backend.IGNORE_INDEX, Backend.IGNORE_INDEX};
        float[] d = poisoned(6);
        assertTrue(Double.isNaN(cuda.crossEntropy(d, random(r, 6, 1f), ignored, 2, 3, 1f)), "every row ignored: NaN");
        assertClose("dLogits of ignored rows", new float[6], d, 6, 0);
        IllegalArgumentException ec = assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropy(null, new float[6], new int[] {0, 3}, 2, 3, 1f));
        IllegalArgumentException eg = assertThrows(IllegalArgumentException.class, () -> cuda.crossEntropy(null, new float[6], new int[] {0, 3}, 2, 3, 1f));
        assertEquals(ec.getMessage(), eg.getMessage());
    }

    // ---------------------------------------------------------------- Mixture of Experts

    @Test
    void routeTopKMatchesTheCpuIncludingTies() {
        Random r = new Random(13);
        // n, E, k
        for (int[] s : new int[][] {{1, 8, 2}, {37, 8, 1}, {50, 60, 4}, {9, 256, 8}, {5, 3, 3}}) {
            int n = s[0], e = s[1], k = s[2];
            for (boolean ties : new boolean[] {false, true}) {
                float[] logits = new float[n * e];
                for (int i = 0; i < logits.length; i++) logits[i] = ties ? r.nextInt(4) : (r.nextFloat() * 2 - 1) * 4;
                int[] ids = new int[n * k], idsG = poisonedInts(n * k);
                float[] w = new float[n * k], wG = poisoned(n * k);
                cpu.routeTopK(ids, w, logits, n, e, k);
                cuda.routeTopK(idsG, wG, logits, n, e, k);
                assertArrayEquals(ids, Arrays.copyOf(idsG, n * k), "expert ids " + Arrays.toString(s) + (ties ? " with ties" : ""));
                assertClose("expert weights " + Arrays.toString(s), w, wG, n * k, 1e-6);
            }
        }
    }

    @Test
    void sortByExpertIsTheSameCountingSort() {
        Random r = new Random(14);
        for (int[] s : new int[][] {{1, 8, 2}, {50, 8, 2}, {333, 6, 1}, {64, 16, 4}}) {
            int n = s[0], e = s[1], k = s[2];
            int[] ids = new int[n * k];
            for (int t = 0; t < n; t++) {   // distinct experts per token, drawn from the even ones: odd experts get no rows
                List<Integer> pool = new ArrayList<>();
                for (int x = 0; x < e; x += 2) pool.add(x);
                if (pool.size() < k) for (int x = 1; x < e && pool.size() < k; x += 2) pool.add(x);
                java.util.Collections.shuffle(pool, r);
                for (int j = 0; j < k; j++) ids[t * k + j] = pool.get(j);
            }
            int[] off = new int[e + 1], rt = new int[n * k], sr = new int[n * k];
            int[] offG = poisonedInts(e + 1), rtG = poisonedInts(n * k), srG = poisonedInts(n * k);
            cpu.sortByExpert(off, rt, sr, ids, n, k, e);
            cuda.sortByExpert(offG, rtG, srG, ids, n, k, e);
            assertArrayEquals(off, Arrays.copyOf(offG, e + 1), "offsets " + Arrays.toString(s));
            assertArrayEquals(rt, Arrays.copyOf(rtG, n * k), "rowToken " + Arrays.toString(s));
            assertArrayEquals(sr, Arrays.copyOf(srG, n * k), "slotRow " + Arrays.toString(s));
        }
        IllegalArgumentException ec = assertThrows(IllegalArgumentException.class, () -> cpu.sortByExpert(new int[4], new int[2], new int[2], new int[] {0, 3}, 1, 2, 3));
        IllegalArgumentException eg = assertThrows(IllegalArgumentException.class, () -> cuda.sortByExpert(new int[4], new int[2], new int[2], new int[] {0, 3}, 1, 2, 3));
        assertEquals(ec.getMessage(), eg.getMessage());
    }

    @Test
    void gatherAndScatterAddRowsMatchTheCpu() {
        Random r = new Random(15);
        int tokens = 23, width = 77, count = 46;
        float[] x = random(r, tokens * width, 1f);
        int[] rows = new int[count];
        for (int i = 0; i < count; i++) rows[i] = r.nextInt(tokens);
        float[] want = new float[count * width], got = poisoned(count * width);
        cpu.gather(want, x, rows, count, width);
        cuda.gather(got, x, rows, count, width);
        assertClose("gather", want, got, count * width, 0);

        float[] src = random(r, count * width, 1f), xw = x.clone(), xg = x.clone();
        cpu.scatterAddRows(xw, src, rows, count, width);
        cuda.scatterAddRows(xg, src, rows, count, width);
        assertClose("scatterAddRows", xw, xg, xw.length, 1e-6);

        int[] skewed = new int[count];           // every source into row 0 but one: the CPU fallback path
        skewed[count - 1] = tokens - 1;
        xw = x.clone();
        xg = x.clone();
        cpu.scatterAddRows(xw, src, skewed, count, width);
        cuda.scatterAddRows(xg, src, skewed, count, width);
        assertClose("scatterAddRows skewed", xw, xg, xw.length, 1e-6);
    }

    /** offsets for E experts over R rows with empty experts and a single-row one */
    static int[] offsets(int... rowsPerExpert) {
        int[] o = new int[rowsPerExpert.length + 1];
        for (int e = 0; e < rowsPerExpert.length; e++) o[e + 1] = o[e] + rowsPerExpert[e];
        return o;
    }

    @Test
    void groupedMatmulMatchesTheCpu() {
        Random r = new Random(16);
        int[][] groupings = {{0, 5, 1, 0, 17, 3}, {1}, {0, 0, 40, 0}};
        int[][] nk = {{53, 37}, {64, 130}, {1, 9}};
        for (int[] rowsPerExpert : groupings)
            for (int[] shape : nk)
                for (DType dtype : new DType[] {DType.F32, DType.F16, DType.BF16})
                    for (boolean readOnly : new boolean[] {true, false}) {
                        int experts = rowsPerExpert.length, n = shape[0], k = shape[1];
                        int[] off = offsets(rowsPerExpert);
                        int rows = off[experts];
                        Tensor[] w = new Tensor[experts], bias = new Tensor[experts];
                        for (int e = 0; e < experts; e++) {
                            w[e] = weight("w" + e, dtype, readOnly, random(r, n * k, 1f), n, k);
                            bias[e] = e % 2 == 0 ? weight("b" + e, DType.F32, readOnly, random(r, n, 1f), n) : null;
                        }
                        float[] x = random(r, rows * k, 1f);
                        String what = "groupedMatmul " + dtype + (readOnly ? " cached" : "") + " " + Arrays.toString(rowsPerExpert) + " N,K " + Arrays.toString(shape);
                        double tol = dtype == DType.BF16 ? 1e-2 : 1e-5;
                        float[] want = new float[rows * n], got = poisoned(rows * n);
                        cpu.groupedMatmul(want, x, off, w, null);
                        cuda.groupedMatmul(got, x, off, w, null);
                        assertClose(what, want, got, rows * n, tol);
                        got = poisoned(rows * n);
                        cpu.groupedMatmul(want, x, off, w, bias);
                        cuda.groupedMatmul(got, x, off, w, bias);
                        assertClose(what + " with bias", want, got, rows * n, tol);
                    }
    }

    @Test
    void combineExpertsAndItsBackwardMatchTheCpu() {
        Random r = new Random(17);
        for (int[] s : new int[][] {{1, 1, 48}, {1, 2, 5}, {37, 2, 130}, {20, 4, 64}}) {
            int n = s[0], k = s[1], d = s[2];
            int[] slotRow = new int[n * k];
            for (int i = 0; i < n * k; i++) slotRow[i] = i;
            for (int i = n * k - 1; i > 0; i--) { int j = r.nextInt(i + 1), t = slotRow[i]; slotRow[i] = slotRow[j]; slotRow[j] = t; }
            float[] expertOut = random(r, n * k * d, 1f), weights = random(r, n * k, 1f);
            float[] want = new float[n * d], got = poisoned(n * d);
            cpu.combineExperts(want, expertOut, slotRow, weights, n, k, d);
            cuda.combineExperts(got, expertOut, slotRow, weights, n, k, d);
            assertClose("combineExperts " + Arrays.toString(s), want, got, n * d, 1e-5);

            float[] dy = random(r, n * d, 1f);
            float[] dEo = new float[n * k * d], dW = new float[n * k], dEoG = poisoned(n * k * d), dWG = poisoned(n * k);
            cpu.combineExpertsBackward(dEo, dW, dy, expertOut, slotRow, weights, n, k, d);
            cuda.combineExpertsBackward(dEoG, dWG, dy, expertOut, slotRow, weights, n, k, d);
            assertClose("combineExpertsBackward dExpertOut " + Arrays.toString(s), dEo, dEoG, n * k * d, 1e-5);
            assertClose("combineExpertsBackward dWeights " + Arrays.toString(s), dW, dWG, n * k, 1e-5);
        }
    }

    // ---------------------------------------------------------------- faults

    @Test
    void outOfDeviceMemoryIsAnExceptionNamingTheBytes() {
        try (DeviceArena arena = new DeviceArena("test")) {
            long bytes = 1L << 50;   // 1 PiB
            CudaException e = assertThrows(CudaException.class, () -> arena.allocate(bytes));
            assertEquals(2, e.status(), e.getMessage());
            assertTrue(e.getMessage().startsWith("dive_malloc(1125899906842624 bytes): "), e.getMessage());
            assertTrue(e.getMessage().contains("(cudaErrorMemoryAllocation, status 2)"), e.getMessage());
            assertTrue(e.getMessage().contains(" free of "), e.getMessage());
            assertEquals(0, arena.allocatedBytes());
            assertEquals(4096, arena.allocate(4096).bytes(), "the device still works");
        }
        // and the backend still computes
        float[] x = {1, 2}, y = {3, 4};
        cuda.add(x, y, 2);
        assertArrayEquals(new float[] {4, 6}, x);
    }

    @Test
    void badShapesAreRejectedBeforeAnyDeviceWork() {
        Tensor w = weight("w", DType.F32, false, new float[6], 2, 3);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cuda.matmul(new float[4], new float[5], 2, w));
        assertEquals("matmul: x (M, K) has 5 floats, expected ≥ 6", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cuda.attention(new float[8], new float[8], new float[8], new float[8], 1, 0, 3, 2, 4, 1f));
        assertTrue(e.getMessage().startsWith("attention: 3 query heads over 2 KV heads"), e.getMessage());
    }
}
