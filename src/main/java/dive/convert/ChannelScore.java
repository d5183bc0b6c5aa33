package dive.convert;

import dive.tensor.Tensor;

import java.util.Locale;

/**
 * Importance of each FFN channel j of one layer (higher = keep). h = the FFN intermediate activation (input of
 * down_proj), statistics over the N calibration tokens; W_down (d, F).
 */
public interface ChannelScore {

    /** the name used on the command line and in the run's JSON */
    String name();

    /** scores (F) of layer {@code layer}'s channels */
    double[] score(int layer, ChannelStatistics stats, Tensor down);

    /** the scores that need only activation statistics and W_down */
    enum Statistic implements ChannelScore {
        /** FLAP's WIFV (default): S_j = Var_n(h_j) · ‖W_down[:, j]‖² (unbiased variance) */
        WIFV {
            @Override public double[] score(int layer, ChannelStatistics stats, Tensor down) {
                double[] variance = stats.variance(), columnNormSquared = columnSquaredNorms(down);
                for (int j = 0; j < variance.length; j++) variance[j] *= columnNormSquared[j];
                return variance;
            }
        },
        /** FLAP's IFV: S_j = Var_n(h_j) (unbiased) */
        IFV {
            @Override public double[] score(int layer, ChannelStatistics stats, Tensor down) { return stats.variance(); }
        },
        /** FLAP's WIFN: S_j = mean_i |W_down[i, j]| · sqrt(E[h_j²]) */
        WIFN {
            @Override public double[] score(int layer, ChannelStatistics stats, Tensor down) {
                double[] s = stats.meanSquare(), abs = columnAbsSums(down);
                for (int j = 0; j < s.length; j++) s[j] = abs[j] / down.rows() * Math.sqrt(s[j]);
                return s;
            }
        },
        /**
         * Wanda made structured: Wanda's weight score |W_ij| · ‖X_j‖₂ (‖X_j‖₂ = the L2 norm of the weight's input
         * feature over all N calibration tokens) summed over the weights of channel j, i.e. over the rows i of
         * W_down's column j: S_j = Σ_i |W_down[i, j]| · ‖h_j‖₂.
         */
        WANDA {
            @Override public double[] score(int layer, ChannelStatistics stats, Tensor down) {
                double[] s = stats.l2Norm(), abs = columnAbsSums(down);
                for (int j = 0; j < s.length; j++) s[j] *= abs[j];
                return s;
            }
        };

        @Override public String toString() { return name().toLowerCase(Locale.ROOT); }
    }

    /** wifv, ifv, wifn, wanda (taylor needs gradients: {@link TaylorScore}) */
    static Statistic parse(String name, String flag) {
        for (Statistic s : Statistic.values()) if (s.toString().equals(name.toLowerCase(Locale.ROOT))) return s;
        throw new IllegalArgumentException(flag + " '" + name + "': expected wifv, ifv, wifn, wanda or taylor");
    }

    /** ‖W[:, j]‖² for W (d, F) → (F), in double */
    static double[] columnSquaredNorms(Tensor w) {
        int rows = w.rows(), cols = w.cols();
        float[] values = w.toFloatArray();
        double[] out = new double[cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) { double v = values[i * cols + j]; out[j] += v * v; }
        return out;
    }

    /** Σ_i |W[i, j]| for W (d, F) → (F), in double */
    static double[] columnAbsSums(Tensor w) {
        int rows = w.rows(), cols = w.cols();
        float[] values = w.toFloatArray();
        double[] out = new double[cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) out[j] += Math.abs(values[i * cols + j]);
        return out;
    }
}
