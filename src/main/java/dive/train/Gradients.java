package dive.train;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;

import java.util.List;

/**
 * Whole-model gradient operations on the backend the gradients live on: the global L2 norm (one double accumulator
 * on the device, one value read back), clipping by it, zeroing, and the finiteness check. A trainable parameter
 * that has no gradient yet counts as zeros.
 */
public final class Gradients {
    private Gradients() {}

    /** sqrt(Σ g²) over every trainable parameter, summed in double in parameter then index order (deterministic) */
    public static double globalNorm(List<Parameter> parameters, Backend backend) {
        try (DeviceTensor sum = backend.allocate(DType.F64, 1)) {
            for (Parameter p : parameters) {
                if (!p.trainable() || p.gradOrNull() == null) continue;
                backend.sumOfSquares(sum, p.gradOrNull(), Math.toIntExact(p.numel()));
            }
            double[] out = new double[1];
            backend.read(sum, 0, out, 1);
            return Math.sqrt(out[0]);
        }
    }

    /**
     * Scales every trainable gradient by maxNorm / norm when the global norm exceeds {@code maxNorm}
     * (as torch.nn.utils.clip_grad_norm_, without its 1e-6 in the denominator). Returns the norm before clipping.
     * maxNorm ≤ 0 or infinite: no clipping.
     */
    public static double clipByGlobalNorm(List<Parameter> parameters, double maxNorm, Backend backend) {
        double norm = globalNorm(parameters, backend);
        if (maxNorm > 0 && Double.isFinite(maxNorm) && norm > maxNorm) {
            float scale = (float) (maxNorm / norm);
            for (Parameter p : parameters) {
                if (!p.trainable() || p.gradOrNull() == null) continue;
                backend.scale(p.gradOrNull(), scale, Math.toIntExact(p.numel()));
            }
        }
        return norm;
    }

    public static void zero(List<Parameter> parameters) {
        for (Parameter p : parameters) if (p.trainable()) p.zeroGrad();
    }

    /**
     * The name of the first trainable parameter with a NaN or infinite gradient element, or null. A finite global
     * norm proves every element finite (a sum of squares of finite floats cannot overflow a double), so the usual
     * case reads one value; only a non-finite norm looks parameter by parameter.
     */
    public static String firstNonFinite(List<Parameter> parameters, Backend backend) {
        if (Double.isFinite(globalNorm(parameters, backend))) return null;
        for (Parameter p : parameters) {
            if (!p.trainable() || p.gradOrNull() == null) continue;
            if (backend.firstNonFinite(p.gradOrNull(), p.numel()) >= 0) return p.name();
        }
        return null;
    }
}
