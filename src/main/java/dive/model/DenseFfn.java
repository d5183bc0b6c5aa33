package dive.model;

import dive.backend.Backend;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * Llama's SwiGLU MLP: out = down_proj(silu(gate_proj(x)) · up_proj(x)).
 *
 * @param gate gate_proj (F, d)
 * @param up   up_proj (F, d)
 * @param down down_proj (d, F)
 */
public record DenseFfn(Tensor gate, Tensor up, Tensor down) implements FeedForward {

    public int intermediateSize() { return gate.rows(); }

    @Override
    public void forward(Backend backend, float[] out, float[] xn, int rows, int layer, Scratch scratch, RoutingObserver observer) {
        int ffn = intermediateSize();
        float[] g = scratch.floats(0, rows * ffn);  // (N, F)
        float[] u = scratch.floats(1, rows * ffn);  // (N, F)
        backend.matmul(g, xn, rows, gate);
        backend.matmul(u, xn, rows, up);
        backend.swiglu(g, g, u, rows * ffn);
        backend.matmul(out, g, rows, down);
    }

    @Override
    public void collectWeights(String prefix, Map<String, Tensor> into) {
        into.put(prefix + "mlp.gate_proj.weight", gate);
        into.put(prefix + "mlp.up_proj.weight", up);
        into.put(prefix + "mlp.down_proj.weight", down);
    }
}
