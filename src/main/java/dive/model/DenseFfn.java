package dive.model;

import dive.backend.Backend;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * Llama's SwiGLU MLP: out = down_proj(silu(gate_proj(x)) · up_proj(x)) (+ bias).
 *
 * <p>The optional output bias (d) is DIVE's bias compensation for a pruned FFN (added after down_proj); it is
 * null for every model loaded from a Hugging Face Llama checkpoint (which has {@code mlp_bias: false}). A biased
 * block lists it as {@code model.layers.{l}.mlp.down_proj.bias} in {@link #collectWeights}, so it is never dropped
 * silently.
 *
 * @param gate gate_proj (F, d)
 * @param up   up_proj (F, d)
 * @param down down_proj (d, F)
 * @param bias output bias (d) F32, or null for none
 */
public record DenseFfn(Tensor gate, Tensor up, Tensor down, Tensor bias) implements FeedForward {

    public DenseFfn {
        if (bias != null && (bias.numel() != down.rows() || bias.dtype() != dive.tensor.DType.F32))
            throw new IllegalArgumentException("FFN bias '" + bias.name() + "' is " + bias + ", expected F32 of " + down.rows()
                    + " values (the rows of '" + down.name() + "')");
    }

    /** a bias-free block, as Llama has */
    public DenseFfn(Tensor gate, Tensor up, Tensor down) { this(gate, up, down, null); }

    public int intermediateSize() { return gate.rows(); }

    @Override
    public void forward(Backend backend, float[] out, float[] xn, int rows, int layer, Scratch scratch, RoutingObserver observer) {
        int ffn = intermediateSize();
        float[] g = scratch.floats(0, rows * ffn);  // (N, F)
        float[] u = scratch.floats(1, rows * ffn);  // (N, F)
        backend.matmul(g, xn, rows, gate);
        backend.matmul(u, xn, rows, up);
        backend.swiglu(g, g, u, rows * ffn);
        if (observer != null) observer.onDenseIntermediate(layer, rows, ffn, g);
        backend.matmul(out, g, rows, down);
        if (bias != null) {
            int d = down.rows();
            float[] b = new float[d];
            for (int i = 0; i < d; i++) b[i] = bias.getFloat(i);
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < d; i++) out[r * d + i] += b[i];
        }
    }

    @Override
    public void collectWeights(String prefix, Map<String, Tensor> into) {
        into.put(prefix + "mlp.gate_proj.weight", gate);
        into.put(prefix + "mlp.up_proj.weight", up);
        into.put(prefix + "mlp.down_proj.weight", down);
        if (bias != null) into.put(prefix + "mlp.down_proj.bias", bias);
    }
}
