package dive.model;

import dive.backend.Backend;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * The feed-forward block of a decoder layer: a dense SwiGLU MLP ({@link DenseFfn}, Llama) or a sparse
 * Mixture of Experts ({@link MoeFfn}, Mixtral). The attention path around it is the same for both.
 * Implementations are immutable (weights only); per-call state lives in a {@link Scratch}.
 */
public sealed interface FeedForward permits DenseFfn, MoeFfn {

    /**
     * out (N, d) = FFN(xn (N, d)). {@code observer} (may be null) sees the routing of a sparse block.
     * out must not alias xn.
     */
    void forward(Backend backend, float[] out, float[] xn, int rows, int layer, Scratch scratch, RoutingObserver observer);

    /** this block's weights under their Hugging Face names, {@code prefix} = "model.layers.{l}." */
    void collectWeights(String prefix, Map<String, Tensor> into);

    /** reusable work arrays of one forward call (not thread-safe): slot i grows to the largest size asked */
    final class Scratch {
        private final float[][] floats = new float[8][0];
        private final int[][] ints = new int[4][0];

        public float[] floats(int slot, int size) {
            if (floats[slot].length < size) floats[slot] = new float[size];
            return floats[slot];
        }

        public int[] ints(int slot, int size) {
            if (ints[slot].length < size) ints[slot] = new int[size];
            return ints[slot];
        }
    }
}
