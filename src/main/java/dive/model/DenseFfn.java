package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * Llama's SwiGLU MLP (transformers' {@code LlamaMLP}):
 * <pre>
 * out = down_proj(silu(gate_proj(x)) · up_proj(x))      each projection x·Wᵀ (+ its bias when present)
 * </pre>
 * Biases: with {@code mlp_bias: true} (transformers' LlamaConfig) all three projections have one, named
 * {@code model.layers.{l}.mlp.{gate,up,down}_proj.bias}. A pruned block may also carry only a down_proj bias (DIVE's
 * bias compensation, held in memory for evaluation). Every bias present is listed by {@link #collectWeights}, so none is
 * dropped silently.
 *
 * @param gate     gate_proj (F, d)
 * @param up       up_proj (F, d)
 * @param down     down_proj (d, F)
 * @param gateBias gate_proj bias (F), or null
 * @param upBias   up_proj bias (F), or null
 * @param downBias down_proj bias (d), or null
 */
public record DenseFfn(Tensor gate, Tensor up, Tensor down, Tensor gateBias, Tensor upBias, Tensor downBias) implements FeedForward {

    public DenseFfn {
        checkBias(gateBias, gate);
        checkBias(upBias, up);
        checkBias(downBias, down);
    }

    private static void checkBias(Tensor bias, Tensor weight) {
        if (bias != null && (bias.numel() != weight.rows() || bias.shape().length != 1
                || (bias.dtype() != DType.F32 && bias.dtype() != DType.BF16 && bias.dtype() != DType.F16)))
            throw new IllegalArgumentException("FFN bias '" + bias.name() + "' is " + bias + ", expected a vector of " + weight.rows()
                    + " F32, BF16 or F16 values (the rows of '" + weight.name() + "')");
    }

    /** a bias-free block, as Llama has with {@code mlp_bias: false} */
    public DenseFfn(Tensor gate, Tensor up, Tensor down) { this(gate, up, down, null, null, null); }

    public int intermediateSize() { return gate.rows(); }

    /** true when any projection has a bias */
    public boolean hasBias() { return gateBias != null || upBias != null || downBias != null; }

    @Override
    public void forward(Backend backend, DeviceTensor out, DeviceTensor xn, int rows, int layer, Scratch scratch, RoutingObserver observer) {
        int ffn = intermediateSize();
        DeviceTensor g = scratch.floats(0, rows * ffn);  // (N, F)
        DeviceTensor u = scratch.floats(1, rows * ffn);  // (N, F)
        backend.matmul(g, xn, rows, gate);
        if (gateBias != null) backend.addBias(g, rows, gateBias);
        backend.matmul(u, xn, rows, up);
        if (upBias != null) backend.addBias(u, rows, upBias);
        backend.swiglu(g, g, u, rows * ffn);
        if (observer != null) observer.onDenseIntermediate(backend, layer, rows, ffn, g);
        backend.matmul(out, g, rows, down);
        if (downBias != null) backend.addBias(out, rows, downBias);
    }

    @Override
    public void collectWeights(String prefix, Map<String, Tensor> into) {
        into.put(prefix + "mlp.gate_proj.weight", gate);
        if (gateBias != null) into.put(prefix + "mlp.gate_proj.bias", gateBias);
        into.put(prefix + "mlp.up_proj.weight", up);
        if (upBias != null) into.put(prefix + "mlp.up_proj.bias", upBias);
        into.put(prefix + "mlp.down_proj.weight", down);
        if (downBias != null) into.put(prefix + "mlp.down_proj.bias", downBias);
    }
}
