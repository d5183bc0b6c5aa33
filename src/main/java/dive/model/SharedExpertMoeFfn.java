package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * Qwen2-MoE's sparse block (transformers' {@code Qwen2MoeSparseMoeBlock}, {@code model.layers.{l}.mlp}): routed experts
 * plus an always-active shared expert behind a sigmoid gate. For a token x (d):
 * <pre>
 * y = Σ_{e ∈ top-k} g_e · expert_e(x)  +  σ(shared_expert_gate · x) · shared_expert(x)
 * </pre>
 * The routed part is a {@link MoeFfn} (softmax over all experts, top-k, renormalised: Qwen2-MoE with
 * {@code norm_topk_prob: true}); the shared expert is a SwiGLU {@link DenseFfn}; {@code shared_expert_gate} is a
 * Linear(d → 1) without bias. Run with the Backend's ops: the routed block, the shared expert's three matmuls and
 * swiglu, the gate's matmul, then {@link Backend#sigmoidGatedAdd}.
 *
 * <p>A plain (ungated) shared expert S(x) is this block exactly with a zero gate (σ(0) = ½) and S's down projection
 * doubled (×2 is exact in binary floating point).
 *
 * @param routed     the router and the routed experts
 * @param shared     the shared expert, width {@code shared_expert_intermediate_size}
 * @param sharedGate shared_expert_gate.weight (1, d)
 */
public record SharedExpertMoeFfn(MoeFfn routed, DenseFfn shared, Tensor sharedGate) implements FeedForward {

    public SharedExpertMoeFfn {
        int d = routed.hiddenSize();
        if (routed.bias() != null) throw new IllegalArgumentException("Qwen2-MoE block: routed experts have no output biases");
        if (shared.hasBias()) throw new IllegalArgumentException("Qwen2-MoE block: the shared expert has no biases");
        if (shared.gate().cols() != d || shared.down().rows() != d || sharedGate.rows() != 1 || sharedGate.cols() != d)
            throw new IllegalArgumentException("Qwen2-MoE block: shared expert " + shared.gate() + " / gate " + sharedGate
                    + " do not fit hidden size " + d);
    }

    /**
     * A block built from a dense SwiGLU FFN by channels (the intermediate neurons): the shared expert keeps
     * {@code sharedChannels} of {@code dense} and is exported ungated-exact (zero {@code shared_expert_gate}, σ(0) = ½,
     * its down projection doubled: ×2 is exact), so the block computes Σ_{e ∈ top-k} g_e · expert_e(x) + S(x) with S the
     * dense FFN restricted to the shared channels; routed expert e keeps {@code expertChannels[e]} (every expert the
     * same count). Weights keep the dense block's dtype and live in {@code arena}; names are Qwen2-MoE's under
     * {@code prefix} = "model.layers.{l}.".
     *
     * @param router (E, d) router weights, E = expertChannels.length
     */
    public static SharedExpertMoeFfn fromChannels(DenseFfn dense, int[] sharedChannels, int[][] expertChannels, Tensor router, int topK,
                                                  String prefix, dive.tensor.TensorArena arena) {
        return fromChannels(dense, sharedChannels, expertChannels, router, topK, 1f, prefix, arena);
    }

