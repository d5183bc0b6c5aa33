package dive.convert;

/** DIVE's affinity matrices (section 3): column-normalised perplexities and the Pearson correlation of their rows. */
public final class Affinity {
    private Affinity() {}

    /**
     * A[i][j] = min_i' P[i'][j] / P[i][j]: 1 for the calibration set i that gives eval set j its lowest perplexity.
     * P (D × D): row i = pruned with dataset i, column j = evaluated on dataset j.
     */
    public static double[][] normalizeColumns(double[][] perplexity) {
        int rows = perplexity.length, cols = perplexity[0].length;
        double[][] out = new double[rows][cols];
        for (int j = 0; j < cols; j++) {
            double min = Double.POSITIVE_INFINITY;
            for (double[] row : perplexity) {
                if (!(row[j] > 0) || !Double.isFinite(row[j])) throw new IllegalArgumentException("perplexity " + row[j] + " in column " + j + " (expected finite and > 0)");
                min = Math.min(min, row[j]);
            }
            for (int i = 0; i < rows; i++) out[i][j] = min / perplexity[i][j];
        }
        return out;
    }

    /**
     * Pearson correlation of the rows of {@code a} (D × D'). A row with zero variance correlates 0 with every other
     * row (and 1 with itself): it carries no pattern to agree with.
     */
    public static double[][] rowCorrelation(double[][] a) {
        int n = a.length, m = a[0].length;
        double[][] centered = new double[n][m];
        double[] norm = new double[n];
        for (int i = 0; i < n; i++) {
            double mean = 0;
            for (double v : a[i]) mean += v;
            mean /= m;
            for (int j = 0; j < m; j++) { centered[i][j] = a[i][j] - mean; norm[i] += centered[i][j] * centered[i][j]; }
            norm[i] = Math.sqrt(norm[i]);
        }
        double[][] corr = new double[n][n];
        for (int i = 0; i < n; i++) {
            corr[i][i] = 1;
            for (int k = i + 1; k < n; k++) {
                double dot = 0;
                for (int j = 0; j < m; j++) dot += centered[i][j] * centered[k][j];
                double c = norm[i] > 0 && norm[k] > 0 ? Math.max(-1, Math.min(1, dot / (norm[i] * norm[k]))) : 0;
                corr[i][k] = c;
                corr[k][i] = c;
            }
        }
        return corr;
    }

    /** 1 − corr, zero diagonal */
    public static double[][] distance(double[][] corr) {
        int n = corr.length;
        double[][] d = new double[n][n];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++) d[i][k] = i == k ? 0 : 1 - corr[i][k];
        return d;
    }
}
