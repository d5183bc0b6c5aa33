package dive.backend;

import dive.cuda.CudaException;
import dive.cuda.DeviceArena;
import dive.cuda.GpuTests;
import dive.model.DenseFfn;
import dive.model.FeedForward;
import dive.model.MoeFfn;
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
 * Every device-tensor op of {@link CudaBackend} against the same op of the CPU reference, the plain
 * {@link ScalarBackend}, on fresh seeded random inputs at shapes that are not multiples of 16/32/64/128, with single
 * tokens, experts that receive no rows, scratch tensors larger than the rows in use, GQA, and F32/BF16/F16 weights in
 * read-only and writable memory. GPU outputs start poisoned with NaN (plus NaN guard cells past the end), so unwritten
 * elements and writes past the end fail. Also: the weight cache (one upload per weight, trainable weights on the
 * device, readBack, weightChanged), errors found on the device raised at the next read, and that a chain of ops moves
 * nothing between its upload and its download ({@link Transfers}).
 *
 * <p>Bounds: |cuda − cpu| ≤ tol · max(|cpu|, rms(cpu output)) per element — relative for typical values, with the
 * output's RMS as the floor where a sum cancels. F32: tol 1e-5 (different summation orders; expf vs Math.exp differ by
 * a few ulps); BF16 weights: tol 1e-2 (the activation is rounded to BF16 for the tensor cores); ops whose kernels
 * repeat the CPU's arithmetic (copies, integer bookkeeping, bias add and gradient, multiply, dropout (also per expert),
 * routing gradient, channel statistics, AdamW): exact. Skipped, saying why, where no GPU is usable.
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

    /** a weight of dtype holding values rounded to it, off-heap; read-only ones are what a mapped checkpoint gives */
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

    /** one argument on both backends: the CPU reference's tensor and the GPU's, holding the same values */
    record Both(DeviceTensor c, DeviceTensor g) {
        float[] want() { return cpu.download(c); }
        float[] got() { return cuda.download(g); }
        int[] wantInts() { return cpu.downloadInts(c); }
        int[] gotInts() { return cuda.downloadInts(g); }
    }

    static Both floats(float[] values) { return new Both(cpu.upload(values), cuda.upload(values)); }

    static Both ints(int[] values) { return new Both(cpu.upload(values), cuda.upload(values)); }

    /** an output of n elements (plus guard cells), NaN before the op */
    static Both out(int n) { return floats(poisoned(n)); }

    static Both intsOut(int n) {
        int[] a = new int[n + GUARD];
        Arrays.fill(a, Integer.MIN_VALUE);
        return ints(a);
    }

    /** F64 zeros on both (no F64 upload in the API: F64 tensors take their values from ops) */
    static Both doubleZeros(int n) { return new Both(cpu.allocate(DType.F64, n), cuda.allocate(DType.F64, n)); }

    /** got[0, n) within tol of want (see the class comment), the guard cells past n still NaN */
    static void assertClose(String what, float[] want, float[] got, int n, double tol) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double) want[i] * want[i];
        double rms = Math.sqrt(ss / Math.max(n, 1));
        for (int i = 0; i < n; i++) {
            if (Float.isNaN(want[i])) {
                assertTrue(Float.isNaN(got[i]), what + ": element " + i + " is " + got[i] + ", CPU NaN");
                continue;
            }
            assertFalse(Float.isNaN(got[i]), what + ": element " + i + " not written (NaN)");
            double bound = tol * Math.max(Math.abs(want[i]), rms);
            if (!(Math.abs(got[i] - want[i]) <= bound))
                fail(what + ": element " + i + " is " + got[i] + ", CPU " + want[i] + " (|diff| " + Math.abs(got[i] - want[i]) + " > " + bound + ")");
        }
        for (int i = n; i < got.length; i++) assertTrue(Float.isNaN(got[i]), what + ": guard cell " + (i - n) + " past the end was written");
    }

    static void assertClose(String what, Both b, int n, double tol) { assertClose(what, b.want(), b.got(), n, tol); }

    /** the same bits in [0, n) (NaN = NaN) */
    static void assertExact(String what, Both b, int n) {
        float[] want = b.want(), got = b.got();
        for (int i = 0; i < n; i++)
            if (Float.floatToIntBits(want[i]) != Float.floatToIntBits(got[i]))
                fail(what + ": element " + i + " is " + got[i] + ", CPU " + want[i] + " (bits differ)");
        for (int i = n; i < got.length; i++) assertTrue(Float.isNaN(got[i]), what + ": guard cell " + (i - n) + " past the end was written");
    }

    static void assertExactInts(String what, Both b, int n) {
        assertArrayEquals(Arrays.copyOf(b.wantInts(), n), Arrays.copyOf(b.gotInts(), n), what);
    }

    // ---------------------------------------------------------------- dense matmul (cuBLAS)

    static final int[][] MATMUL_SHAPES = {{1, 37, 53}, {5, 130, 67}, {17, 64, 257}, {33, 1, 9}, {3, 300, 128}};

    @Test
    void matmulAndItsBackwardsMatchTheCpu() {
        Random r = new Random(1);
        for (int[] s : MATMUL_SHAPES) {
            int m = s[0], n = s[1], k = s[2];
            for (DType dtype : new DType[] {DType.F32, DType.F16, DType.BF16})
                for (boolean readOnly : new boolean[] {true, false}) {
                    String what = dtype + (readOnly ? " read-only " : " writable ") + Arrays.toString(s);
                    double tol = dtype == DType.BF16 ? 1e-2 : 1e-5;
                    Tensor w = weight("w", dtype, readOnly, random(r, n * k, 1f), n, k);
                    Both x = floats(random(r, m * k, 1f)), y = out(m * n);
                    cpu.matmul(y.c, x.c, m, w);
                    cuda.matmul(y.g, x.g, m, w);
                    assertClose("matmul " + what, y, m * n, tol);

                    Both dOut = floats(random(r, m * n, 1f)), dx = out(m * k);
                    cpu.matmulBackwardInput(dx.c, dOut.c, m, w);
                    cuda.matmulBackwardInput(dx.g, dOut.g, m, w);
                    assertClose("matmulBackwardInput " + what, dx, m * k, tol);
                }
            Both dOut = floats(random(r, m * n, 1f)), x = floats(random(r, m * k, 1f));
            float[] dw0 = Arrays.copyOf(random(r, n * k, 1f), n * k + GUARD);   // accumulated into
            Arrays.fill(dw0, n * k, dw0.length, Float.NaN);
            Both dw = floats(dw0);
            cpu.matmulBackwardWeight(dw.c, dOut.c, x.c, m, n, k);
            cuda.matmulBackwardWeight(dw.g, dOut.g, x.g, m, n, k);
            assertClose("matmulBackwardWeight " + Arrays.toString(s), dw, n * k, 1e-5);
        }
    }

    @Test
    void weightsAreUploadedOnceTrainedOnTheDeviceAndReadBack() {
        Random r = new Random(4);
        int m = 3, n = 41, k = 29;
        try (CudaBackend own = new CudaBackend(new ScalarBackend())) {   // its own cache and counts
            Tensor fixed = weight("fixed", DType.F32, true, random(r, n * k, 1f), n, k);
            float[] xs = random(r, m * k, 1f);
            DeviceTensor x = own.upload(xs), y = own.allocate(DType.F32, m * n);
            assertEquals(0, own.cachedWeightBytes());
            Transfers.Snapshot before = own.transfers().snapshot();
            own.matmul(y, x, m, fixed);
            own.matmul(y, x, m, fixed);
            Transfers.Snapshot moved = own.transfers().snapshot().since(before);
            assertEquals(4L * n * k, own.cachedWeightBytes(), "one device copy of the weight");
            assertEquals(1, moved.toDevice(), "one upload of the weight, counted: " + moved);
            assertEquals(4L * n * k, moved.bytesToDevice());
            assertEquals(0, moved.toHost());
            DeviceTensor yc = cpu.allocate(DType.F32, m * n);
            cpu.matmul(yc, cpu.upload(xs), m, fixed);
            assertClose("cached matmul", cpu.download(yc), own.download(y), m * n, 1e-5);

            // a trainable weight: AdamW on the device copy; matmul sees the update; readBack brings the host memory up
            float[] p0 = random(r, n * k, 1f), g = random(r, n * k, 0.1f);
            Tensor trained = weight("trained", DType.F32, false, p0, n, k), trainedCpu = weight("trainedCpu", DType.F32, false, p0, n, k);
            Backend.AdamWStep step = new Backend.AdamWStep(true, 0.99f, 1e-2f, 0.0316f, 0.1f, 0.999f, 0.001f, 1e-8f);
            DeviceTensor mg = own.allocate(DType.F32, n * k), vg = own.allocate(DType.F32, n * k);
            DeviceTensor mc = cpu.allocate(DType.F32, n * k), vc = cpu.allocate(DType.F32, n * k);
            for (int t = 0; t < 3; t++) {
                own.adamW(trained, own.upload(g), mg, vg, n * k, step);
                cpu.adamW(trainedCpu, cpu.upload(g), mc, vc, n * k, step);
            }
            assertArrayEquals(p0, trained.toFloatArray(), "the host memory is behind until readBack");
            own.matmul(y, x, m, trained);
            cpu.matmul(yc, cpu.upload(xs), m, trainedCpu);
            assertClose("matmul with the device-trained weight", cpu.download(yc), own.download(y), m * n, 1e-5);
            before = own.transfers().snapshot();
            own.readBack(trained);
            moved = own.transfers().snapshot().since(before);
            assertEquals(1, moved.toHost(), "readBack is one device → host transfer: " + moved);
            assertArrayEquals(trainedCpu.toFloatArray(), trained.toFloatArray(), "AdamW on the device: the CPU's bits");
            assertArrayEquals(cpu.download(mc), own.download(mg), "m");
            assertArrayEquals(cpu.download(vc), own.download(vg), "v");

            // the host memory changes (a restored checkpoint): weightChanged has the next use upload it again
            trained.data().setAtIndex(Tensor.F32, 5, 100f);
            trainedCpu.data().setAtIndex(Tensor.F32, 5, 100f);
            long bytes = own.cachedWeightBytes();
            own.weightChanged(trained);
            before = own.transfers().snapshot();
            own.matmul(y, x, m, trained);
            assertEquals(1, own.transfers().snapshot().since(before).toDevice(), "uploaded again after weightChanged");
            assertEquals(bytes, own.cachedWeightBytes(), "into the same device buffer");
            cpu.matmul(yc, cpu.upload(xs), m, trainedCpu);
            assertClose("matmul after weightChanged", cpu.download(yc), own.download(y), m * n, 1e-5);
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
                    Random rr = new Random(seed);
                    Both x = floats(random(rr, m * k, 1f)), y = out(m * n);
                    cpu.matmul(y.c, x.c, m, w);
                    cuda.matmul(y.g, x.g, m, w);
                    assertClose("threaded matmul m=" + m, y, m * n, 1e-5);
                    Both a = floats(random(rr, m * k, 1f)), b = floats(random(rr, m * k, 1f));
                    cpu.add(a.c, b.c, m * k);
                    cuda.add(a.g, b.g, m * k);
                    assertArrayEquals(a.want(), a.got(), "threaded add m=" + m);
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
                float[] xs = random(r, rows * d, 3f);
                Both x = floats(xs), y = out(rows * d);
                cpu.rmsNorm(y.c, x.c, g, rows, 1e-5f);
                cuda.rmsNorm(y.g, x.g, g, rows, 1e-5f);
                assertClose("rmsNorm " + dtype + " " + Arrays.toString(s), y, rows * d, 1e-5);

                float[] dOut = random(r, rows * d, 1f);
                Both dy = floats(dOut), dx = out(rows * d), dw = floats(random(r, d, 1f));
                cpu.rmsNormBackward(dx.c, dw.c, dy.c, x.c, g, rows, 1e-5f);
                cuda.rmsNormBackward(dx.g, dw.g, dy.g, x.g, g, rows, 1e-5f);
                assertClose("rmsNormBackward dx " + Arrays.toString(s), dx, rows * d, 1e-5);
                assertClose("rmsNormBackward dWeight " + Arrays.toString(s), dw, d, 1e-5);
                // dx may be dOut, dWeight may be null; out may be x
                Both inPlace = floats(dOut);
                cpu.rmsNormBackward(inPlace.c, null, inPlace.c, x.c, g, rows, 1e-5f);
                cuda.rmsNormBackward(inPlace.g, null, inPlace.g, x.g, g, rows, 1e-5f);
                assertClose("rmsNormBackward in place", inPlace, rows * d, 1e-5);
                cpu.rmsNorm(x.c, x.c, g, rows, 1e-5f);
                cuda.rmsNorm(x.g, x.g, g, rows, 1e-5f);
                assertClose("rmsNorm in place", x.want(), x.got(), rows * d, 1e-5);
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
            float[] xs = random(r, rows * heads * hd, 1f);
            Both pos = ints(positions), freq = floats(invFreq), x = floats(xs), back = floats(xs);
            cpu.rope(x.c, rows, heads, hd, pos.c, freq.c);
            cuda.rope(x.g, rows, heads, hd, pos.g, freq.g);
            assertClose("rope " + Arrays.toString(s), x.want(), x.got(), xs.length, 1e-5);
            cpu.ropeBackward(back.c, rows, heads, hd, pos.c, freq.c);
            cuda.ropeBackward(back.g, rows, heads, hd, pos.g, freq.g);
            assertClose("ropeBackward " + Arrays.toString(s), back.want(), back.got(), xs.length, 1e-5);
        }
    }

    @Test
    void attentionMatchesTheCpuWithGqaAndACache() {
        Random r = new Random(8);
        // T, startPos, nHeads, nKvHeads, headDim
        for (int[] s : new int[][] {{1, 0, 4, 4, 16}, {1, 37, 8, 2, 64}, {13, 0, 6, 2, 24}, {5, 11, 4, 1, 128}, {3, 2, 2, 2, 256}, {70, 5, 3, 1, 12}}) {
            int T = s[0], start = s[1], nh = s[2], nkv = s[3], hd = s[4], maxSeq = start + T + 3;
            Both q = floats(random(r, T * nh * hd, 1f)), k = floats(random(r, maxSeq * nkv * hd, 1f)), v = floats(random(r, maxSeq * nkv * hd, 1f));
            float scale = (float) (1 / Math.sqrt(hd));
            Both y = out(T * nh * hd);
            cpu.attention(y.c, q.c, k.c, v.c, T, start, nh, nkv, hd, scale);
            cuda.attention(y.g, q.g, k.g, v.g, T, start, nh, nkv, hd, scale);
            assertClose("attention " + Arrays.toString(s), y, T * nh * hd, 1e-5);
        }
    }

    @Test
    void attentionBackwardMatchesTheCpu() {
        Random r = new Random(9);
        // B, T, nHeads, nKvHeads, headDim
        for (int[] s : new int[][] {{1, 1, 2, 1, 8}, {2, 9, 4, 2, 16}, {3, 17, 6, 3, 40}, {1, 33, 4, 4, 64}}) {
            int B = s[0], T = s[1], nh = s[2], nkv = s[3], hd = s[4];
            int qn = B * T * nh * hd, kvn = B * T * nkv * hd;
            Both q = floats(random(r, qn, 1f)), k = floats(random(r, kvn, 1f)), v = floats(random(r, kvn, 1f)), dOut = floats(random(r, qn, 1f));
            float scale = (float) (1 / Math.sqrt(hd));
            Both dq = out(qn), dk = out(kvn), dv = out(kvn);
            cpu.attentionBackward(dq.c, dk.c, dv.c, dOut.c, q.c, k.c, v.c, B, T, nh, nkv, hd, scale);
            cuda.attentionBackward(dq.g, dk.g, dv.g, dOut.g, q.g, k.g, v.g, B, T, nh, nkv, hd, scale);
            assertClose("attentionBackward dq " + Arrays.toString(s), dq, qn, 1e-5);
            assertClose("attentionBackward dk " + Arrays.toString(s), dk, kvn, 1e-5);
            assertClose("attentionBackward dv " + Arrays.toString(s), dv, kvn, 1e-5);
        }
    }

    // ---------------------------------------------------------------- element-wise

    @Test
    void elementwiseOpsMatchTheCpu() {
        Random r = new Random(10);
        for (int n : new int[] {1, 1000, 4097}) {
            float[] gates = random(r, n, 6f);
            Both gate = floats(gates), up = floats(random(r, n, 2f)), y = out(n);
            cpu.swiglu(y.c, gate.c, up.c, n);
            cuda.swiglu(y.g, gate.g, up.g, n);
            assertClose("swiglu n=" + n, y, n, 1e-5);
            Both aliased = floats(gates);
            cpu.swiglu(aliased.c, aliased.c, up.c, n);
            cuda.swiglu(aliased.g, aliased.g, up.g, n);
            assertClose("swiglu out = gate", aliased.want(), aliased.got(), n, 1e-5);

            Both dOut = floats(random(r, n, 1f)), dg = out(n), du = out(n);
            cpu.swigluBackward(dg.c, du.c, dOut.c, gate.c, up.c, n);
            cuda.swigluBackward(dg.g, du.g, dOut.g, gate.g, up.g, n);
            assertClose("swigluBackward dGate n=" + n, dg, n, 1e-5);
            assertClose("swigluBackward dUp n=" + n, du, n, 1e-5);

            float[] xs = random(r, n, 1f), ys = random(r, n, 1f);
            Both x = floats(xs), yy = floats(ys);
            cpu.addScaled(x.c, yy.c, -0.37f, n);
            cuda.addScaled(x.g, yy.g, -0.37f, n);
            assertClose("addScaled n=" + n, x.want(), x.got(), n, 1e-6);
            x = floats(xs);
            cpu.add(x.c, yy.c, n);
            cuda.add(x.g, yy.g, n);
            assertArrayEquals(x.want(), x.got(), "add n=" + n + ": one rounding, the same bits");
            x = floats(xs);
            cpu.scale(x.c, -1.7f, n);
            cuda.scale(x.g, -1.7f, n);
            assertArrayEquals(x.want(), x.got(), "scale n=" + n);
            x = floats(xs);
            cpu.multiply(x.c, yy.c, n);
            cuda.multiply(x.g, yy.g, n);
            assertArrayEquals(x.want(), x.got(), "multiply n=" + n);
        }
        for (int[] s : new int[][] {{1, 1}, {3, 8}, {37, 60}, {200, 5}}) {   // rows, n
            int rows = s[0], n = s[1];
            Both x = floats(random(r, rows * n + 2, 5f));
            cpu.softmax(x.c, rows, n);
            cuda.softmax(x.g, rows, n);
            assertClose("softmax rows " + Arrays.toString(s), x.want(), x.got(), rows * n + 2, 1e-6);
        }
    }

    @Test
    void biasesAndTheirGradientsAreTheCpusBits() {
        Random r = new Random(20);
        for (int[] s : new int[][] {{1, 1}, {7, 130}, {300, 33}}) {
            int rows = s[0], width = s[1];
            for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
                Tensor bias = weight("bias", dtype, dtype == DType.F32, random(r, width, 1f), width);
                Both y = floats(random(r, rows * width, 1f));
                cpu.addBias(y.c, rows, bias);
                cuda.addBias(y.g, rows, bias);
                assertArrayEquals(y.want(), y.got(), "addBias " + dtype + " " + Arrays.toString(s));
            }
            Both db = floats(random(r, width, 1f)), dy = floats(random(r, rows * width, 1f));
            cpu.biasBackward(db.c, dy.c, rows, width);
            cuda.biasBackward(db.g, dy.g, rows, width);
            assertArrayEquals(db.want(), db.got(), "biasBackward (row order) " + Arrays.toString(s));
        }
    }

    @Test
    void dropoutDrawsSplittableRandomsBitForBit() {
        Random r = new Random(21);
        for (long[] s : new long[][] {{1, 42, 0}, {1000, -7, 123456789}, {4097, 0x5DEECE66DL, 1L << 40}}) {
            int n = (int) s[0];
            for (double p : new double[] {0.1, 0.5}) {
                Both x = floats(random(r, n, 3f)), mask = out(n), dropped = out(n);
                cpu.dropout(mask.c, dropped.c, x.c, n, s[1], s[2], p);
                cuda.dropout(mask.g, dropped.g, x.g, n, s[1], s[2], p);
                assertExact("dropout mask " + Arrays.toString(s) + " p=" + p, mask, n);
                assertExact("dropout x " + Arrays.toString(s) + " p=" + p, dropped, n);
            }
        }
    }

    // ---------------------------------------------------------------- embedding, loss, reductions

    @Test
    void embeddingIsAnExactCopyAndBadIdsAreRaisedAtTheNextRead() {
        Random r = new Random(11);
        int vocab = 301, d = 37;
        int[] ids = {0, 300, 5, 5, 17, 299, 1};
        Both idt = ints(ids);
        for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            Tensor table = weight("embed", dtype, true, random(r, vocab * d, 1f), vocab, d);
            Both y = out(ids.length * d);
            cpu.embedding(y.c, table, idt.c, ids.length);
            cuda.embedding(y.g, table, idt.g, ids.length);
            assertExact("embedding " + dtype, y, ids.length * d);

            DeviceTensor bad = cuda.upload(new int[] {3, 301, 4}), yg = cuda.allocate(DType.F32, 3 * d);
            cuda.embedding(yg, table, bad, 3);                          // queued: the id is checked on the device
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cuda.download(yg));
            assertTrue(e.getMessage().startsWith("embedding: a token id outside the vocabulary [0, 301)"), e.getMessage());
            assertTrue(e.getMessage().contains("found at index 1"), e.getMessage());
            assertEquals(3 * d, cuda.download(yg).length, "the flag is cleared once raised");
        }
        Both dOut = floats(random(r, ids.length * d, 1f)), table = floats(random(r, vocab * d, 1f));
        cpu.embeddingBackward(table.c, dOut.c, idt.c, ids.length, d);
        cuda.embeddingBackward(table.g, dOut.g, idt.g, ids.length, d);
        assertArrayEquals(table.want(), table.got(), "embeddingBackward (id 5 twice, in order): the CPU's bits");
    }

    @Test
    void crossEntropyMatchesTheCpuWithIgnoredRows() {
        Random r = new Random(12);
        for (int[] s : new int[][] {{1, 7}, {9, 301}, {40, 4096}}) {
            int rows = s[0], vocab = s[1];
            float[] logits = random(r, rows * vocab, 8f);
            int[] targets = new int[rows];
            for (int i = 0; i < rows; i++) targets[i] = i % 4 == 3 ? Backend.IGNORE_INDEX : r.nextInt(vocab);
            Both l = floats(logits), t = ints(targets), dl = out(rows * vocab);
            double lossWant = cpu.crossEntropy(dl.c, l.c, t.c, rows, vocab, 0.5f);
            Transfers.Snapshot before = cuda.transfers().snapshot();
            double lossGot = cuda.crossEntropy(dl.g, l.g, t.g, rows, vocab, 0.5f);
            Transfers.Snapshot moved = cuda.transfers().snapshot().since(before);
            assertEquals(0, moved.toDevice());
            assertEquals(1, moved.toHost(), "the loss: one value back");
            assertEquals(lossWant, lossGot, 1e-5 * Math.abs(lossWant), "loss " + Arrays.toString(s));
            assertClose("dLogits " + Arrays.toString(s), dl, rows * vocab, 1e-5);
            assertEquals(lossWant, cuda.crossEntropy(null, l.g, t.g, rows, vocab, 1f), 1e-5 * Math.abs(lossWant), "without gradient");
            Both inPlace = floats(logits);
            cpu.crossEntropy(inPlace.c, inPlace.c, t.c, rows, vocab, 0.5f);
            cuda.crossEntropy(inPlace.g, inPlace.g, t.g, rows, vocab, 0.5f);
            assertClose("dLogits = logits", inPlace.want(), inPlace.got(), rows * vocab, 1e-5);
        }
        Both ignored = ints(new int[] {Backend.IGNORE_INDEX, Backend.IGNORE_INDEX}), d = out(6), l = floats(random(r, 6, 1f));
        assertTrue(Double.isNaN(cuda.crossEntropy(d.g, l.g, ignored.g, 2, 3, 1f)), "every row ignored: NaN");
        assertArrayEquals(new float[6], Arrays.copyOf(d.got(), 6), "dLogits of ignored rows are zeros");
        Both badTargets = ints(new int[] {0, 3});
        IllegalArgumentException ec = assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropy(null, l.c, badTargets.c, 2, 3, 1f));
        IllegalArgumentException eg = assertThrows(IllegalArgumentException.class, () -> cuda.crossEntropy(null, l.g, badTargets.g, 2, 3, 1f));
        assertEquals(ec.getMessage(), eg.getMessage());
    }

    @Test
    void sumOfSquaresAccumulatesOnTheDeviceAndFirstNonFiniteFindsTheFirst() {
        Random r = new Random(22);
        for (int n : new int[] {0, 1, 1000, 300007}) {
            float[] xs = random(r, n, 3f);
            Both x = floats(xs);
            DeviceTensor sc = cpu.allocate(DType.F64, 1), sg = cuda.allocate(DType.F64, 1);
            Transfers.Snapshot before = cuda.transfers().snapshot();
            for (int t = 0; t < 2; t++) {
                cpu.sumOfSquares(sc, x.c, n);
                cuda.sumOfSquares(sg, x.g, n);
            }
            assertEquals(0, cuda.transfers().snapshot().since(before).toHost(), "accumulated on the device");
            double[] want = new double[1], got = new double[1];
            cpu.read(sc, 0, want, 1);
            cuda.read(sg, 0, got, 1);
            assertEquals(want[0], got[0], 1e-10 * want[0], "sumOfSquares n=" + n + " (a tree order, not the index order)");
            assertEquals(-1, cuda.firstNonFinite(x.g, n), "all finite n=" + n);
            if (n > 10) {
                xs[n / 2] = Float.POSITIVE_INFINITY;
                xs[n / 2 + 3] = Float.NaN;
                xs[n - 1] = Float.NaN;
                Both y = floats(xs);
                assertEquals(cpu.firstNonFinite(y.c, n), cuda.firstNonFinite(y.g, n), "first non-finite n=" + n);
                assertEquals(n / 2, cuda.firstNonFinite(y.g, n));
            }
        }
    }

    @Test
    void channelStatisticsAreTheCpusBits() {
        Random r = new Random(23);
        int width = 129;
        Both mean = doubleZeros(width), m2 = doubleZeros(width), squares = doubleZeros(width);
        long count = 0;
        for (int rows : new int[] {1, 37, 300}) {
            Both h = floats(random(r, rows * width, 4f));
            cpu.channelStatistics(mean.c, m2.c, squares.c, count, h.c, rows, width);
            cuda.channelStatistics(mean.g, m2.g, squares.g, count, h.g, rows, width);
            count += rows;
        }
        for (Both b : new Both[] {mean, m2, squares}) {
            double[] want = new double[width], got = new double[width];
            cpu.read(b.c, 0, want, width);
            cuda.read(b.g, 0, got, width);
            assertArrayEquals(want, got, "channel statistics");
        }
    }

    // ---------------------------------------------------------------- routing and the permutation

    @Test
    void routingMatchesTheCpuIncludingTies() {
        Random r = new Random(13);
        // n, E, k
        for (int[] s : new int[][] {{1, 8, 2}, {37, 8, 1}, {50, 60, 4}, {9, 256, 8}, {5, 3, 3}}) {
            int n = s[0], e = s[1], k = s[2];
            for (boolean ties : new boolean[] {false, true}) {
                float[] logits = new float[n * e];
                for (int i = 0; i < logits.length; i++) logits[i] = ties ? r.nextInt(4) : (r.nextFloat() * 2 - 1) * 4;
                Both z = floats(logits), ids = intsOut(n * k), w = out(n * k);
                cpu.routeTopK(ids.c, w.c, z.c, n, e, k);
                cuda.routeTopK(ids.g, w.g, z.g, n, e, k);
                assertExactInts("expert ids " + Arrays.toString(s) + (ties ? " with ties" : ""), ids, n * k);
                assertClose("expert weights " + Arrays.toString(s), w, n * k, 1e-6);

                Both allIds = intsOut(n * e), soft = out(n * e);
                cpu.softRouting(allIds.c, soft.c, z.c, n, e, 0.7f);
                cuda.softRouting(allIds.g, soft.g, z.g, n, e, 0.7f);
                assertExactInts("softRouting ids " + Arrays.toString(s), allIds, n * e);
                assertClose("softRouting weights " + Arrays.toString(s), soft, n * e, 1e-6);
            }
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> cuda.routeTopK(cuda.allocate(DType.I32, 2), cuda.allocate(DType.F32, 2), cuda.allocate(DType.F32, 257), 1, 257, 2));
        assertTrue(e.getMessage().contains("expected 1 ≤ E ≤ 256"), e.getMessage());
    }

    @Test
    void expertCountsAndTheRoutingGradientAreTheCpus() {
        Random r = new Random(24);
        int n = 53, e = 8, slots = 3;
        int[] ids = new int[n * slots];
        for (int t = 0; t < n; t++) for (int j = 0; j < slots; j++) ids[t * slots + j] = (t + 3 * j) % e;
        Both idt = ints(ids), counts = ints(new int[2 * e + 1]);
        for (int rep = 0; rep < 2; rep++) {
            cpu.countExperts(counts.c, 1 + e * rep, idt.c, n * slots);
            cuda.countExperts(counts.g, 1 + e * rep, idt.g, n * slots);
        }
        assertExactInts("countExperts at two offsets", counts, 2 * e + 1);

        Both w = floats(random(r, n * slots, 1f)), dw = floats(random(r, n * slots, 1f)), dz = floats(random(r, n * e, 1f));
        cpu.routingBackward(dz.c, w.c, dw.c, idt.c, n, slots, e, 1.3);
        cuda.routingBackward(dz.g, w.g, dw.g, idt.g, n, slots, e, 1.3);
        assertArrayEquals(dz.want(), dz.got(), "routingBackward: the CPU's bits");

        DeviceTensor bad = cuda.upload(new int[] {1, 9, 2}), c = cuda.allocate(DType.I32, 8);
        cuda.countExperts(c, 0, bad, 3);
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> cuda.downloadInts(c));
        assertTrue(ex.getMessage().startsWith("countExperts: an expert id outside the 8 counts"), ex.getMessage());
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
            Both idt = ints(ids), off = intsOut(e + 1), rt = intsOut(n * k), sr = intsOut(n * k);
            cpu.sortByExpert(off.c, rt.c, sr.c, idt.c, n, k, e);
            cuda.sortByExpert(off.g, rt.g, sr.g, idt.g, n, k, e);
            assertExactInts("offsets " + Arrays.toString(s), off, e + 1);
            assertExactInts("rowToken " + Arrays.toString(s), rt, n * k);
            assertExactInts("slotRow " + Arrays.toString(s), sr, n * k);
        }
        DeviceTensor off = cuda.allocate(DType.I32, 4), rt = cuda.allocate(DType.I32, 2), sr = cuda.allocate(DType.I32, 2);
        cuda.sortByExpert(off, rt, sr, cuda.upload(new int[] {0, 3}), 1, 2, 3);      // a bad id …
        cuda.sortByExpert(off, rt, sr, cuda.upload(new int[] {0, 2}), 1, 2, 3);      // … then a good sort: still raised
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cuda.downloadInts(off));
        assertTrue(e.getMessage().startsWith("sortByExpert: an expert id outside [0, 3)"), e.getMessage());
        assertTrue(e.getMessage().contains("found at index 1"), e.getMessage());
    }

    @Test
    void gathersAndScatterAddRowsMatchTheCpu() {
        Random r = new Random(15);
        int tokens = 23, width = 77, count = 46;
        Both x = floats(random(r, tokens * width, 1f));
        int[] rows = new int[count];
        for (int i = 0; i < count; i++) rows[i] = r.nextInt(tokens);
        Both rt = ints(rows), y = out(count * width);
        cpu.gather(y.c, x.c, rt.c, count, width);
        cuda.gather(y.g, x.g, rt.g, count, width);
        assertExact("gather", y, count * width);

        Both src = floats(random(r, count * width, 1f));
        cpu.scatterAddRows(x.c, src.c, rt.c, count, width);
        cuda.scatterAddRows(x.g, src.g, rt.g, count, width);
        assertArrayEquals(x.want(), x.got(), "scatterAddRows (sources in order): the CPU's bits");

        int[] cols = {76, 0, 5, 5, 40};
        Both ct = ints(cols), yc = out(tokens * cols.length);
        cpu.gatherColumns(yc.c, x.c, ct.c, tokens, width, cols.length);
        cuda.gatherColumns(yc.g, x.g, ct.g, tokens, width, cols.length);
        assertExact("gatherColumns", yc, tokens * cols.length);
    }

    // ---------------------------------------------------------------- grouped and per-expert matmuls

    /** offsets for E experts over R rows with empty experts and a single-row one */
    static int[] offsets(int... rowsPerExpert) {
        int[] o = new int[rowsPerExpert.length + 1];
        for (int e = 0; e < rowsPerExpert.length; e++) o[e + 1] = o[e] + rowsPerExpert[e];
        return o;
    }

    static final int[][] GROUPINGS = {{0, 5, 1, 0, 17, 3}, {1}, {0, 0, 40, 0}};
    static final int[][] NK = {{53, 37}, {64, 130}, {1, 9}};
    /** rows of scratch past R: the GPU sees only a bound on R (R itself stays on the device) */
    static final int SPARE_ROWS = 11;

    @Test
    void groupedMatmulsMatchTheCpu() {
        Random r = new Random(16);
        for (int[] rowsPerExpert : GROUPINGS)
            for (int[] shape : NK)
                for (DType dtype : new DType[] {DType.F32, DType.F16, DType.BF16})
                    for (boolean readOnly : new boolean[] {true, false}) {
                        int experts = rowsPerExpert.length, n = shape[0], k = shape[1];
                        int[] off = offsets(rowsPerExpert);
                        int rows = off[experts], bound = rows + SPARE_ROWS;
                        Tensor[] w = new Tensor[experts], w3 = new Tensor[experts], bias = new Tensor[experts];
                        for (int e = 0; e < experts; e++) {
                            w[e] = weight("w" + e, dtype, readOnly, random(r, n * k, 1f), n, k);
                            w3[e] = weight("w3_" + e, dtype, readOnly, random(r, n * k, 1f), n, k);
                            bias[e] = e % 2 == 0 ? weight("b" + e, DType.F32, readOnly, random(r, n, 1f), n) : null;
                        }
                        String what = dtype + (readOnly ? " read-only " : " writable ") + Arrays.toString(rowsPerExpert) + " N,K " + Arrays.toString(shape);
                        double tol = dtype == DType.BF16 ? 1e-2 : 1e-5;
                        Both offs = ints(off), x = floats(random(r, bound * k, 1f));
                        for (Tensor[] b : new Tensor[][] {null, bias}) {
                            Both y = out(bound * n);
                            cpu.groupedMatmul(y.c, x.c, offs.c, w, b);
                            cuda.groupedMatmul(y.g, x.g, offs.g, w, b);
                            assertClose("groupedMatmul " + what + (b != null ? " with bias" : ""), y, rows * n, tol);
                            float[] got = y.got();
                            for (int i = rows * n; i < bound * n; i++) assertTrue(Float.isNaN(got[i]), what + ": row past R written");
                        }
                        Both y = out(bound * n);
                        cpu.expertMatmul(y.c, x.c, offs.c, w);
                        cuda.expertMatmul(y.g, x.g, offs.g, w);
                        assertClose("expertMatmul " + what, y, rows * n, tol);

                        // groupedMatmul2: x's rows through a row map (xRows, as sortByExpert's rowToken)
                        int tokens = 7;
                        int[] map = new int[bound];
                        for (int i = 0; i < bound; i++) map[i] = r.nextInt(tokens);
                        Both xt = floats(random(r, tokens * k, 1f)), xr = ints(map), g = out(bound * n), u = out(bound * n);
                        cpu.groupedMatmul2(g.c, u.c, xt.c, xr.c, offs.c, w, w3);
                        cuda.groupedMatmul2(g.g, u.g, xt.g, xr.g, offs.g, w, w3);
                        assertClose("groupedMatmul2 gate " + what, g, rows * n, tol);
                        assertClose("groupedMatmul2 up " + what, u, rows * n, tol);

                        Both dOut = floats(random(r, bound * n, 1f)), dx = out(bound * k);
                        cpu.expertMatmulBackwardInput(dx.c, dOut.c, offs.c, w);
                        cuda.expertMatmulBackwardInput(dx.g, dOut.g, offs.g, w);
                        assertClose("expertMatmulBackwardInput " + what, dx, rows * k, tol);
                    }
    }

    @Test
    void perExpertGradientsAndBiasesMatchTheCpu() {
        Random r = new Random(25);
        for (int[] rowsPerExpert : GROUPINGS)
            for (int[] shape : NK) {
                int experts = rowsPerExpert.length, n = shape[0], k = shape[1];
                int[] off = offsets(rowsPerExpert);
                int rows = off[experts], bound = rows + SPARE_ROWS;
                String what = Arrays.toString(rowsPerExpert) + " N,K " + Arrays.toString(shape);
                Both offs = ints(off), dOut = floats(random(r, bound * n, 1f)), x = floats(random(r, bound * k, 1f));
                Both[] dw = new Both[experts];
                for (int e = 0; e < experts; e++) dw[e] = e % 3 == 2 ? null : floats(random(r, n * k, 1f));
                cpu.expertMatmulBackwardWeight(Arrays.stream(dw).map(b -> b == null ? null : b.c).toArray(DeviceTensor[]::new), dOut.c, x.c, offs.c, n, k);
                cuda.expertMatmulBackwardWeight(Arrays.stream(dw).map(b -> b == null ? null : b.g).toArray(DeviceTensor[]::new), dOut.g, x.g, offs.g, n, k);
                for (int e = 0; e < experts; e++)
                    if (dw[e] != null) assertClose("expertMatmulBackwardWeight dw[" + e + "] " + what, dw[e].want(), dw[e].got(), n * k, 1e-5);

                Tensor[] bias = new Tensor[experts];
                for (int e = 0; e < experts; e++) bias[e] = e % 2 == 0 ? weight("b" + e, DType.F32, true, random(r, n, 1f), n) : null;
                Both y = floats(random(r, bound * n, 1f));
                cpu.expertAddBias(y.c, offs.c, bias, n);
                cuda.expertAddBias(y.g, offs.g, bias, n);
                assertArrayEquals(y.want(), y.got(), "expertAddBias " + what);

                Both[] db = new Both[experts];
                for (int e = 0; e < experts; e++) db[e] = e % 2 == 1 ? null : floats(random(r, n, 1f));
                cpu.expertBiasBackward(Arrays.stream(db).map(b -> b == null ? null : b.c).toArray(DeviceTensor[]::new), dOut.c, offs.c, n);
                cuda.expertBiasBackward(Arrays.stream(db).map(b -> b == null ? null : b.g).toArray(DeviceTensor[]::new), dOut.g, offs.g, n);
                for (int e = 0; e < experts; e++)
                    if (db[e] != null) assertArrayEquals(db[e].want(), db[e].got(), "expertBiasBackward db[" + e + "] (row order) " + what);
            }
    }

    @Test
    void perExpertSwigluAndDropoutMatchTheCpu() {
        Random r = new Random(29);
        for (int[] rowsPerExpert : GROUPINGS)
            for (int width : new int[] {1, 48, 129}) {
                int experts = rowsPerExpert.length;
                int[] off = offsets(rowsPerExpert);
                int rows = off[experts], bound = rows + SPARE_ROWS;
                String what = Arrays.toString(rowsPerExpert) + " width " + width;
                Both offs = ints(off), gate = floats(random(r, bound * width, 6f)), up = floats(random(r, bound * width, 2f)), y = out(bound * width);
                cpu.expertSwiglu(y.c, gate.c, up.c, offs.c, experts, width);
                cuda.expertSwiglu(y.g, gate.g, up.g, offs.g, experts, width);
                assertClose("expertSwiglu " + what, y, rows * width, 1e-5);   // rows past R stay NaN

                Both dOut = floats(random(r, bound * width, 1f)), dg = out(bound * width), du = out(bound * width);
                cpu.expertSwigluBackward(dg.c, du.c, dOut.c, gate.c, up.c, offs.c, experts, width);
                cuda.expertSwigluBackward(dg.g, du.g, dOut.g, gate.g, up.g, offs.g, experts, width);
                assertClose("expertSwigluBackward dGate " + what, dg, rows * width, 1e-5);
                assertClose("expertSwigluBackward dUp " + what, du, rows * width, 1e-5);

                Both x = floats(random(r, bound * width, 3f)), mask = out(bound * width), dropped = out(bound * width);
                cpu.expertDropout(mask.c, dropped.c, x.c, offs.c, experts, width, 77, 1000, 3 * width, width, 0.25);
                cuda.expertDropout(mask.g, dropped.g, x.g, offs.g, experts, width, 77, 1000, 3 * width, width, 0.25);
                assertExact("expertDropout mask " + what, mask, rows * width);
                assertExact("expertDropout x " + what, dropped, rows * width);
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
            Both eo = floats(random(r, n * k * d, 1f)), w = floats(random(r, n * k, 1f)), sr = ints(slotRow), y = out(n * d);
            cpu.combineExperts(y.c, eo.c, sr.c, w.c, n, k, d);
            cuda.combineExperts(y.g, eo.g, sr.g, w.g, n, k, d);
            assertClose("combineExperts " + Arrays.toString(s), y, n * d, 1e-5);

            Both dy = floats(random(r, n * d, 1f)), dEo = out(n * k * d), dW = out(n * k);
            cpu.combineExpertsBackward(dEo.c, dW.c, dy.c, eo.c, sr.c, w.c, n, k, d);
            cuda.combineExpertsBackward(dEo.g, dW.g, dy.g, eo.g, sr.g, w.g, n, k, d);
            assertClose("combineExpertsBackward dExpertOut " + Arrays.toString(s), dEo, n * k * d, 1e-5);
            assertClose("combineExpertsBackward dWeights " + Arrays.toString(s), dW, n * k, 1e-5);
        }
    }

    // ---------------------------------------------------------------- whole blocks, and what crosses the edge

    /**
     * A small Mixtral block, experts of {@code dtype}; the router F32, so the GPU's router logits are within ~1e-6 of the
     * CPU's and the top-k choice is the same (BF16-rounded activations could reorder close logits)
     */
    static MoeFfn moe(Random r, DType dtype, int d, int ffn, int experts, int topK) {
        Tensor router = weight("router", DType.F32, true, random(r, experts * d, 0.5f), experts, d);
        Tensor[] w1 = new Tensor[experts], w3 = new Tensor[experts], w2 = new Tensor[experts];
        for (int e = 0; e < experts; e++) {
            w1[e] = weight("w1." + e, dtype, true, random(r, ffn * d, 0.2f), ffn, d);
            w3[e] = weight("w3." + e, dtype, true, random(r, ffn * d, 0.2f), ffn, d);
            w2[e] = weight("w2." + e, dtype, true, random(r, d * ffn, 0.3f), d, ffn);
        }
        return new MoeFfn(router, w1, w3, w2, null, topK);
    }

    @Test
    void feedForwardBlocksRunOnTheDeviceAsOnTheCpu() {
        Random r = new Random(26);
        int d = 64, ffn = 48, rows = 29;
        for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
            double tol = dtype == DType.BF16 ? 2e-2 : 1e-5;
            MoeFfn block = moe(r, dtype, d, ffn, 4, 2);
            DenseFfn dense = new DenseFfn(weight("gate", dtype, true, random(r, ffn * d, 0.2f), ffn, d),
                    weight("up", dtype, true, random(r, ffn * d, 0.2f), ffn, d), weight("down", dtype, true, random(r, d * ffn, 0.3f), d, ffn),
                    weight("gateBias", DType.F32, true, random(r, ffn, 0.1f), ffn), null, weight("downBias", DType.F32, true, random(r, d, 0.1f), d));
            float[] xs = random(r, rows * d, 1f);
            for (FeedForward f : new FeedForward[] {block, dense}) {
                try (FeedForward.Scratch sc = new FeedForward.Scratch(cpu); FeedForward.Scratch sg = new FeedForward.Scratch(cuda)) {
                    Both x = floats(xs), y = out(rows * d);
                    // a larger call first: the scratch holds more rows than the second call uses
                    Both big = floats(random(r, 3 * rows * d, 1f)), bigY = out(3 * rows * d);
                    f.forward(cpu, bigY.c, big.c, 3 * rows, 0, sc, null);
                    f.forward(cuda, bigY.g, big.g, 3 * rows, 0, sg, null);
                    f.forward(cpu, y.c, x.c, rows, 0, sc, null);
                    f.forward(cuda, y.g, x.g, rows, 0, sg, null);
                    assertClose(f + " " + dtype, y, rows * d, tol);
                }
            }
        }
    }

    @Test
    void aChainOfOpsMovesNothingBetweenItsUploadAndItsDownload() {
        Random r = new Random(27);
        int vocab = 50, d = 64, ffn = 48, tokens = 9;
        Tensor embed = weight("embed", DType.BF16, true, random(r, vocab * d, 1f), vocab, d);
        Tensor norm = weight("norm", DType.F32, true, random(r, d, 1f), d);
        Tensor head = weight("head", DType.BF16, true, random(r, vocab * d, 0.2f), vocab, d);
        MoeFfn block = moe(r, DType.BF16, d, ffn, 4, 2);
        int[] ids = new int[tokens];
        for (int i = 0; i < tokens; i++) ids[i] = r.nextInt(vocab);
        Transfers.Snapshot[] perBackend = new Transfers.Snapshot[2];
        float[][] logits = new float[2][];
        Backend[] backends = {cpu, cuda};
        for (int b = 0; b < 2; b++) {
            Backend be = backends[b];
            for (int pass = 0; pass < 2; pass++) {   // the first pass uploads the weights into the GPU's cache
                try (DeviceScope s = new DeviceScope(be); FeedForward.Scratch scratch = new FeedForward.Scratch(be)) {
                    DeviceTensor h = s.floats(tokens * d), xn = s.floats(tokens * d), y = s.floats(tokens * d), out = s.floats(tokens * vocab);
                    Transfers.Snapshot before = be.transfers().snapshot();
                    DeviceTensor idt = s.upload(ids);                                      // the one upload
                    be.embedding(h, embed, idt, tokens);
                    be.rmsNorm(xn, h, norm, tokens, 1e-5f);
                    block.forward(be, y, xn, tokens, 0, scratch, null);
                    be.add(h, y, tokens * d);
                    be.rmsNorm(xn, h, norm, tokens, 1e-5f);
                    be.matmul(out, xn, tokens, head);
                    float[] result = be.download(out);                                     // the one download
                    Transfers.Snapshot moved = be.transfers().snapshot().since(before);
                    if (pass == 1) {
                        perBackend[b] = moved;
                        logits[b] = result;
                    }
                }
            }
        }
        assertEquals(1, perBackend[1].toDevice(), "GPU, weights cached: only the ids go up: " + perBackend[1]);
        assertEquals(1, perBackend[1].toHost(), "GPU: only the logits come back: " + perBackend[1]);
        assertEquals(4L * tokens, perBackend[1].bytesToDevice());
        assertEquals(4L * tokens * vocab, perBackend[1].bytesToHost());
        assertEquals(perBackend[0], perBackend[1], "the CPU counts the same transfers");
        assertClose("logits through embedding, norm, MoE block, norm, head", logits[0], logits[1], tokens * vocab, 3e-2);
    }

    // ---------------------------------------------------------------- memory, faults

    @Test
    void memoryTransfersAndCopiesAreExact() {
        Random r = new Random(28);
        float[] xs = random(r, 100, 1f);
        DeviceTensor x = cuda.upload(xs), y = cuda.allocate(DType.F32, 120);
        assertEquals(120, y.size());
        assertArrayEquals(new float[120], cuda.download(y), "allocate gives zeros");
        cuda.copy(y, 10, x, 5, 90);
        float[] want = new float[120];
        System.arraycopy(xs, 5, want, 10, 90);
        assertArrayEquals(want, cuda.download(y), "copy");
        cuda.zero(y, 20, 30);
        Arrays.fill(want, 20, 50, 0f);
        assertArrayEquals(want, cuda.download(y), "zero");
        cuda.write(y, 100, new float[] {7, 8, 9}, 2);
        want[100] = 7;
        want[101] = 8;
        float[] part = new float[4];
        cuda.read(y, 99, part, 4);
        assertArrayEquals(Arrays.copyOfRange(want, 99, 103), part, "write and read at offsets");
        int[] is = {3, -1, 7};
        DeviceTensor it = cuda.upload(is), jt = cuda.allocate(DType.I32, 3);
        cuda.copy(jt, 0, it, 0, 3);
        assertArrayEquals(is, cuda.downloadInts(jt));
        assertThrows(IllegalArgumentException.class, () -> cuda.copy(jt, 0, x, 0, 3), "dtypes differ");
        assertThrows(IllegalArgumentException.class, () -> cuda.copy(y, 100, x, 0, 30), "past the end");
        try (CudaBackend own = new CudaBackend(new ScalarBackend())) {   // its own count of live tensor bytes
            DeviceTensor t = own.allocate(DType.F64, 1000), keep = own.allocate(DType.I32, 10);
            assertEquals(8040, own.deviceTensorBytes());
            t.close();
            t.close();   // idempotent
            assertEquals(40, own.deviceTensorBytes());
            assertEquals(10, keep.size());
        }
    }

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
        CudaException e = assertThrows(CudaException.class, () -> cuda.allocate(DType.F32, 1L << 48));
        assertTrue(e.getMessage().startsWith("dive_malloc(1125899906842624 bytes for a F32 tensor"), e.getMessage());
        // and the backend still computes
        DeviceTensor x = cuda.upload(new float[] {1, 2}), y = cuda.upload(new float[] {3, 4});
        cuda.add(x, y, 2);
        assertArrayEquals(new float[] {4, 6}, cuda.download(x));
    }

    @Test
    void badArgumentsAreRejectedBeforeAnyDeviceWork() {
        Tensor w = weight("w", DType.F32, false, new float[6], 2, 3);
        DeviceTensor small = cuda.allocate(DType.F32, 5), out = cuda.allocate(DType.F32, 4);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cuda.matmul(out, small, 2, w));
        assertEquals("matmul: x (M, K) has 5 elements, expected ≥ 6", e.getMessage());
        DeviceTensor eight = cuda.allocate(DType.F32, 8);
        e = assertThrows(IllegalArgumentException.class, () -> cuda.attention(eight, eight, eight, eight, 1, 0, 3, 2, 4, 1f));
        assertTrue(e.getMessage().startsWith("attention: 3 query heads over 2 KV heads"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cuda.add(cpu.upload(new float[4]), out, 4));
        assertTrue(e.getMessage().contains("of another backend"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cuda.add(cuda.allocate(DType.I32, 4), out, 4));
        assertTrue(e.getMessage().contains("is I32 (expected F32)"), e.getMessage());
        DeviceTensor closed = cuda.allocate(DType.F32, 4);
        closed.close();
        IllegalStateException s = assertThrows(IllegalStateException.class, () -> cuda.add(closed, out, 4));
        assertTrue(s.getMessage().contains("closed device tensor"), s.getMessage());
    }
}
