package dive.train;

import java.util.List;

/** Whole-model gradient operations: the global L2 norm, clipping by it, zeroing, and the finiteness check. */
public final class Gradients {
    private Gradients() {}

    /** sqrt(Σ g²) over every trainable parameter, summed in double in parameter then index order (deterministic) */
    public static double globalNorm(List<Parameter> parameters) {
        double sumSquares = 0;
        for (Parameter p : parameters) {
            if (!p.trainable()) continue;
            for (float g : p.grad()) sumSquares += (double) g * g;
        }
        return Math.sqrt(sumSquares);
    }

    /**
     * Scales every trainable gradient by maxNorm / norm when the global norm exceeds {@code maxNorm}
     * (as torch.nn.utils.clip_grad_norm_, without its 1e-6 in the denominator). Returns the norm before clipping.
     * maxNorm ≤ 0 or infinite: no clipping.
     */
    public static double clipByGlobalNorm(List<Parameter> parameters, double maxNorm) {
        double norm = globalNorm(parameters);
        if (maxNorm > 0 && Double.isFinite(maxNorm) && norm > maxNorm) {
            float scale = (float) (maxNorm / norm);
            for (Parameter p : parameters) {
                if (!p.trainable()) continue;
                float[] g = p.grad();
                for (int i = 0; i < g.length; i++) g[i] *= scale;
            }
        }
        return norm;
    }

    public static void zero(List<Parameter> parameters) {
        for (Parameter p : parameters) if (p.trainable()) p.zeroGrad();
    }

    /** the name of the first trainable parameter with a NaN or infinite gradient element, or null */
    public static String firstNonFinite(List<Parameter> parameters) {
        for (Parameter p : parameters) {
            if (!p.trainable()) continue;
            for (float g : p.grad()) if (!Float.isFinite(g)) return p.name();
        }
        return null;
    }
}
