package dive.convert;

import java.util.Arrays;

/**
 * Streaming per-channel statistics of one FFN layer's intermediate activation h (N tokens × F channels):
 * count N, mean, M2 = Σ_n (h_nj − mean_j)², and Σ_n h_nj² — all in double.
 *
 * <p>Each batch is reduced exactly (two passes over the batch in double: its mean, then its M2 about that mean) and
 * merged into the running values with Chan et al.'s pairwise update, the batch form of Welford:
 * <pre>
 * n = n_a + n_b,  δ = mean_b − mean_a,  mean = mean_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n
 * </pre>
 * so statistics of several batches or datasets can be {@link #merge merged} (exact up to rounding). Every update
 * writes into fresh values computed from the old ones; nothing is updated through an alias of its own input (FLAP's
 * reference code updates its running mean in place before the variance term reads it — not reproduced here).
 */
public final class ChannelStatistics {
    private final int width;
    private long count;
    private final double[] mean;        // (F)
    private final double[] m2;          // (F) Σ (h − mean)²
    private final double[] sumSquares;  // (F) Σ h²

    public ChannelStatistics(int width) {
        if (width < 1) throw new IllegalArgumentException("channel statistics of width " + width + " (expected ≥ 1)");
        this.width = width;
        this.mean = new double[width];
        this.m2 = new double[width];
        this.sumSquares = new double[width];
    }

    private ChannelStatistics(int width, long count, double[] mean, double[] m2, double[] sumSquares) {
        this.width = width; this.count = count; this.mean = mean; this.m2 = m2; this.sumSquares = sumSquares;
    }

    /** statistics from raw values (e.g. read back from a file): count, mean (F), M2 (F), Σh² (F) */
    public static ChannelStatistics of(long count, double[] mean, double[] m2, double[] sumSquares) {
        if (mean.length != m2.length || mean.length != sumSquares.length || mean.length == 0)
            throw new IllegalArgumentException("channel statistics: mean, M2 and Σh² have " + mean.length + ", " + m2.length + ", "
                    + sumSquares.length + " channels (expected the same number ≥ 1)");
        if (count < 0) throw new IllegalArgumentException("channel statistics: count " + count + " (expected ≥ 0)");
        return new ChannelStatistics(mean.length, count, mean.clone(), m2.clone(), sumSquares.clone());
    }

    /** adds the first {@code rows} rows of h (rows, F) */
    public void add(float[] h, int rows) {
        if (rows <= 0) return;
        if ((long) rows * width > h.length) throw new IllegalArgumentException(rows + " rows of width " + width + " but h has " + h.length + " values");
        double[] batchMean = new double[width], batchM2 = new double[width], batchSquares = new double[width];
        for (int n = 0; n < rows; n++) {
            int off = n * width;
            for (int j = 0; j < width; j++) {
                double v = h[off + j];
                batchMean[j] += v;
                batchSquares[j] += v * v;
            }
        }
        for (int j = 0; j < width; j++) batchMean[j] /= rows;
        for (int n = 0; n < rows; n++) {
            int off = n * width;
            for (int j = 0; j < width; j++) {
                double dev = h[off + j] - batchMean[j];
                batchM2[j] += dev * dev;
            }
        }
        mergeInto(this, new ChannelStatistics(width, rows, batchMean, batchM2, batchSquares));
    }

    /** a + b as new statistics (neither input changes) */
    public static ChannelStatistics merge(ChannelStatistics a, ChannelStatistics b) {
        ChannelStatistics out = a.copy();
        mergeInto(out, b);
        return out;
    }

    /** into += b (Chan's update; reads b's values and into's old values before writing any) */
    private static void mergeInto(ChannelStatistics into, ChannelStatistics b) {
        if (into.width != b.width) throw new IllegalArgumentException("cannot merge statistics of " + into.width + " and " + b.width + " channels");
        if (b.count == 0) return;
        long na = into.count, nb = b.count, n = na + nb;
        for (int j = 0; j < into.width; j++) {
            double meanA = into.mean[j], delta = b.mean[j] - meanA;
            into.mean[j] = meanA + delta * nb / n;
            into.m2[j] = into.m2[j] + b.m2[j] + delta * delta * ((double) na * nb / n);
            into.sumSquares[j] += b.sumSquares[j];
        }
        into.count = n;
    }

    public ChannelStatistics copy() { return new ChannelStatistics(width, count, mean.clone(), m2.clone(), sumSquares.clone()); }

    public int width() { return width; }

    /** N, the tokens seen */
    public long count() { return count; }

    /** mean_n h_nj (F), a copy */
    public double[] mean() { return mean.clone(); }

    /** M2_j = Σ_n (h_nj − mean_j)² (F), a copy */
    public double[] m2() { return m2.clone(); }

    /** Σ_n h_nj² (F), a copy */
    public double[] sumSquares() { return sumSquares.clone(); }

    /** unbiased variance M2 / (N − 1) (F); needs N ≥ 2 */
    public double[] variance() {
        if (count < 2) throw new IllegalStateException("unbiased variance needs at least 2 tokens, have " + count);
        double[] v = new double[width];
        for (int j = 0; j < width; j++) v[j] = m2[j] / (count - 1);
        return v;
    }

    /** E[h_j²] = Σ h² / N (F) */
    public double[] meanSquare() {
        requireTokens();
        double[] v = new double[width];
        for (int j = 0; j < width; j++) v[j] = sumSquares[j] / count;
        return v;
    }

    /** ‖h_j‖₂ over the N tokens = sqrt(Σ h²) (F) */
    public double[] l2Norm() {
        requireTokens();
        double[] v = new double[width];
        for (int j = 0; j < width; j++) v[j] = Math.sqrt(sumSquares[j]);
        return v;
    }

    private void requireTokens() {
        if (count < 1) throw new IllegalStateException("channel statistics have seen no tokens");
    }

    @Override public String toString() {
        return "ChannelStatistics[" + width + " channels, " + count + " tokens, mean[0..3) " + Arrays.toString(Arrays.copyOf(mean, Math.min(3, width))) + "]";
    }
}
