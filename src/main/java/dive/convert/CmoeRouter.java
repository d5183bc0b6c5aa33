package dive.convert;

/**
 * CMoE's analytical router for one carved layer ({@link CmoeLayer}), as the authors' code computes it. For an FFN
 * input x (d; after post_attention_layernorm, not further normalised):
 * <pre>
 * score_e = | (r_up,e · x) · SiLU(r_gate,e · x) |        the representative channel's activation with unit-norm weights
 * p       = softmax(score)                              over the E routed experts, in double here (fp32 in theirs)
 * chosen  = top-k of (p_e + b_e)                        b = load-balancing bias, ties → lower index
 * w_e     = 1 + p_e · σ_e  for e ∈ chosen               σ = a per-expert scale, initialised to 0, trained with the
 *                                                       LoRA fine-tuning at its own learning rate (default 0.001)
 * y       = SharedExpert(x) + Σ_{e∈chosen} w_e · Expert_e(x)
 * </pre>
 * So right after carving (σ = 0, b = 0) every chosen expert is added with weight 1, like the shared expert, and the
 * MoE with all experts chosen is exactly the dense FFN.
 *
 * <p><b>The load-balancing bias</b> b (auxiliary-loss-free balancing, as DeepSeek-V3) is zero after carving and moves
 * only while fine-tuning: after each forward of a training step, with c_e the tokens routed to expert e,
 * b_e −= γ if c_e &gt; mean(c), b_e += γ if c_e &lt; mean(c) (γ = 0.001 by default; {@link #updateSelectionBias}). It
 * enters only the top-k choice, never the weights w.
 *
 * <p><b>What a stock Qwen2-MoE export can carry</b>: its router is linear (logits = W x, p = softmax(logits), top-k of
 * p, weights p, optionally renormalised over the k), so it can carry neither the |·SiLU(·)| score, nor a selection-only
 * bias, nor weights fixed at 1. Consequences for exporting CMoE: (1) the training-free model has b = 0, so dropping b
 * loses nothing there; after fine-tuning with the bias, the export without it must be measured against the model with
 * it (both variants); (2) a linear router is a surrogate — {@link #topKAgreement} measures on calibration tokens how
 * often a candidate W (e.g. {@code routerGate} or {@code routerUp}) picks the same experts as the analytical score;
 * (3) softmax weights ≠ 1 change the output scale of routed experts (retraining, or a documented extension, has to
 * absorb it).
 */
public final class CmoeRouter {
    private CmoeRouter() {}

    /** the authors' default bias step γ (their flag {@code --bias-speed}) */
    public static final double DEFAULT_BIAS_STEP = 0.001;

    /** score_e = |(r_up,e · x)·SiLU(r_gate,e · x)| (E) for the token x[offset .. offset + d) */
    public static double[] scores(CmoeLayer layer, float[] x, int offset) {
        int e = layer.numExperts(), d = layer.hidden();
        double[] s = new double[e];
        for (int r = 0; r < e; r++) {
            double g = 0, u = 0;
            for (int i = 0; i < d; i++) {
                g += (double) layer.routerGate()[r * d + i] * x[offset + i];
                u += (double) layer.routerUp()[r * d + i] * x[offset + i];
            }
            s[r] = score(g, u);
        }
        return s;
    }

    /** |u · SiLU(g)| for g = r_gate,e · x and u = r_up,e · x */
    static double score(double g, double u) { return Math.abs(u * (g / (1 + Math.exp(-g)))); }

    /** p = softmax(scores) (E) for the token x[offset .. offset + d) */
    public static double[] probabilities(CmoeLayer layer, float[] x, int offset) {
        return softmax(scores(layer, x, offset));
    }

