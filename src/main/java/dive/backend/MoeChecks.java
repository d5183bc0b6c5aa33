package dive.backend;

import dive.tensor.Tensor;

import java.util.Arrays;

/** Argument checks shared by the backends' Mixture-of-Experts ops: errors name the op, the argument and what was expected. */
final class MoeChecks {
    private MoeChecks() {}

    static void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k) {
        if (k < 1 || k > numExperts)
            throw new IllegalArgumentException("routeTopK: k = " + k + ", expected 1 ≤ k ≤ numExperts = " + numExperts);
        if ((long) n * numExperts > routerLogits.length)
            throw new IllegalArgumentException("routeTopK: routerLogits has " + routerLogits.length + " floats, expected ≥ N·E = " + n + "·" + numExperts);
        if ((long) n * k > expertIds.length || (long) n * k > expertWeights.length)
            throw new IllegalArgumentException("routeTopK: expertIds/expertWeights hold " + expertIds.length + "/" + expertWeights.length
                    + " entries, expected ≥ N·k = " + n + "·" + k);
    }

    /** groupedMatmul2's arguments: both weight sets as groupedMatmul's, of one shape; xRows (R) rows of x (·, K) */
    static void groupedMatmul2(float[] outGate, float[] outUp, float[] x, int[] xRows, int[] offsets, Tensor[] wGate, Tensor[] wUp) {
        int experts = wGate.length, rows = offsets.length > experts ? offsets[experts] : 0;
        if (xRows.length < rows)
            throw new IllegalArgumentException("groupedMatmul2: xRows has " + xRows.length + " entries, expected ≥ R = " + rows);
        int k = wGate.length > 0 ? wGate[0].cols() : 0;
        float[] rowsOfX = new float[0];
        groupedMatmul(outGate, rowsOfX, offsets, wGate, null, false);
        groupedMatmul(outUp, rowsOfX, offsets, wUp, null, false);
        if (wUp.length != experts || wGate[0].rows() != wUp[0].rows() || k != wUp[0].cols())
            throw new IllegalArgumentException("groupedMatmul2: up weight '" + wUp[0].name() + "' has shape " + Arrays.toString(wUp[0].shape())
                    + " (" + wUp.length + " experts), expected " + Arrays.toString(wGate[0].shape()) + " like gate weight '" + wGate[0].name()
                    + "' (" + experts + " experts)");
        long xRowsAvailable = k == 0 ? 0 : x.length / k;
        for (int r = 0; r < rows; r++)
            if (xRows[r] < 0 || xRows[r] >= xRowsAvailable)
                throw new IllegalArgumentException("groupedMatmul2: xRows[" + r + "] = " + xRows[r] + ", expected 0 ≤ row < " + xRowsAvailable
                        + " (x has " + x.length + " floats of rows of K = " + k + ")");
    }

    static void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias) {
        groupedMatmul(out, x, offsets, w, bias, true);
    }

    /** checkX: x holds R rows (false where x's rows are reached through a row map, checked by the caller) */
    private static void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias, boolean checkX) {
        int experts = w.length;
        if (experts < 1) throw new IllegalArgumentException("groupedMatmul: no expert weights");
        if (offsets.length < experts + 1)
            throw new IllegalArgumentException("groupedMatmul: offsets has " + offsets.length + " entries, expected E + 1 = " + (experts + 1));
        if (bias != null && bias.length != experts)
            throw new IllegalArgumentException("groupedMatmul: " + bias.length + " biases for " + experts + " experts");
        int n = w[0].rows(), k = w[0].cols();
        for (int e = 0; e < experts; e++) {
            if (!w[e].dtype().isFloatWeight())
                throw new IllegalArgumentException("groupedMatmul: weight '" + w[e].name() + "' is " + w[e].dtype() + ", expected F32, BF16 or F16");
            if (w[e].rows() != n || w[e].cols() != k)
                throw new IllegalArgumentException("groupedMatmul: weight '" + w[e].name() + "' has shape " + Arrays.toString(w[e].shape())
                        + ", expected [" + n + ", " + k + "] like '" + w[0].name() + "'");
            if (offsets[e + 1] < offsets[e])
                throw new IllegalArgumentException("groupedMatmul: offsets decrease at expert " + e + ": " + offsets[e] + " > " + offsets[e + 1]);
            if (bias != null && bias[e] != null && bias[e].numel() != n)
                throw new IllegalArgumentException("groupedMatmul: bias '" + bias[e].name() + "' has shape " + Arrays.toString(bias[e].shape())
                        + ", expected [" + n + "]");
        }
        if (offsets[0] != 0) throw new IllegalArgumentException("groupedMatmul: offsets[0] = " + offsets[0] + ", expected 0");
        long rows = offsets[experts];
        if (checkX && rows * k > x.length) throw new IllegalArgumentException("groupedMatmul: x has " + x.length + " floats, expected ≥ R·K = " + rows + "·" + k);
        if (rows * n > out.length) throw new IllegalArgumentException("groupedMatmul: out has " + out.length + " floats, expected ≥ R·N = " + rows + "·" + n);
    }
}
