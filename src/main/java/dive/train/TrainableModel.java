package dive.train;

import java.util.List;

/**
 * What the optimizer and the trainer need of a model: its parameters, and a loss with gradients.
 * A batch is B token sequences of length T + 1: inputs are tokens [0, T), targets tokens [1, T].
 * The loss is causal-LM cross-entropy, mean over the B·T predicted tokens (nats).
 */
public interface TrainableModel {

    /** the backend its optimizer runs on too (default: the plain loops) */
    default dive.backend.Backend backend() { return new dive.backend.ScalarBackend(); }

    /** every parameter, trainable or frozen, in a fixed order (checkpoints rely on it) */
    List<Parameter> parameters();

    /**
     * Forward and backward on {@code batch} (B, T + 1): returns the mean loss and ADDS
     * {@code gradScale} · ∂loss/∂p into {@code p.grad()} of every trainable parameter
     * (gradient accumulation = several calls before an optimizer step, gradScale = 1 / micro-batches).
     */
    double lossAndGradients(int[][] batch, float gradScale);

    /** the mean loss on {@code batch} without gradients (evaluation) */
    double loss(int[][] batch);

    /**
     * Called on resume with the number of {@link #lossAndGradients} calls the checkpointed run had made, so a
     * model whose randomness follows that count (LoRA dropout masks) continues the same stream.
     */
    default void restoreTrainingCalls(long calls) {}

    /**
     * An MoE model: top-k assignments per expert in its last forward ({@link #loss} or {@link #lossAndGradients}),
     * summed over its MoE layers → (E); null for a dense model or before the first forward
     */
    default long[] lastExpertCounts() { return null; }
}
