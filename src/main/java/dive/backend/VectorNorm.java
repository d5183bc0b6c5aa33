package dive.backend;

import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;

import static dive.backend.VectorSupport.*;

/** RMSNorm and its gradient for {@link VectorBackend}: the CPU twin of native/src/norm.cu. */
final class VectorNorm {
    private VectorNorm() {}

    static void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps) {
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

    static void rmsNormBackward(Workers workers, float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps) {
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
            workers.parallelFor(colTasks, parallel, c -> {
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
        workers.parallelFor(tasks, parallel, task -> {
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
}
