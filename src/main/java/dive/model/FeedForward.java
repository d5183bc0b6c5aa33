package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.util.Map;

/**
 * The feed-forward block of a decoder layer: a dense SwiGLU MLP ({@link DenseFfn}, Llama) or a sparse
 * Mixture of Experts ({@link MoeFfn}, Mixtral), or routed experts plus a gated shared expert ({@link SharedExpertMoeFfn},
 * Qwen2-MoE). The attention path around it is the same for all.
 * Implementations are immutable (weights only); per-call state lives in a {@link Scratch}.
 */
public sealed interface FeedForward permits DenseFfn, MoeFfn, SharedExpertMoeFfn {

    /**
     * out (N, d) = FFN(xn (N, d)). {@code observer} (may be null) sees the routing of a sparse block.
     * out must not alias xn.
     */
    void forward(Backend backend, DeviceTensor out, DeviceTensor xn, int rows, int layer, Scratch scratch, RoutingObserver observer);

    /** this block's weights under their Hugging Face names, {@code prefix} = "model.layers.{l}." */
    void collectWeights(String prefix, Map<String, Tensor> into);

    /**
     * Reusable work tensors of one forward call on one backend (not thread-safe): slot i grows to the largest size
     * asked (a grown slot's old tensor is closed).
     */
    final class Scratch implements AutoCloseable {
        private final Backend backend;
        private final DeviceTensor[] floats = new DeviceTensor[8];
        private final DeviceTensor[] ints = new DeviceTensor[4];

        public Scratch(Backend backend) { this.backend = backend; }

        /** F32 tensor of slot {@code slot} with at least {@code size} elements */
        public DeviceTensor floats(int slot, int size) { return grow(floats, slot, size, DType.F32); }

        /** I32 tensor of slot {@code slot} with at least {@code size} elements */
        public DeviceTensor ints(int slot, int size) { return grow(ints, slot, size, DType.I32); }

        private DeviceTensor grow(DeviceTensor[] slots, int slot, int size, DType dtype) {
            if (slots[slot] == null || slots[slot].size() < size) {
                if (slots[slot] != null) slots[slot].close();
                slots[slot] = backend.allocate(dtype, size);
            }
            return slots[slot];
        }

        @Override public void close() {
            for (DeviceTensor t : floats) if (t != null) t.close();
            for (DeviceTensor t : ints) if (t != null) t.close();
        }
    }
}