    /**
     * {@link #fromChannels(DenseFfn, int[], int[][], Tensor, int, String, dive.tensor.TensorArena)} with every routed
     * expert's down projection × {@code routedDownFactor} (exact when it is a power of two), e.g. k for CMoE, whose chosen
     * experts each count with weight 1 where Qwen2-MoE's renormalised top-k weights sum to 1.
     */
    public static SharedExpertMoeFfn fromChannels(DenseFfn dense, int[] sharedChannels, int[][] expertChannels, Tensor router, int topK,
                                                  float routedDownFactor, String prefix, dive.tensor.TensorArena arena) {
        if (dense.hasBias()) throw new IllegalArgumentException(prefix + ": the dense FFN has biases, which Qwen2-MoE experts cannot hold");
        int e = expertChannels.length, d = dense.gate().cols();
        String m = prefix + "mlp.";
        Tensor[] gate = new Tensor[e], up = new Tensor[e], down = new Tensor[e];
        for (int x = 0; x < e; x++) {
            String ep = m + "experts." + x + ".";
            gate[x] = rows(dense.gate(), expertChannels[x], ep + "gate_proj.weight", arena);
            up[x] = rows(dense.up(), expertChannels[x], ep + "up_proj.weight", arena);
            down[x] = columns(dense.down(), expertChannels[x], routedDownFactor, ep + "down_proj.weight", arena);
        }
        String s = m + "shared_expert.";
        DenseFfn shared = new DenseFfn(rows(dense.gate(), sharedChannels, s + "gate_proj.weight", arena),
                rows(dense.up(), sharedChannels, s + "up_proj.weight", arena),
                columns(dense.down(), sharedChannels, 2f, s + "down_proj.weight", arena));
        Tensor zeroGate = Tensor.allocate(m + "shared_expert_gate.weight", dense.gate().dtype(), new long[] {1, d}, arena);
        return new SharedExpertMoeFfn(new MoeFfn(router, gate, up, down, null, topK), shared, zeroGate);
    }

    /** the rows {@code channels} of w (F, d) → (|channels|, d), bit for bit */
    private static Tensor rows(Tensor w, int[] channels, String name, dive.tensor.TensorArena arena) {
        int d = w.cols();
        Tensor out = Tensor.allocate(name, w.dtype(), new long[] {channels.length, d}, arena);
        for (int i = 0; i < channels.length; i++) out.copyFrom(w, (long) channels[i] * d, (long) i * d, d);
        return out;
    }

    /** the columns {@code channels} of w (d, F) times {@code factor} (exact for a power of two) → (d, |channels|) */
    private static Tensor columns(Tensor w, int[] channels, float factor, String name, dive.tensor.TensorArena arena) {
        int rows = w.rows(), f = w.cols();
        Tensor out = Tensor.allocate(name, w.dtype(), new long[] {rows, channels.length}, arena);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < channels.length; i++) out.setFloat((long) r * channels.length + i, factor * w.getFloat((long) r * f + channels[i]));
        return out;
    }

    /** the shared expert's width */
    public int sharedIntermediateSize() { return shared.intermediateSize(); }

    @Override
    public void forward(Backend backend, DeviceTensor out, DeviceTensor xn, int rows, int layer, Scratch scratch, RoutingObserver observer) {
        int d = routed.hiddenSize();
        routed.forward(backend, out, xn, rows, layer, scratch, observer);
        DeviceTensor sharedOut = scratch.floats(6, rows * d);   // (N, d)
        DeviceTensor gateLogit = scratch.floats(7, rows);       // (N)
        shared.forward(backend, sharedOut, xn, rows, layer, scratch, null); // its slots 0, 1: the routed block is done with them
        backend.matmul(gateLogit, xn, rows, sharedGate);
        backend.sigmoidGatedAdd(out, sharedOut, gateLogit, rows, d);
    }

    /** Qwen2-MoE's names under {@code prefix} = "model.layers.{l}.": mlp.gate, mlp.experts.{e}.*_proj, mlp.shared_expert.*, mlp.shared_expert_gate */
    @Override
    public void collectWeights(String prefix, Map<String, Tensor> into) {
        String p = prefix + "mlp.";
        into.put(p + "gate.weight", routed.router());
        for (int e = 0; e < routed.numExperts(); e++) {
            String ep = p + "experts." + e + ".";
            into.put(ep + "gate_proj.weight", routed.w1()[e]);
            into.put(ep + "up_proj.weight", routed.w3()[e]);
            into.put(ep + "down_proj.weight", routed.w2()[e]);
        }
        into.put(p + "shared_expert.gate_proj.weight", shared.gate());
        into.put(p + "shared_expert.up_proj.weight", shared.up());
        into.put(p + "shared_expert.down_proj.weight", shared.down());
        into.put(p + "shared_expert_gate.weight", sharedGate);
    }

    @Override public boolean equals(Object o) { return this == o; }
    @Override public int hashCode() { return System.identityHashCode(this); }
    @Override public String toString() {
        return "SharedExpertMoeFfn[" + routed + " + shared expert × " + sharedIntermediateSize() + "]";
    }
}
