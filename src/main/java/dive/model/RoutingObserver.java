package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;

/**
 * Sees how each sparse-MoE layer routed the tokens of one forward call (routing statistics, load balance,
 * DIVE's analysis) and, optionally, each dense FFN's intermediate activation (DIVE's calibration statistics) and each
 * layer's FFN input ({@link #onFfnInput}, CMoE's calibration).
 * Passed per call; when absent (null) the model does no extra work.
 *
 * <p>The model calls the device-tensor forms ({@link #onRouting(Backend, int, int, int, int, DeviceTensor, DeviceTensor,
 * DeviceTensor)}, {@link #onDenseIntermediate(Backend, int, int, int, DeviceTensor)}); their defaults copy the
 * tensors to the host (counted transfers) and call the array forms. An observer that reduces on the device (DIVE's
 * calibration statistics) overrides the device form and transfers nothing inside a layer.
 */
@FunctionalInterface
public interface RoutingObserver {
    /**
     * Called once per MoE layer per forward call, on the calling thread, after routing and before the experts run.
     * The arrays belong to the model and are valid only during the call (copy what you keep).
     *
     * @param layer         decoder layer index
     * @param tokens        N, the rows of this call (all sequences of a batch, concatenated)
     * @param routerLogits  (N, E) F32
     * @param expertIds     (N, k), per token in descending logit order (ties to the lower index)
     * @param expertWeights (N, k), softmax over the k chosen logits
     */
    void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights);

    /**
     * Called once per dense ({@link DenseFfn}) layer per forward call, on the calling thread, with the FFN's
     * intermediate activation h = silu(gate_proj(x)) · up_proj(x), the input of down_proj, x = the FFN input after
     * post_attention_layernorm. The default ignores it. The array belongs to the model and is valid only during the
     * call; only its first {@code tokens · width} values are h (it may be longer).
     *
     * @param layer        decoder layer index
     * @param tokens       N, the rows of this call (all sequences of a batch, concatenated)
     * @param width        F, the FFN's intermediate size
     * @param intermediate h (N, F) F32
     */
    default void onDenseIntermediate(int layer, int tokens, int width, float[] intermediate) {}

    /**
     * Called once per decoder layer (dense or sparse) per forward call, on the calling thread, with the FFN's input
     * x = rmsNorm(residual, post_attention_layernorm) (N, d) still on the backend, before the FFN runs. The default does
     * nothing (no transfer); an observer that needs x (CMoE's normalised activation score) overrides it and reads what
     * it needs ({@link Backend#read}) or computes on the backend. The tensor belongs to the model and is valid only during
     * the call; only its first {@code tokens · hidden} values are x; it must not be written.
     *
     * @param layer  decoder layer index
     * @param tokens N, the rows of this call (all sequences of a batch, concatenated)
     * @param hidden d, the hidden size
     * @param input  x (N, d) F32
     */
    default void onFfnInput(Backend backend, int layer, int tokens, int hidden, DeviceTensor input) {}

    /**
     * The model's call, with the routing still on the backend: this default downloads the first {@code tokens} rows
     * (three device → host transfers) and calls {@link #onRouting(int, int, float[], int[], float[])}.
     */
    default void onRouting(Backend backend, int layer, int tokens, int numExperts, int k, DeviceTensor routerLogits,
                           DeviceTensor expertIds, DeviceTensor expertWeights) {
        float[] logits = new float[tokens * numExperts], weights = new float[tokens * k];
        int[] ids = new int[tokens * k];
        backend.read(routerLogits, 0, logits, logits.length);
        backend.read(expertIds, 0, ids, ids.length);
        backend.read(expertWeights, 0, weights, weights.length);
        onRouting(layer, tokens, logits, ids, weights);
    }

    /**
     * The model's call, with h still on the backend: this default downloads h (tokens, width) (a device → host
     * transfer) and calls {@link #onDenseIntermediate(int, int, int, float[])}.
     */
    default void onDenseIntermediate(Backend backend, int layer, int tokens, int width, DeviceTensor intermediate) {
        float[] h = new float[tokens * width];
        backend.read(intermediate, 0, h, h.length);
        onDenseIntermediate(layer, tokens, width, h);
    }
}