    static double[] softmax(double[] z) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (double v : z) max = Math.max(max, v);
        double[] p = new double[z.length];
        for (int i = 0; i < z.length; i++) { p[i] = Math.exp(z[i] - max); sum += p[i]; }
        for (int i = 0; i < z.length; i++) p[i] /= sum;
        return p;
    }

    /** the k experts of highest p_e + b_e (b may be null: zero), in descending order, ties → lower index */
    public static int[] select(double[] probabilities, float[] bias, int k) {
        int e = probabilities.length;
        if (k < 1 || k > e) throw new IllegalArgumentException("topK " + k + " (expected 1 ≤ topK ≤ " + e + " experts)");
        if (bias != null && bias.length != e) throw new IllegalArgumentException("bias has " + bias.length + " values for " + e + " experts");
        double[] key = new double[e];
        for (int i = 0; i < e; i++) key[i] = probabilities[i] + (bias == null ? 0 : bias[i]);
        return topIndices(key, k);
    }

    /** the k largest of {@code key}, descending, ties → lower index */
    static int[] topIndices(double[] key, int k) {
        int[] out = new int[k];
        boolean[] taken = new boolean[key.length];
        for (int s = 0; s < k; s++) {
            int best = -1;
            for (int i = 0; i < key.length; i++) if (!taken[i] && (best < 0 || key[i] > key[best])) best = i;
            taken[best] = true;
            out[s] = best;
        }
        return out;
    }

    /** the authors' combine weights w_e = 1 + p_e·σ_e for the chosen experts (σ null: all 1) */
    public static double[] combineWeights(double[] probabilities, int[] chosen, float[] scale) {
        double[] w = new double[chosen.length];
        for (int s = 0; s < chosen.length; s++) w[s] = 1 + (scale == null ? 0 : probabilities[chosen[s]] * scale[chosen[s]]);
        return w;
    }

    /**
     * One balancing step: b_e −= γ for experts that got more than the mean of {@code tokensPerExpert}, += γ for those
     * that got fewer, unchanged at the mean.
     */
    public static void updateSelectionBias(float[] bias, long[] tokensPerExpert, double step) {
        if (bias.length != tokensPerExpert.length)
            throw new IllegalArgumentException("bias has " + bias.length + " values, tokensPerExpert " + tokensPerExpert.length);
        double mean = 0;
        for (long c : tokensPerExpert) mean += c;
        mean /= tokensPerExpert.length;
        for (int e = 0; e < bias.length; e++) {
            if (tokensPerExpert[e] > mean) bias[e] -= (float) step;
            else if (tokensPerExpert[e] < mean) bias[e] += (float) step;
        }
    }

    /**
     * The share of tokens whose top-k expert set under a linear router (logits = W x, W (E, d)) equals the analytical
     * router's (with the layer's bias), over {@code rows} FFN inputs x (rows, d).
     */
    public static double topKAgreement(CmoeLayer layer, float[] x, int rows, int k, float[] linearRouter) {
        int e = layer.numExperts(), d = layer.hidden();
        if (linearRouter.length != e * d) throw new IllegalArgumentException("linear router has " + linearRouter.length + " values (expected E·d = " + e * d + ")");
        if (rows < 1) throw new IllegalArgumentException("rows " + rows + " (expected ≥ 1)");
        int same = 0;
        for (int n = 0; n < rows; n++) {
            double[] logits = new double[e];
            for (int r = 0; r < e; r++) for (int i = 0; i < d; i++) logits[r] += (double) linearRouter[r * d + i] * x[n * d + i];
            if (sameTopK(probabilities(layer, x, n * d), layer.selectionBias(), logits, k)) same++;
        }
        return (double) same / rows;
    }

    /**
     * true when the top-k of the analytical router (its probabilities p (E), with {@code bias}) and the top-k of a linear
     * router's {@code logits} (E) are the same set of experts
     */
    static boolean sameTopK(double[] probabilities, float[] bias, double[] logits, int k) {
        boolean[] chosen = new boolean[probabilities.length];
        for (int c : select(probabilities, bias, k)) chosen[c] = true;
        for (int c : topIndices(logits, k)) if (!chosen[c]) return false;
        return true;
    }
}
