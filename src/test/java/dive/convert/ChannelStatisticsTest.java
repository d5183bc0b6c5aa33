package dive.convert;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Streaming statistics against a double-precision two-pass computation on adversarial data (large mean, small variance). */
class ChannelStatisticsTest {

    /** h (rows, width): channel j ≈ offset_j + tiny noise, exactly representable in F32 */
    static float[] adversarial(int rows, int width, long seed) {
        Random random = new Random(seed);
        float[] h = new float[rows * width];
        for (int n = 0; n < rows; n++)
            for (int j = 0; j < width; j++) {
                float offset = j % 2 == 0 ? 10000f : -3000f + j;
                // F32 spacing at 1e4 is 2^-10 ≈ 0.001: noise of a few ulps
                h[n * width + j] = offset + (float) Math.scalb((double) random.nextInt(17) - 8, -10);
            }
        return h;
    }

    /** two passes in double: mean, then Σ (h − mean)² */
    static double[][] twoPass(float[] h, int rows, int width) {
        double[] mean = new double[width], m2 = new double[width], squares = new double[width];
        for (int n = 0; n < rows; n++) for (int j = 0; j < width; j++) { mean[j] += h[n * width + j]; squares[j] += (double) h[n * width + j] * h[n * width + j]; }
        for (int j = 0; j < width; j++) mean[j] /= rows;
        for (int n = 0; n < rows; n++) for (int j = 0; j < width; j++) { double dev = h[n * width + j] - mean[j]; m2[j] += dev * dev; }
        return new double[][] {mean, m2, squares};
    }

    @Test
    void streamingInUnevenBatchesEqualsTwoPass() {
        int rows = 5000, width = 6;
        float[] h = adversarial(rows, width, 1);
        double[][] ref = twoPass(h, rows, width);
        ChannelStatistics s = new ChannelStatistics(width);
        Random random = new Random(2);
        for (int start = 0; start < rows; ) {
            int take = Math.min(rows - start, 1 + random.nextInt(300));
            s.add(java.util.Arrays.copyOfRange(h, start * width, (start + take) * width), take);
            start += take;
        }
        assertEquals(rows, s.count());
        double[] variance = s.variance();
        for (int j = 0; j < width; j++) {
            assertEquals(ref[0][j], s.mean()[j], 1e-12 * Math.abs(ref[0][j]), "mean " + j);
            assertEquals(ref[1][j], s.m2()[j], 1e-9 * ref[1][j], "M2 " + j);
            assertEquals(ref[1][j] / (rows - 1), variance[j], 1e-9 * variance[j], "variance " + j);
            assertEquals(ref[2][j] / rows, s.meanSquare()[j], 1e-12 * ref[2][j] / rows, "E[h²] " + j);
            assertTrue(variance[j] > 1e-6 && variance[j] < 1e-4, "the data has a tiny variance: " + variance[j]);
        }
        // the textbook one-pass formula E[h²] − mean² is visibly wrong on this data: the test data is adversarial
        double naive = ref[2][0] / rows - ref[0][0] * ref[0][0];
        assertTrue(Math.abs(naive - ref[1][0] / rows) > 1e-3 * (ref[1][0] / rows), "naive formula unexpectedly accurate");
    }

    @Test
    void mergeOfTwoPartsEqualsTheWhole() {
        int width = 4;
        float[] a = adversarial(700, width, 3), b = adversarial(1300, width, 4);
        for (int i = 0; i < b.length; i++) b[i] += 0.5f;  // different means, so the δ² term matters
        ChannelStatistics sa = new ChannelStatistics(width), sb = new ChannelStatistics(width);
        sa.add(a, 700);
        sb.add(b, 1300);
        float[] all = new float[a.length + b.length];
        System.arraycopy(a, 0, all, 0, a.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        double[][] ref = twoPass(all, 2000, width);
        ChannelStatistics ab = ChannelStatistics.merge(sa, sb), ba = ChannelStatistics.merge(sb, sa);
        for (ChannelStatistics m : new ChannelStatistics[] {ab, ba}) {
            assertEquals(2000, m.count());
            for (int j = 0; j < width; j++) {
                assertEquals(ref[0][j], m.mean()[j], 1e-12 * Math.abs(ref[0][j]));
                assertEquals(ref[1][j], m.m2()[j], 1e-9 * ref[1][j]);
                assertEquals(ref[2][j], m.sumSquares()[j], 1e-12 * ref[2][j]);
            }
        }
        // inputs untouched (no aliasing): a's statistics are still a's alone
        double[][] refA = twoPass(a, 700, width);
        assertEquals(700, sa.count());
        assertEquals(refA[1][0], sa.m2()[0], 1e-9 * refA[1][0]);
        // merging with empty statistics changes nothing
        ChannelStatistics withEmpty = ChannelStatistics.merge(new ChannelStatistics(width), sa);
        assertArrayEquals(sa.mean(), withEmpty.mean(), 0);
        assertArrayEquals(sa.m2(), withEmpty.m2(), 0);
    }

    @Test
    void handExample() {
        // channel 0: 1, 2, 3, 4 → mean 2.5, M2 5, variance 5/3, E[h²] 7.5; channel 1: constant 7 → variance 0
        float[] h = {1, 7, 2, 7, 3, 7, 4, 7};
        ChannelStatistics s = new ChannelStatistics(2);
        s.add(h, 1);
        s.add(java.util.Arrays.copyOfRange(h, 2, 8), 3);
        assertArrayEquals(new double[] {2.5, 7}, s.mean(), 1e-15);
        assertArrayEquals(new double[] {5, 0}, s.m2(), 1e-15);
        assertArrayEquals(new double[] {5.0 / 3, 0}, s.variance(), 1e-15);
        assertArrayEquals(new double[] {7.5, 49}, s.meanSquare(), 1e-15);
        assertArrayEquals(new double[] {Math.sqrt(30), 14}, s.l2Norm(), 1e-15);
    }

    @Test
    void badUseIsRefused() {
        ChannelStatistics s = new ChannelStatistics(3);
        assertThrows(IllegalStateException.class, s::meanSquare);
        s.add(new float[] {1, 2, 3}, 1);
        assertThrows(IllegalStateException.class, s::variance);  // unbiased needs N ≥ 2
        assertThrows(IllegalArgumentException.class, () -> s.add(new float[] {1, 2}, 1));
        assertThrows(IllegalArgumentException.class, () -> ChannelStatistics.merge(s, new ChannelStatistics(2)));
        assertThrows(IllegalArgumentException.class, () -> new ChannelStatistics(0));
    }
}
