package dive.train;

import dive.backend.Backend;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The trainable sparse MoE block of one decoder layer (Mixtral's {@code block_sparse_moe}), forward and backward.
 * For a token x (d), z = router · x (E logits, F32):
 * <pre>
 * top-k: S = the k largest z (ties → lower index), g = softmax(z_S),        y = Σ_{e∈S} g_e · (Expert_e(x) + b_e)
 * soft:  S = all E experts,                          g = softmax(z / t),     the same sum
 * Expert_e(x) = w2_e · (silu(w1_e · x) ⊙ (w3_e · x))       w1_e, w3_e (I_e, d), w2_e (d, I_e), b_e (d) optional
 * </pre>
 * Run as in inference ({@link dive.model.MoeFfn}): router matmul, routing, counting sort of the (token, slot) rows
 * by expert, then per expert its rows gathered, the three linears (each may carry LoRA), and the weighted sum.
 * Backward, in reverse: {@link Backend#combineExpertsBackward} gives each permuted row its output gradient
 * g·dy and each slot its weight gradient dg = dy · (Expert_e(x) + b_e); per expert the linears' and swiglu's
 * backward; {@link Backend#scatterAddRows} sums the rows' input gradients back onto their tokens; the weights'
 * softmax gives dz_e = g_e (dg_e − Σ_{s∈S} g_s dg_s) (· 1/t when soft) for the experts in S and 0 for the others;
 * the router's gradient is dzᵀ·x and x gets dz·router on top of the experts' part.
 */
final class MoeBlock {

    final Backend backend;
    final String path;                          // "model.layers.0.block_sparse_moe"
    final Parameter router;                     // (E, d)
    final TrainableLlama.Linear[] w1, w3, w2;   // per expert (I_e, d), (I_e, d), (d, I_e)
    final Parameter[] bias;                     // per expert (d), or null
    final int numExperts, topK, d, ffn;

    MoeBlock(Backend backend, String path, Parameter router, TrainableLlama.Linear[] w1, TrainableLlama.Linear[] w3,
             TrainableLlama.Linear[] w2, Parameter[] bias, int topK) {
        this.backend = backend;
        this.path = path;
        this.router = router;
        this.w1 = w1;
        this.w3 = w3;
        this.w2 = w2;
        this.bias = bias;
        this.numExperts = router.value().rows();
        this.d = router.value().cols();
        this.ffn = w1[0].out;
        this.topK = topK;
    }

    /** the experts' linears (LoRA attaches to them) */
    List<TrainableLlama.Linear> linears() {
        List<TrainableLlama.Linear> all = new ArrayList<>();
        for (int e = 0; e < numExperts; e++) { all.add(w1[e]); all.add(w2[e]); all.add(w3[e]); }
        return all;
    }

    /** the block's own parameters in file order: router, then per expert w1, w2, w3 (and bias) */
    List<Parameter> parameters() {
        List<Parameter> all = new ArrayList<>();
        all.add(router);
        for (int e = 0; e < numExperts; e++) {
            all.add(w1[e].weight);
            all.add(w2[e].weight);
            all.add(w3[e].weight);
            if (bias != null) all.add(bias[e]);
        }
        return all;
    }

    /** what the backward needs of one forward */
    static final class Saved {
        int rows, slots;            // N tokens; slots per token: k (top-k) or E (soft)
        double invTemperature;      // 1 (top-k) or 1/t (soft)
        float[] xn;                 // (N, d) the block's input
        float[] logits;             // (N, E) router logits
        int[] expertIds;            // (N, slots)
        float[] weights;            // (N, slots)
        int[] offsets;              // (E + 1)
        int[] rowToken;             // (R = N·slots)
        int[] slotRow;              // (N, slots)
        float[] expertOut;          // (R, d) Expert_e(x) + b_e of each permuted row
        float[][] xs, gate, up, h;  // per expert (count_e, d), (count_e, I_e) ×3; null for experts without rows
        TrainableLlama.Linear.Saved[] s1, s3, s2;
        int[] topKCounts;           // (E) top-k assignments per expert (also in soft mode: the routing inference would use)
    }

    /** y (N, d) = MoE(xn (N, d)), overwritten; y must not alias xn */
    Saved forward(float[] y, float[] xn, int rows, RoutingMode mode, SplittableRandom dropout) {
        int e = numExperts;
        Saved s = new Saved();
        s.rows = rows;
        s.xn = xn;
        s.logits = new float[rows * e];
        backend.matmul(s.logits, xn, rows, router.value());
        int[] topIds = new int[rows * topK];
        float[] topWeights = new float[rows * topK];
        backend.routeTopK(topIds, topWeights, s.logits, rows, e, topK);
        s.topKCounts = new int[e];
        for (int id : topIds) s.topKCounts[id]++;
        if (mode instanceof RoutingMode.Soft soft) {
            s.slots = e;
            s.invTemperature = 1 / soft.temperature();
            s.expertIds = new int[rows * e];
            s.weights = new float[rows * e];
            float invT = (float) s.invTemperature;
            for (int t = 0; t < rows; t++) {
                for (int j = 0; j < e; j++) {
                    s.expertIds[t * e + j] = j;
                    s.weights[t * e + j] = s.logits[t * e + j] * invT;
                }
                backend.softmax(s.weights, t * e, e);
            }
        } else {
            s.slots = topK;
            s.invTemperature = 1;
            s.expertIds = topIds;
            s.weights = topWeights;
        }
        int assigned = rows * s.slots;
        s.offsets = new int[e + 1];
        s.rowToken = new int[assigned];
        s.slotRow = new int[assigned];
        backend.sortByExpert(s.offsets, s.rowToken, s.slotRow, s.expertIds, rows, s.slots, e);
        s.expertOut = new float[assigned * d];
        s.xs = new float[e][];
        s.gate = new float[e][];
        s.up = new float[e][];
        s.h = new float[e][];
        s.s1 = new TrainableLlama.Linear.Saved[e];
        s.s3 = new TrainableLlama.Linear.Saved[e];
        s.s2 = new TrainableLlama.Linear.Saved[e];
        for (int x = 0; x < e; x++) {
            int first = s.offsets[x], count = s.offsets[x + 1] - first;
            if (count == 0) continue;
            float[] xs = s.xs[x] = new float[count * d];
            backend.gather(xs, xn, Arrays.copyOfRange(s.rowToken, first, first + count), count, d);
            s.gate[x] = new float[count * ffn];
            s.up[x] = new float[count * ffn];
            s.s1[x] = w1[x].forward(s.gate[x], xs, count, dropout);
            s.s3[x] = w3[x].forward(s.up[x], xs, count, dropout);
            s.h[x] = new float[count * ffn];
            backend.swiglu(s.h[x], s.gate[x], s.up[x], count * ffn);
            float[] out = new float[count * d];
            s.s2[x] = w2[x].forward(out, s.h[x], count, dropout);
            if (bias != null) for (int r = 0; r < count; r++) addBias(out, r * d, bias[x]);
            System.arraycopy(out, 0, s.expertOut, first * d, count * d);
        }
        backend.combineExperts(y, s.expertOut, s.slotRow, s.weights, rows, s.slots, d);
        return s;
    }

    private void addBias(float[] out, int at, Parameter b) {
        for (int i = 0; i < d; i++) out[at + i] += b.value().getFloat(i);
    }

    /**
     * dxn (N, d) = ∂/∂xn, overwritten, given dy (N, d); gradients added into the trainable parameters.
     * {@code dLogitsExtra} (N, E) or null: a gradient on the router logits from elsewhere (the auxiliary loss).
     */
    void backward(float[] dxn, float[] dy, Saved s, float[] dLogitsExtra) { backward(dxn, dy, s, dLogitsExtra, true); }

    /**
     * As above; {@code inputGradient} false: nothing below the block needs ∂/∂xn (every parameter under it is frozen),
     * so dxn is left untouched (it may be null), the router's input gradient is skipped, and so is the backward of every
     * expert with nothing trainable (stage 0: the routers' gradients come from dg = dy · expert output alone).
     */
    void backward(float[] dxn, float[] dy, Saved s, float[] dLogitsExtra, boolean inputGradient) {
        int e = numExperts, rows = s.rows, slots = s.slots, assigned = rows * slots;
        float[] dExpertOut = new float[assigned * d], dWeights = new float[assigned];
        backend.combineExpertsBackward(dExpertOut, dWeights, dy, s.expertOut, s.slotRow, s.weights, rows, slots, d);
        float[] dxs = inputGradient ? new float[assigned * d] : null; // (R, d) input gradients of the permuted rows
        for (int x = 0; x < e; x++) {
            int first = s.offsets[x], count = s.offsets[x + 1] - first;
            if (count == 0 || !inputGradient && !expertTrainable(x)) continue;
            float[] dOut = Arrays.copyOfRange(dExpertOut, first * d, (first + count) * d);
            if (bias != null && bias[x].trainable()) {
                float[] db = bias[x].grad();
                for (int r = 0; r < count; r++) for (int i = 0; i < d; i++) db[i] += dOut[r * d + i];
            }
            float[] dh = new float[count * ffn], dGate = new float[count * ffn], dUp = new float[count * ffn];
            w2[x].backward(dh, false, dOut, s.h[x], count, s.s2[x]);
            backend.swigluBackward(dGate, dUp, dh, s.gate[x], s.up[x], count * ffn);
            float[] dx = new float[count * d];
            w1[x].backward(dx, false, dGate, s.xs[x], count, s.s1[x]);
            w3[x].backward(dx, true, dUp, s.xs[x], count, s.s3[x]);
            if (inputGradient) System.arraycopy(dx, 0, dxs, first * d, count * d);
        }
        if (inputGradient) {
            Arrays.fill(dxn, 0, rows * d, 0f);
            backend.scatterAddRows(dxn, dxs, s.rowToken, assigned, d);
        }

        // routing weights → logits: dz_e = g_e (dg_e − Σ_s g_s dg_s) / t over the slots, 0 for unselected experts
        float[] dLogits = dLogitsExtra != null ? dLogitsExtra.clone() : new float[rows * e];
        for (int t = 0; t < rows; t++) {
            double mean = 0;
            for (int j = 0; j < slots; j++) mean += (double) s.weights[t * slots + j] * dWeights[t * slots + j];
            for (int j = 0; j < slots; j++) {
                int i = t * slots + j;
                dLogits[t * e + s.expertIds[i]] += (float) (s.weights[i] * (dWeights[i] - mean) * s.invTemperature);
            }
        }
        if (router.trainable()) backend.matmulBackwardWeight(router.grad(), dLogits, s.xn, rows, e, d);
        if (!inputGradient) return;
        float[] dxRouter = new float[rows * d];
        backend.matmulBackwardInput(dxRouter, dLogits, rows, router.value());
        backend.add(dxn, dxRouter, rows * d);
    }

    /** true when expert x has a trainable weight, LoRA adapter or bias (its backward adds gradients) */
    boolean expertTrainable(int x) {
        for (TrainableLlama.Linear lin : new TrainableLlama.Linear[] {w1[x], w3[x], w2[x]})
            if (lin.hasTrainable()) return true;
        return bias != null && bias[x].trainable();
    }

    /**
     * Mixtral's load-balancing loss over the forwards of several MoE layers (null entries are dense layers, skipped),
     * as transformers' {@code load_balancing_loss_func} without attention mask: the rows of all layers pooled (L·N rows),
     * f_e = top-k assignments of e / (L·N) (Σ f = k), P_e = mean over the rows of softmax(z)_e over all E experts,
     * aux = E · Σ_e f_e · P_e. When {@code dLogits} is not null, dLogits[l] (N, E) receives {@code scale} · ∂aux/∂z
     * of layer l = scale · (E / (L·N)) · p ⊙ (f − p·f) per row (f held constant).
     */
    static double auxLoss(Backend backend, Saved[] layers, float[][] dLogits, double scale) {
        int e = -1, moeLayers = 0;
        double rows = 0;
        for (Saved s : layers) if (s != null) { e = s.logits.length / s.rows; moeLayers++; rows += s.rows; }
        if (moeLayers == 0) throw new IllegalArgumentException("aux loss: no MoE layer");
        double[] counts = new double[e], probSum = new double[e];
        float[][] probs = new float[layers.length][];
        for (int l = 0; l < layers.length; l++) {
            Saved s = layers[l];
            if (s == null) continue;
            for (int x = 0; x < e; x++) counts[x] += s.topKCounts[x];
            probs[l] = s.logits.clone();
            for (int t = 0; t < s.rows; t++) {
                backend.softmax(probs[l], t * e, e);
                for (int x = 0; x < e; x++) probSum[x] += probs[l][t * e + x];
            }
        }
        double aux = 0;
        double[] fraction = new double[e];
        for (int x = 0; x < e; x++) {
            fraction[x] = counts[x] / rows;
            aux += fraction[x] * probSum[x] / rows;
        }
        aux *= e;
        if (dLogits != null) {
            for (int l = 0; l < layers.length; l++) {
                if (probs[l] == null) continue;
                int n = layers[l].rows;
                float[] p = probs[l], dz = dLogits[l] = new float[n * e];
                for (int t = 0; t < n; t++) {
                    double pf = 0;
                    for (int x = 0; x < e; x++) pf += p[t * e + x] * fraction[x];
                    for (int x = 0; x < e; x++) dz[t * e + x] = (float) (scale * e / rows * p[t * e + x] * (fraction[x] - pf));
                }
            }
        }
        return aux;
    }
}
