package dive.backend;

import dive.convert.ChannelStatistics;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The device-tensor ops that have no array twin of the same name, against independent host computations. */
class DeviceOpsTest {
    final CpuBackend[] backends = {new ScalarBackend(), new VectorBackend(2)};

    static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) r.nextGaussian();
        return v;
    }

    @Test
    void dropoutDrawsTheStreamOfSplittableRandom() {
        float[] x = random(new Random(1), 1000);
        long seed = 0x1234_5678_9abcL;
        double p = 0.3;
        SplittableRandom stream = new SplittableRandom(seed);
        for (int i = 0; i < 77; i++) stream.nextDouble();  // the op starts at draw 77
        float keep = (float) (1 / (1 - p));
        float[] mask = new float[x.length], dropped = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            mask[i] = stream.nextDouble() < p ? 0f : keep;
            dropped[i] = x[i] * mask[i];
        }
        for (CpuBackend b : backends) {
            DeviceTensor m = b.allocate(DType.F32, x.length), d = b.allocate(DType.F32, x.length);
            b.dropout(m, d, b.upload(x), x.length, seed, 77, p);
            assertArrayEquals(mask, b.download(m));
            assertArrayEquals(dropped, b.download(d));
        }
    }

    @Test
    void expertDropoutDrawsAsALoopOverExpertsAndTheirLinears() {
        // 3 experts with 2, 0, 3 rows; two dropping linears per expert, of input widths 4 and 6, drawing in turn
        int[] offsets = {0, 2, 2, 5};
        int w1 = 4, w2 = 6, rows = 5;
        float[] x1 = random(new Random(2), rows * w1), x2 = random(new Random(3), rows * w2);
        long seed = 99;
        double p = 0.25;
        float keep = (float) (1 / (1 - p));
        SplittableRandom stream = new SplittableRandom(seed);
        for (int i = 0; i < 10; i++) stream.nextDouble();
        float[] mask1 = new float[rows * w1], mask2 = new float[rows * w2];
        for (int e = 0; e < 3; e++) {
            for (int r = offsets[e]; r < offsets[e + 1]; r++)
                for (int c = 0; c < w1; c++) mask1[r * w1 + c] = stream.nextDouble() < p ? 0f : keep;
            for (int r = offsets[e]; r < offsets[e + 1]; r++)
                for (int c = 0; c < w2; c++) mask2[r * w2 + c] = stream.nextDouble() < p ? 0f : keep;
        }
        for (CpuBackend b : backends) {
            DeviceTensor off = b.upload(offsets);
            DeviceTensor m1 = b.allocate(DType.F32, rows * w1), d1 = b.allocate(DType.F32, rows * w1);
            DeviceTensor m2 = b.allocate(DType.F32, rows * w2), d2 = b.allocate(DType.F32, rows * w2);
            b.expertDropout(m1, d1, b.upload(x1), off, 3, w1, seed, 10, w1 + w2, 0, p);
            b.expertDropout(m2, d2, b.upload(x2), off, 3, w2, seed, 10, w1 + w2, w1, p);
            assertArrayEquals(mask1, b.download(m1));
            assertArrayEquals(mask2, b.download(m2));
            float[] got = b.download(d2);
            for (int i = 0; i < got.length; i++) assertEquals(x2[i] * mask2[i], got[i]);
        }
    }

    @Test
    void channelStatisticsMergeAsTheHostStatisticsDo() {
        int width = 37;
        ChannelStatistics host = new ChannelStatistics(width);
        for (CpuBackend b : backends) {
            DeviceTensor mean = b.allocate(DType.F64, width), m2 = b.allocate(DType.F64, width), sq = b.allocate(DType.F64, width);
            long count = 0;
            Random data = new Random(5);
            if (b == backends[0]) host = new ChannelStatistics(width);
            for (int rows : new int[] {3, 1, 17, 0, 40}) {
                float[] h = random(data, rows * width);
                b.channelStatistics(mean, m2, sq, count, b.upload(h), rows, width);
                count += rows;
                if (b == backends[0]) host.add(h, rows);
            }
            double[] gotMean = new double[width], gotM2 = new double[width], gotSq = new double[width];
            b.read(mean, 0, gotMean, width);
            b.read(m2, 0, gotM2, width);
            b.read(sq, 0, gotSq, width);
            assertEquals(host.count(), count);
            assertArrayEquals(host.mean(), gotMean, 0);
            assertArrayEquals(host.m2(), gotM2, 0);
            assertArrayEquals(host.sumSquares(), gotSq, 0);
        }
    }

    @Test
    void expertMatmulsEqualOneMatmulPerExpert() {
        Random r = new Random(6);
        int[] offsets = {0, 3, 3, 7};
        int k = 8, n = 5, rows = 7;
        Tensor[] w = new Tensor[3];
        for (int e = 0; e < 3; e++) w[e] = Tensor.ofFloats("w" + e, random(r, n * k), n, k);
        float[] x = random(r, rows * k), dy = random(r, rows * n);
        for (CpuBackend b : backends) {
            DeviceTensor off = b.upload(offsets), out = b.allocate(DType.F32, rows * n), dx = b.allocate(DType.F32, rows * k);
            b.expertMatmul(out, b.upload(x), off, w);
            b.expertMatmulBackwardInput(dx, b.upload(dy), off, w);
            DeviceTensor[] dw = {b.allocate(DType.F32, n * k), null, b.allocate(DType.F32, n * k)};
            b.expertMatmulBackwardWeight(dw, b.upload(dy), b.upload(x), off, n, k);
            float[] y = b.download(out), gx = b.download(dx);
            for (int e : new int[] {0, 2}) {
                int first = offsets[e], count = offsets[e + 1] - first;
                for (int i = 0; i < count; i++)
                    for (int j = 0; j < n; j++) {  // y[r, j] = Σ_c x[r, c]·w[j, c], by hand in double
                        double s = 0;
                        for (int c = 0; c < k; c++) s += (double) x[(first + i) * k + c] * w[e].getFloat((long) j * k + c);
                        assertEquals(s, y[(first + i) * n + j], 1e-5);
                    }
                for (int i = 0; i < count; i++)
                    for (int c = 0; c < k; c++) {  // dx[r, c] = Σ_j dy[r, j]·w[j, c]
                        double s = 0;
                        for (int j = 0; j < n; j++) s += (double) dy[(first + i) * n + j] * w[e].getFloat((long) j * k + c);
                        assertEquals(s, gx[(first + i) * k + c], 1e-5);
                    }
                float[] g = b.download(dw[e]);
                for (int j = 0; j < n; j++)
                    for (int c = 0; c < k; c++) {  // dw[j, c] = Σ_r dy[r, j]·x[r, c] over the expert's rows
                        double s = 0;
                        for (int i = 0; i < count; i++) s += (double) dy[(first + i) * n + j] * x[(first + i) * k + c];
                        assertEquals(s, g[j * k + c], 1e-5);
                    }
            }
        }
    }

    @Test
    void transfersAreCountedAndOpsBetweenThemAreNot() {
        CpuBackend b = new VectorBackend(2);
        var before = b.transfers().snapshot();
        DeviceTensor x = b.upload(new float[] {1, 2, 3}), y = b.allocate(DType.F32, 3);
        b.copy(y, 0, x, 0, 3);
        b.add(y, x, 3);
        b.scale(y, 0.5f, 3);
        assertArrayEquals(new float[] {1, 2, 3}, b.download(y));
        assertEquals(new Transfers.Snapshot(1, 1, 12, 12), b.transfers().snapshot().since(before));
    }

    @Test
    void wrongTensorsAreNamed() {
        CpuBackend b = new ScalarBackend();
        var e = assertThrows(IllegalArgumentException.class,
                () -> b.add(b.allocate(DType.I32, 3), b.allocate(DType.F32, 3), 3));
        assertTrue(e.getMessage().contains("add x is I32 (expected F32)"), e.getMessage());
    }
}
