package dive.backend;

import dive.tensor.Tensor;

/**
 * The one boundary between model code and arithmetic. Model, training and DIVE code call these
 * ops and never touch the Vector API, FFM or CUDA. Activations are row-major F32 {@code float[]};
 * weights are {@link Tensor}s (F32, BF16 or F16, accumulated in F32) in PyTorch's Linear layout
 * {@code [out, in]}. Implementations are stateless and safe to call from many threads at once.
 *
 * <p>{@link ScalarBackend} is the plain reference; {@link VectorBackend} is the fast CPU path.
 * {@link Backends#select()} picks one at start-up and logs which.
 */
public interface Backend {

    /** short name for logs: "scalar", "vector", "cuda" */
    String name();

    /**
     * out[m, n] = Σ_k x[m, k] · w[n, k]
     * x (M, K) F32 · w (N, K) → out (M, N). M = 1 is a GEMV (decode), M &gt; 1 a GEMM (prefill).
     */
    void matmul(float[] out, float[] x, int m, Tensor w);

    /**
     * out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight
     * x (rows, d), weight (d) → out (rows, d). out may be x.
     */
    void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps);

    /**
     * Rotary embedding in place, Hugging Face "rotate_half" layout: for pair (i, i + hd/2) of each head,
     * angle = positions[r] · invFreq[i]; (a, b) → (a·cos − b·sin, b·cos + a·sin).
     * x (rows, heads, headDim), positions (rows), invFreq (headDim/2).
     */
    void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq);

    /**
     * Causal grouped-query attention for T new queries of one sequence.
     * q (T, nHeads, hd); kCache, vCache (maxSeq, nKvHeads, hd) hold positions 0 .. startPos+T−1 of this
     * layer; query t sits at position startPos + t and attends to positions 0 .. startPos + t.
     * Query head h reads KV head h / (nHeads / nKvHeads). scores = q·k · scale, softmax in F32.
     * → out (T, nHeads, hd).
     */
    void attention(float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos,
                   int nHeads, int nKvHeads, int headDim, float scale);

    /** out[i] = SiLU(gate[i]) · up[i] = gate[i] / (1 + e^(−gate[i])) · up[i], i &lt; n. out may alias gate. */
    void swiglu(float[] out, float[] gate, float[] up, int n);

    /** in place: x[off .. off+n) ← softmax, max-subtracted, F32 */
    void softmax(float[] x, int off, int n);

    /** out[t, :] = table[ids[t], :]; table (vocab, d) → out (T, d) */
    void embedding(float[] out, Tensor table, int[] ids);

    /** x[i] += y[i], i &lt; n (the residual add) */
    void add(float[] x, float[] y, int n);
}
