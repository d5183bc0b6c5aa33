package dive.train;

import dive.backend.Backend;
import dive.backend.DeviceScope;
import dive.backend.DeviceTensor;
import dive.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The trainable sparse MoE block of one decoder layer (Mixtral's {@code block_sparse_moe}), forward and backward.
 * For a token x (d), z = router · x (E logits, F32):
 * <pre>
 * top-k: S = the k largest z (ties → lower index), g = softmax(z_S),        y = Σ_{e∈S} g_e · (Expert_e(x) + b_e)
 * soft:  S = all E experts,                          g = softmax(z / t),     the same sum
 * Expert_e(x) = w2_e · (silu(w1_e · x) ⊙ (w3_e · x))       w1_e, w3_e (I_e, d), w2_e (d, I_e), b_e (d) optional
 * </pre>
 * Run as in inference ({@link dive.model.MoeFfn}): router matmul, routing, counting sort of the (token, slot) rows
 * by expert, the permuted rows gathered, then the three linears of every expert over its row range at once (per-expert
 * ops with the offsets on the device: {@link Backend#expertMatmul} and its backward twins; each linear may carry LoRA),
 * and the weighted sum. Nothing crosses to the host inside the block.
 * Backward, in reverse: {@link Backend#combineExpertsBackward} gives each permuted row its output gradient
 * g·dy and each slot its weight gradient dg = dy · (Expert_e(x) + b_e); per expert the linears' and swiglu's
 * backward; {@link Backend#scatterAddRows} sums the rows' input gradients back onto their tokens; the weights'
 * softmax gives dz_e = g_e (dg_e − Σ_{s∈S} g_s dg_s) (· 1/t when soft) for the experts in S and 0 for the others;
 * the router's gradient is dzᵀ·x and x gets dz·router on top of the experts' part.
 *
 * <p>Qwen2-MoE's block ({@code model.layers.{l}.mlp}, router {@code mlp.gate.weight}, experts
 * {@code mlp.experts.{e}.gate_proj/up_proj/down_proj}) adds a shared expert behind a sigmoid gate:
 * y += σ(w_s · x) · S(x), S(x) = down(silu(gate(x)) ⊙ up(x)) ({@code mlp.shared_expert.*}, each linear may carry LoRA),
 * w_s = {@code mlp.shared_expert_gate.weight} (1, d). Backward ({@link Backend#sigmoidGatedAddBackward}):
 * ∂S = σ·dy, ∂(w_s·x) = σ(1 − σ)·(dy · S(x)), then S's linears and swiglu as a dense MLP's; w_s's gradient is
 * ∂(w_s·x)ᵀ·x and x gets ∂(w_s·x)·w_s and S's input gradient on top.
 */
final class MoeBlock {

    final Backend backend;
    final String path;                          // "model.layers.0.block_sparse_moe"
    final Parameter router;                     // (E, d)
    final TrainableLlama.Linear[] w1, w3, w2;   // per expert (I_e, d), (I_e, d), (d, I_e)
    final Parameter[] bias;                     // per expert (d), or null
    final int numExperts, topK, d, ffn;
    final TrainableLlama.Linear sharedGateProj, sharedUp, sharedDown;  // Qwen2-MoE's shared expert (I_s, d), (I_s, d), (d, I_s); null without
    final Parameter sharedGate;                 // shared_expert_gate.weight (1, d); null without

    MoeBlock(Backend backend, String path, Parameter router, TrainableLlama.Linear[] w1, TrainableLlama.Linear[] w3,
             TrainableLlama.Linear[] w2, Parameter[] bias, int topK) {
        this(backend, path, router, w1, w3, w2, bias, topK, null, null, null, null);
    }

    /** a block with Qwen2-MoE's shared expert (gate, up, down) and its sigmoid gate (1, d), all four given or all null */
    MoeBlock(Backend backend, String path, Parameter router, TrainableLlama.Linear[] w1, TrainableLlama.Linear[] w3,
             TrainableLlama.Linear[] w2, Parameter[] bias, int topK, TrainableLlama.Linear sharedGateProj, TrainableLlama.Linear sharedUp,
             TrainableLlama.Linear sharedDown, Parameter sharedGate) {
        this.sharedGateProj = sharedGateProj;
        this.sharedUp = sharedUp;
        this.sharedDown = sharedDown;
        this.sharedGate = sharedGate;
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
        if (hasSharedExpert()) all.addAll(List.of(sharedGateProj, sharedUp, sharedDown));
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
        if (hasSharedExpert()) {
            for (TrainableLlama.Linear lin : List.of(sharedGateProj, sharedUp, sharedDown)) all.add(lin.weight);
            all.add(sharedGate);
        }
        return all;
    }

    /** what the backward needs of one forward, on the device */
    static final class Saved {
        int rows, slots;            // N tokens; slots per token: k (top-k) or E (soft)
        double invTemperature;      // 1 (top-k) or 1/t (soft)
        DeviceTensor xn;            // (N, d) the block's input
        DeviceTensor logits;        // (N, E) router logits
        DeviceTensor expertIds;     // (N, slots) I32
        DeviceTensor weights;       // (N, slots)
        DeviceTensor offsets;       // (E + 1) I32
        DeviceTensor rowToken;      // (R = N·slots) I32
        DeviceTensor slotRow;       // (N, slots) I32
        DeviceTensor xs;            // (R, d) the permuted rows of xn
        DeviceTensor gate, up, h;   // (R, I_e)
        DeviceTensor expertOut;     // (R, d) Expert_e(x) + b_e of each permuted row
        Adapter s1, s3, s2;         // LoRA of w1, w3, w2; null without
        DeviceTensor sharedG, sharedU, sharedH;  // (N, I_s) the shared expert's gate, up, swiglu
        DeviceTensor sharedOut;     // (N, d) S(x)
        DeviceTensor gateLogit;     // (N) w_s · x
        TrainableLlama.Linear.Saved sg, su, sd;  // the shared expert's LoRA; null without
    }

    boolean hasSharedExpert() { return sharedGate != null; }

    /** what the backward needs of one expert linear's LoRA over all permuted rows */
    static final class Adapter {
        DeviceTensor mask, xDropped, scaledU;
    }

    /**
     * y (N, d) = MoE(xn (N, d)), overwritten; y must not alias xn. The top-k assignments per expert are added into
     * {@code counts} (layers, E) I32 at row {@code layer}. What the backward needs lives in {@code scope}.
     */
    Saved forward(DeviceTensor y, DeviceTensor xn, int rows, RoutingMode mode, TrainableLlama.Dropout dropout,
                  DeviceTensor counts, int layer, DeviceScope scope) {
        int e = numExperts;
        Saved s = new Saved();
        s.rows = rows;
        s.xn = xn;
        s.logits = scope.floats((long) rows * e);
        backend.matmul(s.logits, xn, rows, router.value());
        DeviceTensor topIds = scope.ints((long) rows * topK), topWeights = scope.floats((long) rows * topK);
        backend.routeTopK(topIds, topWeights, s.logits, rows, e, topK);
        backend.countExperts(counts, (long) layer * e, topIds, rows * topK);
        if (mode instanceof RoutingMode.Soft soft) {
            s.slots = e;
            s.invTemperature = 1 / soft.temperature();
            s.expertIds = scope.ints((long) rows * e);
            s.weights = scope.floats((long) rows * e);
            backend.softRouting(s.expertIds, s.weights, s.logits, rows, e, (float) s.invTemperature);
        } else {
            s.slots = topK;
            s.invTemperature = 1;
            s.expertIds = topIds;
            s.weights = topWeights;
        }
        int assigned = rows * s.slots;
        s.offsets = scope.ints(e + 1);
        s.rowToken = scope.ints(assigned);
        s.slotRow = scope.ints(assigned);
        backend.sortByExpert(s.offsets, s.rowToken, s.slotRow, s.expertIds, rows, s.slots, e);
        s.xs = scope.floats((long) assigned * d);
        backend.gather(s.xs, xn, s.rowToken, assigned, d);
        s.gate = scope.floats((long) assigned * ffn);
        s.up = scope.floats((long) assigned * ffn);
        // LoRA dropout draws as a loop over the experts makes them: per expert its w1, w3, w2 rows in turn
        int p1 = draws(w1, dropout), p3 = draws(w3, dropout), p2 = draws(w2, dropout), stride = p1 + p3 + p2;
        s.s1 = forward(w1, s.gate, s.xs, assigned, s.offsets, dropout, stride, 0, scope);
        s.s3 = forward(w3, s.up, s.xs, assigned, s.offsets, dropout, stride, p1, scope);
        s.h = scope.floats((long) assigned * ffn);
        backend.expertSwiglu(s.h, s.gate, s.up, s.offsets, e, ffn);
        s.expertOut = scope.floats((long) assigned * d);
        s.s2 = forward(w2, s.expertOut, s.h, assigned, s.offsets, dropout, stride, p1 + p3, scope);
        if (stride > 0) dropout.advance((long) assigned * stride);
        if (bias != null) backend.expertAddBias(s.expertOut, s.offsets, values(bias), d);
        backend.combineExperts(y, s.expertOut, s.slotRow, s.weights, rows, s.slots, d);
        if (hasSharedExpert()) {  // y += σ(w_s · x) · S(x)
            int fs = sharedGateProj.out;
            s.sharedG = scope.floats((long) rows * fs);
            s.sharedU = scope.floats((long) rows * fs);
            s.sg = sharedGateProj.forward(s.sharedG, xn, rows, dropout, scope);
            s.su = sharedUp.forward(s.sharedU, xn, rows, dropout, scope);
            s.sharedH = scope.floats((long) rows * fs);
            backend.swiglu(s.sharedH, s.sharedG, s.sharedU, rows * fs);
            s.sharedOut = scope.floats((long) rows * d);
            s.sd = sharedDown.forward(s.sharedOut, s.sharedH, rows, dropout, scope);
            s.gateLogit = scope.floats(rows);
            backend.matmul(s.gateLogit, xn, rows, sharedGate.value());
            backend.sigmoidGatedAdd(y, s.sharedOut, s.gateLogit, rows, d);
        }
        return s;
    }

    /** dropout draws per row of one linear of the experts: its input width when it carries LoRA with dropout, else 0 */
    private static int draws(TrainableLlama.Linear[] lin, TrainableLlama.Dropout dropout) {
        return dropout != null && lin[0].loraA != null && lin[0].dropout > 0 ? lin[0].in : 0;
    }

    /**
     * one linear of every expert over its rows of x (R, in) → y (R, out), with LoRA when the linears carry it; dropout
     * draws at {@code prefix} within each expert's {@code stride} draws per row ({@link Backend#expertDropout})
     */
    private Adapter forward(TrainableLlama.Linear[] lin, DeviceTensor y, DeviceTensor x, int R, DeviceTensor offsets,
                            TrainableLlama.Dropout dropout, int stride, int prefix, DeviceScope scope) {
        backend.expertMatmul(y, x, offsets, weights(lin));
        TrainableLlama.Linear first = lin[0];
        if (first.loraA == null) return null;
        int in = first.in, out = first.out, r = first.loraA.value().rows();
        Adapter a = new Adapter();
        a.xDropped = x;
        if (dropout != null && first.dropout > 0) {
            a.mask = scope.floats((long) R * in);
            a.xDropped = scope.floats((long) R * in);
            backend.expertDropout(a.mask, a.xDropped, x, offsets, lin.length, in, dropout.seed, dropout.drawn, stride, prefix, first.dropout);
        }
        a.scaledU = scope.floats((long) R * r);
        backend.expertMatmul(a.scaledU, a.xDropped, offsets, loraA(lin));
        backend.scale(a.scaledU, first.loraScale, R * r);
        try (DeviceTensor delta = backend.allocate(dive.tensor.DType.F32, (long) R * out)) {  // freed now, not with the step
            backend.expertMatmul(delta, a.scaledU, offsets, loraB(lin));
            backend.add(y, delta, R * out);
        }
        return a;
    }

    /**
     * dx (R, in) = (or +=, when accumulate) ∂/∂x of one linear of every expert, given dy (R, out); the gradients of its
     * trainable weights and adapters added
     */
    private void backward(TrainableLlama.Linear[] lin, DeviceTensor dx, boolean accumulate, DeviceTensor dy, DeviceTensor x, int R,
                          DeviceTensor offsets, Adapter a, DeviceScope scope) {
        TrainableLlama.Linear first = lin[0];
        int in = first.in, out = first.out;
        DeviceTensor[] dw = grads(lin, l -> l.weight);
        if (dw != null) backend.expertMatmulBackwardWeight(dw, dy, x, offsets, out, in);
        DeviceTensor dxPart = accumulate ? scope.floats((long) R * in) : dx;
        backend.expertMatmulBackwardInput(dxPart, dy, offsets, weights(lin));
        if (first.loraA != null) {
            int r = first.loraA.value().rows();
            DeviceTensor[] dB = grads(lin, l -> l.loraB);
            if (dB != null) backend.expertMatmulBackwardWeight(dB, dy, a.scaledU, offsets, out, r);
            DeviceTensor du = scope.floats((long) R * r);  // ∂/∂(x·Aᵀ) = (α/r)·dy·B
            backend.expertMatmulBackwardInput(du, dy, offsets, loraB(lin));
            backend.scale(du, first.loraScale, R * r);
            DeviceTensor[] dA = grads(lin, l -> l.loraA);
            if (dA != null) backend.expertMatmulBackwardWeight(dA, du, a.xDropped, offsets, r, in);
            DeviceTensor dxLora = scope.floats((long) R * in);
            backend.expertMatmulBackwardInput(dxLora, du, offsets, loraA(lin));
            if (a.mask != null) backend.multiply(dxLora, a.mask, R * in);
            backend.add(dxPart, dxLora, R * in);
        }
        if (accumulate) backend.add(dx, dxPart, R * in);
    }

    private static Tensor[] weights(TrainableLlama.Linear[] lin) {
        Tensor[] w = new Tensor[lin.length];
        for (int e = 0; e < lin.length; e++) w[e] = lin[e].weight.value();
        return w;
    }

    private static Tensor[] loraA(TrainableLlama.Linear[] lin) {
        Tensor[] w = new Tensor[lin.length];
        for (int e = 0; e < lin.length; e++) w[e] = lin[e].loraA.value();
        return w;
    }

    private static Tensor[] loraB(TrainableLlama.Linear[] lin) {
        Tensor[] w = new Tensor[lin.length];
        for (int e = 0; e < lin.length; e++) w[e] = lin[e].loraB.value();
        return w;
    }

    private static Tensor[] values(Parameter[] ps) {
        Tensor[] v = new Tensor[ps.length];
        for (int e = 0; e < ps.length; e++) v[e] = ps[e].value();
        return v;
    }

    /** the gradients of the trainable parameter {@code which} of every expert (null where frozen), or null when none trains */
    private DeviceTensor[] grads(TrainableLlama.Linear[] lin, java.util.function.Function<TrainableLlama.Linear, Parameter> which) {
        DeviceTensor[] g = new DeviceTensor[lin.length];
        boolean any = false;
        for (int e = 0; e < lin.length; e++) {
            Parameter p = which.apply(lin[e]);
            if (p != null && p.trainable()) { g[e] = p.grad(backend); any = true; }
        }
        return any ? g : null;
    }

    /**
     * dxn (N, d) = ∂/∂xn, overwritten, given dy (N, d); gradients added into the trainable parameters.
     * {@code dLogitsExtra} (N, E) or null: a gradient on the router logits from elsewhere (the auxiliary loss).
     * {@code inputGradient} false: nothing below the block needs ∂/∂xn (every parameter under it is frozen), so dxn is
     * left untouched (it may be null), the router's input gradient is skipped, and so are the experts' backward when no
     * expert has anything trainable (stage 0: the routers' gradients come from dg = dy · expert output alone).
     */
    void backward(DeviceTensor dxn, DeviceTensor dy, Saved s, DeviceTensor dLogitsExtra, boolean inputGradient, DeviceScope scope) {
        int e = numExperts, rows = s.rows, slots = s.slots, assigned = rows * slots;
        DeviceTensor dExpertOut = scope.floats((long) assigned * d), dWeights = scope.floats(assigned);
        backend.combineExpertsBackward(dExpertOut, dWeights, dy, s.expertOut, s.slotRow, s.weights, rows, slots, d);
        boolean experts = inputGradient;
        for (int x = 0; x < e && !experts; x++) experts = expertTrainable(x);
        if (experts) {
            if (bias != null) {
                DeviceTensor[] db = new DeviceTensor[e];
                boolean any = false;
                for (int x = 0; x < e; x++) if (bias[x].trainable()) { db[x] = bias[x].grad(backend); any = true; }
                if (any) backend.expertBiasBackward(db, dExpertOut, s.offsets, d);
            }
            DeviceTensor dh = scope.floats((long) assigned * ffn), dGate = scope.floats((long) assigned * ffn),
                    dUp = scope.floats((long) assigned * ffn);
            backward(w2, dh, false, dExpertOut, s.h, assigned, s.offsets, s.s2, scope);
            backend.expertSwigluBackward(dGate, dUp, dh, s.gate, s.up, s.offsets, e, ffn);
            DeviceTensor dxs = scope.floats((long) assigned * d);  // (R, d) input gradients of the permuted rows
            backward(w1, dxs, false, dGate, s.xs, assigned, s.offsets, s.s1, scope);
            backward(w3, dxs, true, dUp, s.xs, assigned, s.offsets, s.s3, scope);
            if (inputGradient) {
                backend.zero(dxn, 0, (long) rows * d);
                backend.scatterAddRows(dxn, dxs, s.rowToken, assigned, d);
            }
        }

        // routing weights → logits: dz_e = g_e (dg_e − Σ_s g_s dg_s) / t over the slots, 0 for unselected experts
        DeviceTensor dLogits = dLogitsExtra != null ? scope.copyOf(dLogitsExtra, (long) rows * e) : scope.floats((long) rows * e);
        backend.routingBackward(dLogits, s.weights, dWeights, s.expertIds, rows, slots, e, s.invTemperature);
        if (router.trainable()) backend.matmulBackwardWeight(router.grad(backend), dLogits, s.xn, rows, e, d);
        if (inputGradient) {
            DeviceTensor dxRouter = scope.floats((long) rows * d);
            backend.matmulBackwardInput(dxRouter, dLogits, rows, router.value());
            backend.add(dxn, dxRouter, rows * d);
        }
        if (hasSharedExpert()) sharedBackward(dxn, dy, s, inputGradient, scope);
    }

    /** the shared expert's and its gate's part of {@link #backward}: gradients added, dxn += ∂/∂xn when inputGradient */
    private void sharedBackward(DeviceTensor dxn, DeviceTensor dy, Saved s, boolean inputGradient, DeviceScope scope) {
        int rows = s.rows, fs = sharedGateProj.out;
        DeviceTensor dOut = scope.floats((long) rows * d), dGateLogit = scope.floats(rows);
        backend.sigmoidGatedAddBackward(dOut, dGateLogit, dy, s.sharedOut, s.gateLogit, rows, d);
        if (sharedGate.trainable()) backend.matmulBackwardWeight(sharedGate.grad(backend), dGateLogit, s.xn, rows, 1, d);
        if (inputGradient || sharedLinearsTrainable()) {
            DeviceTensor dh = scope.floats((long) rows * fs), dg = scope.floats((long) rows * fs), du = scope.floats((long) rows * fs);
            sharedDown.backward(dh, false, dOut, s.sharedH, rows, s.sd, scope);
            backend.swigluBackward(dg, du, dh, s.sharedG, s.sharedU, rows * fs);
            DeviceTensor dx = scope.floats((long) rows * d);
            sharedGateProj.backward(dx, false, dg, s.xn, rows, s.sg, scope);
            sharedUp.backward(dx, true, du, s.xn, rows, s.su, scope);
            if (inputGradient) backend.add(dxn, dx, rows * d);
        }
        if (inputGradient) {
            DeviceTensor dx = scope.floats((long) rows * d);
            backend.matmulBackwardInput(dx, dGateLogit, rows, sharedGate.value());
            backend.add(dxn, dx, rows * d);
        }
    }

    private boolean sharedLinearsTrainable() {
        return sharedGateProj.hasTrainable() || sharedUp.hasTrainable() || sharedDown.hasTrainable();
    }

    /** true when anything of the block trains: the router, an expert, the shared expert or its gate */
    boolean anyTrainable() {
        if (router.trainable()) return true;
        for (int x = 0; x < numExperts; x++) if (expertTrainable(x)) return true;
        return hasSharedExpert() && (sharedGate.trainable() || sharedLinearsTrainable());
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
     * of layer l = scale · (E / (L·N)) · p ⊙ (f − p·f) per row (f held constant). The softmax runs on the device; the
     * pooled sums are formed on the host (each layer's probabilities come over, its gradient goes back: the one place
     * a training step transfers more than its edges, and only with a non-zero aux-loss coefficient).
     */
    static double auxLoss(Backend backend, Saved[] layers, int[][] topKCounts, DeviceTensor[] dLogits, double scale, DeviceScope scope) {
        int e = -1, moeLayers = 0;
        double rows = 0;
        for (int l = 0; l < layers.length; l++) {
            Saved s = layers[l];
            if (s != null) { e = Math.toIntExact(topKCounts[l].length); moeLayers++; rows += s.rows; }
        }
        if (moeLayers == 0) throw new IllegalArgumentException("aux loss: no MoE layer");
        double[] counts = new double[e], probSum = new double[e];
        float[][] probs = new float[layers.length][];
        for (int l = 0; l < layers.length; l++) {
            Saved s = layers[l];
            if (s == null) continue;
            for (int x = 0; x < e; x++) counts[x] += topKCounts[l][x];
            DeviceTensor p = scope.copyOf(s.logits, (long) s.rows * e);
            backend.softmax(p, s.rows, e);
            probs[l] = new float[s.rows * e];
            backend.read(p, 0, probs[l], probs[l].length);
            for (int t = 0; t < s.rows; t++)
                for (int x = 0; x < e; x++) probSum[x] += probs[l][t * e + x];
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
                float[] p = probs[l], dz = new float[n * e];
                for (int t = 0; t < n; t++) {
                    double pf = 0;
                    for (int x = 0; x < e; x++) pf += p[t * e + x] * fraction[x];
                    for (int x = 0; x < e; x++) dz[t * e + x] = (float) (scale * e / rows * p[t * e + x] * (fraction[x] - pf));
                }
                dLogits[l] = scope.upload(dz);
            }
        }
        return aux;
    }
}
