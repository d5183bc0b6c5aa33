package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * Mixtral's sparse Mixture-of-Experts block ({@code block_sparse_moe}). For a token x (d):
 * <pre>
 * z = router · x                                      // (E) F32 router logits, router (E, d), no bias
 * top-k experts by z (ties → lower index), g = softmax(z over those k)   // = Mixtral's softmax, top-k, renormalise
 * y = Σ_{e ∈ top-k} g_e · (w2_e(silu(w1_e x) · w3_e x) + b_e)      // b_e: optional expert bias (DIVE extension)
 * </pre>
 * Run as vLLM / MegaBlocks do: router matmul → routeTopK → sort rows by expert → gather → grouped gate and up
 * matmuls → swiglu → grouped down matmul (+ bias) → weighted fixed-order sum per token (deterministic).
 *
 * @param router  gate.weight (E, d)
 * @param w1      per expert gate projection (I_e, d)
 * @param w3      per expert up projection (I_e, d)
 * @param w2      per expert down projection (d, I_e)
 * @param bias    per expert output bias (d), or null for stock Mixtral (no biases)
 * @param topK    experts per token, k
 */
public record MoeFfn(Tensor router, Tensor[] w1, Tensor[] w3, Tensor[] w2, Tensor[] bias, int topK) implements FeedForward {

    public MoeFfn {
        int e = router.rows();
        if (w1.length != e || w3.length != e || w2.length != e || (bias != null && bias.length != e))
            throw new IllegalArgumentException("MoE block: router '" + router.name() + "' has " + e + " experts but w1/w3/w2"
                    + (bias != null ? "/bias" : "") + " have " + w1.length + "/" + w3.length + "/" + w2.length
                    + (bias != null ? "/" + bias.length : ""));
        if (topK < 1 || topK > e) throw new IllegalArgumentException("MoE block: top-k " + topK + ", expected 1 ≤ k ≤ " + e);
        w1 = w1.clone(); w3 = w3.clone(); w2 = w2.clone();
        bias = bias == null ? null : bias.clone();
    }

    public int numExperts() { return router.rows(); }

    public int hiddenSize() { return router.cols(); }

    public int expertIntermediateSize() { return w1[0].rows(); }

    @Override
    public void forward(Backend backend, DeviceTensor out, DeviceTensor xn, int rows, int layer, Scratch scratch, RoutingObserver observer) {
        int e = numExperts(), k = topK, d = hiddenSize(), ffn = expertIntermediateSize();
        int assigned = rows * k;                                 // R = N·k permuted rows
        DeviceTensor routerLogits = scratch.floats(0, rows * e);      // (N, E)
        DeviceTensor weights = scratch.floats(1, assigned);           // (N, k)
        DeviceTensor expertIds = scratch.ints(0, assigned);             // (N, k)
        DeviceTensor offsets = scratch.ints(1, e + 1);                  // (E + 1)
        DeviceTensor rowToken = scratch.ints(2, assigned);              // (R)
        DeviceTensor slotRow = scratch.ints(3, assigned);               // (N, k)
        DeviceTensor gate = scratch.floats(3, assigned * ffn);        // (R, I_e)
        DeviceTensor up = scratch.floats(4, assigned * ffn);          // (R, I_e)
        DeviceTensor expertOut = scratch.floats(5, assigned * d);     // (R, d)

        backend.matmul(routerLogits, xn, rows, router);
        backend.routeTopK(expertIds, weights, routerLogits, rows, e, k);
        if (observer != null) observer.onRouting(backend, layer, rows, e, k, routerLogits, expertIds, weights);
        backend.sortByExpert(offsets, rowToken, slotRow, expertIds, rows, k, e);
        backend.groupedMatmul2(gate, up, xn, rowToken, offsets, w1, w3); // gathers xn's rows on the way
        backend.swiglu(gate, gate, up, assigned * ffn);
        backend.groupedMatmul(expertOut, gate, offsets, w2, bias);
        backend.combineExperts(out, expertOut, slotRow, weights, rows, k, d);
    }

    @Override
    public void collectWeights(String prefix, Map<String, Tensor> into) {
        String p = prefix + "block_sparse_moe.";
        into.put(p + "gate.weight", router);
        for (int i = 0; i < numExperts(); i++) {
            String ep = p + "experts." + i + ".";
            into.put(ep + "w1.weight", w1[i]);
            into.put(ep + "w2.weight", w2[i]);
            into.put(ep + "w3.weight", w3[i]);
            if (bias != null) into.put(ep + "bias", bias[i]);
        }
    }

    @Override public boolean equals(Object o) { return this == o; }
    @Override public int hashCode() { return System.identityHashCode(this); }
    @Override public String toString() {
        return "MoeFfn[" + numExperts() + " experts × " + expertIntermediateSize() + ", top-" + topK + (bias != null ? ", biased" : "") + "]";
    }

}
