package dive.train;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import dive.backend.ScalarBackend;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW (Loshchilov &amp; Hutter, "Decoupled Weight Decay Regularization"), as {@code torch.optim.AdamW}
 * computes it, per element of every trainable parameter p with gradient g at step t = 1, 2, …:
 * <pre>
 *   p ← p − lr·λ·p                       (decoupled weight decay; skipped for 1-D params unless decayOneDim)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   p ← p − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
 * </pre>
 * State: F32 first and second moments m, v per trainable parameter (allocated at its first step) and the
 * step count t. Each element is updated on its own, in index order: results are deterministic.
 */
public final class AdamW {

    /** β1, β2, ε, weight decay λ; {@code decayOneDim} also decays 1-D parameters (norm weights, biases) */
    public record Options(double beta1, double beta2, double eps, double weightDecay, boolean decayOneDim) {
        public static final Options DEFAULT = new Options(0.9, 0.999, 1e-8, 0.01, false);

        public Options {
            if (!(beta1 >= 0 && beta1 < 1)) throw new IllegalArgumentException("optimizer.betas[0] = " + beta1 + ": expected 0 ≤ β1 < 1");
            if (!(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("optimizer.betas[1] = " + beta2 + ": expected 0 ≤ β2 < 1");
            if (!(eps > 0)) throw new IllegalArgumentException("optimizer.eps = " + eps + ": expected > 0");
            if (!(weightDecay >= 0)) throw new IllegalArgumentException("optimizer.weight_decay = " + weightDecay + ": expected ≥ 0");
        }
    }

    /** the moments of one parameter, on the host (checkpoints, tests) */
    public record Moments(float[] m, float[] v) {}

    /** the moments of one parameter where it trains: F32 tensors of the backend */
    private record DeviceMoments(DeviceTensor m, DeviceTensor v) {}

    private final Options options;
    private final Backend backend;
    private final Map<String, DeviceMoments> moments = new HashMap<>();
    private long stepCount;

    /** updates run as the plain loop of {@link Backend#adamW} */
    public AdamW(Options options) { this(options, new ScalarBackend()); }

    /** updates run on {@code backend} (every backend gives the same bits) */
    public AdamW(Options options, Backend backend) {
        this.options = options;
        this.backend = backend;
    }

    public Options options() { return options; }

    /** the backend the moments and updates live on */
    public Backend backend() { return backend; }

    /** optimizer steps taken so far (t of the last step) */
    public long stepCount() { return stepCount; }

    /** the moments of {@code parameterName} copied to the host (counted transfers), or null before its first step */
    public Moments moments(String parameterName) {
        DeviceMoments mv = moments.get(parameterName);
        return mv == null ? null : new Moments(backend.download(mv.m), backend.download(mv.v));
    }

    /** one step with learning rate {@code lr} over every trainable parameter in {@code parameters}; gradients are read, not cleared */
    public void step(List<Parameter> parameters, double lr) {
        if (!(lr >= 0) || Double.isInfinite(lr)) throw new IllegalArgumentException("learning rate " + lr + ": expected a finite value ≥ 0");
        stepCount++;
        double beta1 = options.beta1, beta2 = options.beta2;
        double biasCorrection1 = 1 - Math.pow(beta1, stepCount);
        double biasCorrection2 = 1 - Math.pow(beta2, stepCount);
        // torch's single-tensor AdamW in F32: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps
        float stepSize = (float) (lr / biasCorrection1);
        float sqrtBiasCorrection2 = (float) Math.sqrt(biasCorrection2);
        float decayFactor = (float) (1 - lr * options.weightDecay);
        for (Parameter p : parameters) {
            if (!p.trainable()) continue;
            int n = Math.toIntExact(p.numel());
            DeviceMoments mv = moments.computeIfAbsent(p.name(), k -> new DeviceMoments(backend.allocate(DType.F32, n), backend.allocate(DType.F32, n)));
            if (mv.m.size() != n) throw new IllegalStateException("optimizer state of '" + p.name() + "' has " + mv.m.size() + " elements, parameter has " + n);
            boolean decay = options.weightDecay > 0 && (options.decayOneDim || p.value().rank() > 1);
            backend.adamW(p.writableData(), p.grad(backend), mv.m, mv.v, n, new Backend.AdamWStep(decay, decayFactor, stepSize, sqrtBiasCorrection2,
                    (float) (1 - beta1), (float) beta2, (float) (1 - beta2), (float) options.eps));
        }
    }

    /** restores state saved by a checkpoint: the step count and the moments by parameter name */
    public void restore(long stepCount, Map<String, Moments> saved) {
        if (stepCount < 0) throw new IllegalArgumentException("optimizer step count " + stepCount + ": expected ≥ 0");
        this.stepCount = stepCount;
        moments.clear();
        for (Map.Entry<String, Moments> e : saved.entrySet())
            moments.put(e.getKey(), new DeviceMoments(backend.upload(e.getValue().m()), backend.upload(e.getValue().v())));
    }

    /** the moments of every parameter that has taken a step, in the order of {@code parameters} */
    public Map<String, Moments> state(List<Parameter> parameters) {
        Map<String, Moments> out = new java.util.LinkedHashMap<>();
        for (Parameter p : parameters) if (moments.containsKey(p.name())) out.put(p.name(), moments(p.name()));
        return out;
    }
}
