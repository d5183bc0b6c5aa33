package dive.model;

/**
 * Sees how each sparse-MoE layer routed the tokens of one forward call (routing statistics, load balance,
 * DIVE's analysis) and, optionally, each dense FFN's intermediate activation (DIVE's calibration statistics).
 * Passed per call; when absent (null) the model does no extra work.
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
}
