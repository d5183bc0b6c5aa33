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

    /** true for the CPU backends, whose device memory is the host's: their tensors work with one another */
    default boolean isCpu() { return this instanceof CpuBackend; }

    // ================================================================ memory and edge transfers
    // Activations, gradients, KV caches, routing tables and optimizer moments are DeviceTensors this backend allocates
    // and every op below reads and writes; weights are Tensors (checkpoint memory, uploaded once where the backend
    // computes elsewhere). Host values cross only through the counted transfers of this section.

    /** a new tensor of n elements of {@code dtype} (F32, I32 or F64), zeros */
    DeviceTensor allocate(dive.tensor.DType dtype, long n);

    /** a new F32 tensor holding {@code values} (a host → device transfer) */
    DeviceTensor upload(float[] values);

    /** a new I32 tensor holding {@code values} (a host → device transfer) */
    DeviceTensor upload(int[] values);

    /** dst[dstOff .. dstOff+n) ← values[0 .. n) (a host → device transfer) */
    void write(DeviceTensor dst, long dstOff, float[] values, int n);

    /** dst[dstOff .. dstOff+n) ← values[0 .. n) (a host → device transfer) */
    void write(DeviceTensor dst, long dstOff, int[] values, int n);

    /** dst[0 .. n) ← src[srcOff .. srcOff+n) of an F32 tensor (a device → host transfer) */
    void read(DeviceTensor src, long srcOff, float[] dst, int n);

    /** dst[0 .. n) ← src[srcOff .. srcOff+n) of an I32 tensor (a device → host transfer) */
    void read(DeviceTensor src, long srcOff, int[] dst, int n);

    /** dst[0 .. n) ← src[srcOff .. srcOff+n) of an F64 tensor (a device → host transfer) */
    void read(DeviceTensor src, long srcOff, double[] dst, int n);

    /** the whole F32 tensor on the host (a device → host transfer) */
    default float[] download(DeviceTensor src) {
        float[] out = new float[Math.toIntExact(src.size())];
        read(src, 0, out, out.length);
        return out;
    }

    /** the whole I32 tensor on the host (a device → host transfer) */
    default int[] downloadInts(DeviceTensor src) {
        int[] out = new int[Math.toIntExact(src.size())];
        read(src, 0, out, out.length);
        return out;
    }

    /** the host↔device transfers made through this backend so far */
    Transfers transfers();

    /** dst[dstOff .. dstOff+n) ← src[srcOff .. srcOff+n), same dtype, on the device (no transfer) */
    void copy(DeviceTensor dst, long dstOff, DeviceTensor src, long srcOff, long n);

    /** x[off .. off+n) ← 0 */
    void zero(DeviceTensor x, long off, long n);

    /**
     * A trainable weight's host memory is brought up to date with what the ops wrote to it on the device (the
     * optimizer): call before reading or saving it on the host. A device → host transfer where the backend computes
     * elsewhere; the CPU backends compute in place (counted all the same).
     */
    void readBack(Tensor weight);

    /** the host memory of {@code weight} changed (a restored checkpoint, a merge): the next op reads it afresh */
    void weightChanged(Tensor weight);

    // ================================================================ ops on device tensors
    // Each is the float[] op of the same name further down, on this backend's tensors. Integer arguments are sizes;
    // offsets into tensors are explicit copies (copy) so every kernel reads whole tensors from element 0.

    /** {@link #matmul(float[], float[], int, Tensor)}: x (m, K) · w (N, K)ᵀ → out (m, N) */
    void matmul(DeviceTensor out, DeviceTensor x, int m, Tensor w);

    /** {@link #rmsNorm(float[], float[], Tensor, int, float)}; out may be x */
    void rmsNorm(DeviceTensor out, DeviceTensor x, Tensor weight, int rows, float eps);

    /** {@link #rope(float[], int, int, int, int[], float[])}: positions I32 (rows), invFreq F32 (headDim / 2) */
    void rope(DeviceTensor x, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq);

    /** {@link #attention(float[], float[], float[], float[], int, int, int, int, int, float)} */
    void attention(DeviceTensor out, DeviceTensor q, DeviceTensor kCache, DeviceTensor vCache, int T, int startPos,
                   int nHeads, int nKvHeads, int headDim, float scale);

    /** {@link #swiglu(float[], float[], float[], int)}; out may alias gate */
    void swiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, int n);

    /** {@link #embedding(float[], Tensor, int[])}: ids I32 (T) */
    void embedding(DeviceTensor out, Tensor table, DeviceTensor ids, int T);

    /** {@link #add(float[], float[], int)} */
    void add(DeviceTensor x, DeviceTensor y, int n);

    /** {@link #softmax(float[], int, int)} of every row: x (rows, n) in place */
    void softmax(DeviceTensor x, int rows, int n);

    /** y[r, j] += bias[j] for r &lt; rows, j &lt; bias.numel() (a Linear layer's bias) */
    void addBias(DeviceTensor y, int rows, Tensor bias);

    /** x[i] ·= a, i &lt; n */
    void scale(DeviceTensor x, float a, int n);

    /** {@link #matmulBackwardInput(float[], float[], int, Tensor)} */
    void matmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, int m, Tensor w);

    /** {@link #matmulBackwardWeight(float[], float[], float[], int, int, int)}, accumulated into dw */
    void matmulBackwardWeight(DeviceTensor dw, DeviceTensor dOut, DeviceTensor x, int m, int n, int k);

    /** {@link #rmsNormBackward(float[], float[], float[], float[], Tensor, int, float)}; dWeight may be null */
    void rmsNormBackward(DeviceTensor dx, DeviceTensor dWeight, DeviceTensor dOut, DeviceTensor x, Tensor weight, int rows, float eps);

    /** {@link #ropeBackward(float[], int, int, int, int[], float[])} */
    void ropeBackward(DeviceTensor dx, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq);

    /** {@link #attentionBackward(float[], float[], float[], float[], float[], float[], float[], int, int, int, int, int, float)} */
    void attentionBackward(DeviceTensor dq, DeviceTensor dk, DeviceTensor dv, DeviceTensor dOut, DeviceTensor q, DeviceTensor k,
                           DeviceTensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale);

    /** {@link #swigluBackward(float[], float[], float[], float[], float[], int)} */
    void swigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up, int n);

    /** {@link #embeddingBackward(float[], float[], int[], int)}: ids I32 (T) */
    void embeddingBackward(DeviceTensor dTable, DeviceTensor dOut, DeviceTensor ids, int T, int d);

    /**
     * {@link #crossEntropy(float[], float[], int[], int, int, float)}: targets I32 (rows); the mean loss comes back to
     * the host (a device → host transfer of one value)
     */
    double crossEntropy(DeviceTensor dLogits, DeviceTensor logits, DeviceTensor targets, int rows, int vocab, float gradScale);

    /** {@link #addScaled(float[], float[], float, int)} */
    void addScaled(DeviceTensor x, DeviceTensor y, float a, int n);

    /**
     * sum[0] += Σ_{i &lt; n} (double) x[i]², accumulated in double from sum[0] in index order; sum F64 (1) stays on the
     * device (a global gradient norm: one accumulator over many tensors, one value read at the end)
     */
    void sumOfSquares(DeviceTensor sum, DeviceTensor x, int n);

    /** index of the first NaN or infinite element of x[0 .. n), or −1 (one value comes back to the host) */
    long firstNonFinite(DeviceTensor x, long n);

    /** {@link #routeTopK(int[], float[], float[], int, int, int)}: expertIds I32, expertWeights F32 (n, k) */
    void routeTopK(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts, int k);

    /** {@link #sortByExpert(int[], int[], int[], int[], int, int, int)}, all I32 */
    void sortByExpert(DeviceTensor offsets, DeviceTensor rowToken, DeviceTensor slotRow, DeviceTensor expertIds, int n, int k, int numExperts);

    /** {@link #gather(float[], float[], int[], int, int)}: rows I32 (count) */
    void gather(DeviceTensor out, DeviceTensor x, DeviceTensor rows, int count, int width);

    /** {@link #groupedMatmul(float[], float[], int[], Tensor[], Tensor[])}: offsets I32 (E + 1) */
    void groupedMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w, Tensor[] bias);

    /** {@link #groupedMatmul2(float[], float[], float[], int[], int[], Tensor[], Tensor[])}: xRows, offsets I32 */
    void groupedMatmul2(DeviceTensor outGate, DeviceTensor outUp, DeviceTensor x, DeviceTensor xRows, DeviceTensor offsets,
                        Tensor[] wGate, Tensor[] wUp);

    /** {@link #combineExperts(float[], float[], int[], float[], int, int, int)}: slotRow I32 (n, k) */
    void combineExperts(DeviceTensor y, DeviceTensor expertOut, DeviceTensor slotRow, DeviceTensor expertWeights, int n, int k, int d);

    /** {@link #combineExpertsBackward(float[], float[], float[], float[], int[], float[], int, int, int)} */
    void combineExpertsBackward(DeviceTensor dExpertOut, DeviceTensor dWeights, DeviceTensor dy, DeviceTensor expertOut,
                                DeviceTensor slotRow, DeviceTensor expertWeights, int n, int k, int d);

    /** {@link #scatterAddRows(float[], float[], int[], int, int)}: rows I32 (count) */
    void scatterAddRows(DeviceTensor x, DeviceTensor src, DeviceTensor rows, int count, int width);

    /**
     * One AdamW update ({@link #adamW(java.lang.foreign.MemorySegment, float[], float[], float[], int, AdamWStep)}) of a
     * trainable F32 weight: where the backend computes elsewhere its copy there is updated ({@link #readBack} brings the
     * host memory up to date). grad, m, v F32 (n); m and v updated in place.
     */
    void adamW(Tensor param, DeviceTensor grad, DeviceTensor m, DeviceTensor v, int n, AdamWStep step);

    /**
     * Per-channel statistics of an activation h (rows, width), merged into running ones (DIVE's calibration): the
     * batch's mean, M2 = Σ (h − mean)² and Σ h² in double (sums in row order), merged by Chan et al.'s update
     * n = nA + nB, δ = meanB − meanA, mean = meanA + δ·nB/n, M2 = M2A + M2B + δ²·(nA·nB/n), Σh² += Σh²B. mean, m2,
     * sumSquares F64 (width), holding the statistics of {@code countBefore} rows; updated in place.
     */
    void channelStatistics(DeviceTensor mean, DeviceTensor m2, DeviceTensor sumSquares, long countBefore, DeviceTensor h, int rows, int width);

    // ---------------------------------------------------------------- training on device tensors

    /** x[i] ·= y[i], i &lt; n (a dropout mask) */
    void multiply(DeviceTensor x, DeviceTensor y, int n);

    /** db[j] += Σ_r dy[r, j] in row order, r &lt; rows, j &lt; width (a Linear bias's gradient) */
    void biasBackward(DeviceTensor db, DeviceTensor dy, int rows, int width);

    /**
     * Inverted dropout with the draws of {@link java.util.SplittableRandom}{@code (seed)} numbered from {@code firstDraw}:
     * draw i is u_i = (mix64(seed + (i + 1)·γ) &gt;&gt;&gt; 11) · 2⁻⁵³ with γ = 0x9E3779B97F4A7C15 and SplittableRandom's
     * mix64; mask[j] = 0 if u_{firstDraw + j} &lt; p else 1/(1 − p) (as F32), xDropped[j] = x[j] · mask[j], j &lt; n.
     * Counter-based, so a device computes every element on its own and the host keeps only the draw count.
     */
    void dropout(DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, int n, long seed, long firstDraw, double p);

    /**
     * Soft routing over all E experts: expertIds[t, j] = j; expertWeights[t, :] = softmax(routerLogits[t, :] ·
     * invTemperature) (the product rounded to F32, then {@link #softmax}). All (n, E).
     */
    void softRouting(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts, float invTemperature);

    /** counts[countsOff + id] += 1 for every id of expertIds[0 .. assignments) (I32) */
    void countExperts(DeviceTensor counts, long countsOff, DeviceTensor expertIds, int assignments);

    /**
     * Gradient of the routing weights' softmax onto the router logits, accumulated: per token t, with
     * mean = Σ_s (double) w[t, s]·dw[t, s], dLogits[t, ids[t, s]] += (float) (w[t, s]·(dw[t, s] − mean)·invTemperature).
     * weights, dWeights F32 (n, slots), expertIds I32 (n, slots) → dLogits (n, E).
     */
    void routingBackward(DeviceTensor dLogits, DeviceTensor weights, DeviceTensor dWeights, DeviceTensor expertIds,
                         int n, int slots, int numExperts, double invTemperature);

    /**
     * Per-expert {@link #matmul} over row ranges exactly as a loop of matmul calls on each expert's rows: for every
     * expert e with rows, out[offsets[e] .. offsets[e+1]) = x[those rows] · w[e]ᵀ. x (R, K), w[e] (N, K) → out (R, N).
     * (Training's twin of {@link #groupedMatmul}: the same numbers as the dense ops it replaces.)
     */
    void expertMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w);

    /** per expert {@link #matmulBackwardInput}: dx[rows of e] = dOut[rows of e] · w[e], overwritten; dOut (R, N) → dx (R, K) */
    void expertMatmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, DeviceTensor offsets, Tensor[] w);

    /**
     * per expert {@link #matmulBackwardWeight}, accumulated: dw[e] += dOut[rows of e]ᵀ · x[rows of e] for every e with
     * dw[e] not null and rows. dOut (R, n), x (R, k) → dw[e] (n, k).
     */
    void expertMatmulBackwardWeight(DeviceTensor[] dw, DeviceTensor dOut, DeviceTensor x, DeviceTensor offsets, int n, int k);

    /** per expert: out[rows of e, :] += bias[e] (d) for every e with a bias */
    void expertAddBias(DeviceTensor out, DeviceTensor offsets, Tensor[] bias, int d);

    /** per expert {@link #biasBackward}: db[e] += Σ over the rows of e of dy (d), for every e with db[e] not null */
    void expertBiasBackward(DeviceTensor[] db, DeviceTensor dy, DeviceTensor offsets, int d);

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

    // ---------------------------------------------------------------- training: backward passes
    // Convention: gradients of inputs (dx, dq, ...) are OVERWRITTEN; gradients of weights (dw, dWeight,
    // dTable) are ACCUMULATED (+=), so micro-batches and tied weights add up in one float[].

    /**
     * Gradient of {@link #matmul} with respect to its input: dx[m, k] = Σ_n dOut[m, n] · w[n, k].
     * dOut (M, N), w (N, K) → dx (M, K), overwritten.
     */
    void matmulBackwardInput(float[] dx, float[] dOut, int m, Tensor w);

    /**
     * Gradient of {@link #matmul} with respect to its weight, accumulated: dw[n, k] += Σ_m dOut[m, n] · x[m, k].
     * dOut (M, N), x (M, K) → dw (N, K).
     */
    void matmulBackwardWeight(float[] dw, float[] dOut, float[] x, int m, int n, int k);

    /**
     * Gradient of {@link #rmsNorm}: with inv = 1/sqrt(mean(x²) + eps) per row and g = weight,
     * dx[r, i] = inv·g[i]·dOut[r, i] − inv³/d · x[r, i] · Σ_j g[j]·dOut[r, j]·x[r, j]   (overwritten);
     * dWeight[i] += Σ_r dOut[r, i]·x[r, i]·inv_r (skipped when dWeight is null).
     * x, dOut (rows, d) → dx (rows, d); dx may be dOut.
     */
    void rmsNormBackward(float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps);

    /**
     * Gradient of {@link #rope} in place: the rotation is orthogonal, so its gradient is the inverse
     * rotation, (da, db) → (da·cos + db·sin, db·cos − da·sin). dx (rows, heads, headDim).
     */
    void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq);

    /**
     * Gradient of causal grouped-query attention over B independent sequences of T positions, each starting
     * at position 0 (training): probabilities are recomputed from q and k (nothing saved but q, k, v).
     * With p = softmax(scale·q·kᵀ) (causal), dP = dOut·vᵀ, dS = p ⊙ (dP − Σ_s p·dP):
     * dq = scale·dS·k, dk = scale·dSᵀ·q, dv = pᵀ·dOut (summed over the query heads sharing a KV head).
     * q, dOut (B, T, nHeads, hd); k, v (B, T, nKvHeads, hd) → dq (B, T, nHeads, hd), dk, dv (B, T, nKvHeads, hd),
     * all overwritten.
     */
    void attentionBackward(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                           int B, int T, int nHeads, int nKvHeads, int headDim, float scale);

    /**
     * Gradient of {@link #swiglu}: with σ = 1/(1 + e^(−gate)), dGate = dOut·up·σ·(1 + gate·(1 − σ)),
     * dUp = dOut·gate·σ. All (n), overwritten; dGate and dUp must not alias gate, up or dOut.
     */
    void swigluBackward(float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n);

    /**
     * Gradient of {@link #embedding}, accumulated: dTable[ids[t], :] += dOut[t, :] in order t = 0, 1, ...
     * dOut (T, d), ids (T) → dTable (vocab, d).
     */
    void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d);

    /**
     * Fused softmax cross-entropy, softmax in F32 after subtracting the row maximum. Rows with
     * targets[r] == {@value #IGNORE_INDEX} are ignored (as PyTorch's ignore_index). Returns the mean over the
     * counted rows of −log softmax(logits[r])[targets[r]] (NaN when every row is ignored). When dLogits is not
     * null it receives gradScale · ∂mean/∂logits = gradScale·(softmax − onehot)/count (zeros on ignored rows).
     * logits (rows, vocab), targets (rows) → dLogits (rows, vocab); dLogits may be logits.
     */
    double crossEntropy(float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale);

    /** the target id that {@link #crossEntropy} skips */
    int IGNORE_INDEX = -100;

    /** x[i] += a · y[i], i &lt; n */
    void addScaled(float[] x, float[] y, float a, int n);

    // ================================================================ Mixture of Experts
    // The MoE layer as vLLM / MegaBlocks run it: router matmul → routeTopK → sortByExpert (histogram,
    // prefix sum, stable permutation) → gather → groupedMatmul (gate, up) → swiglu → groupedMatmul (down)
    // → combineExperts (weighted, fixed-order sum per token: no atomics, so results are deterministic).
    // "Rows" below are the N·k (token, slot) assignments, permuted so that each expert's rows are contiguous.

    /**
     * Top-k routing. routerLogits (N, E) F32 → expertIds (N, k): per token the k largest logits in
     * descending order, ties to the lower expert index; expertWeights (N, k): softmax over those k logits
     * (max-subtracted, F32), which equals Mixtral's softmax over all E followed by renormalising the top k.
     * A NaN logit propagates into the weights (never silently dropped).
     */
    void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k);

    /**
     * Expert histogram, prefix sum and permutation (a counting sort, stable): expertIds (N, k) →
     * offsets (E + 1): expert e owns permuted rows [offsets[e], offsets[e+1]), offsets[E] = N·k;
     * rowToken (N·k): the token of each permuted row, in token order within an expert;
     * slotRow (N, k): the permuted row of (token, slot). Integer bookkeeping, the same on every backend.
     *
     * @throws IllegalArgumentException naming the token and slot whose expert id is outside [0, E)
     */
    default void sortByExpert(int[] offsets, int[] rowToken, int[] slotRow, int[] expertIds, int n, int k, int numExperts) {
        java.util.Arrays.fill(offsets, 0, numExperts + 1, 0);
        for (int i = 0; i < n * k; i++) {
            int e = expertIds[i];
            if (e < 0 || e >= numExperts)
                throw new IllegalArgumentException("sortByExpert: token " + i / k + " slot " + i % k + " has expert id " + e
                        + ", expected 0 ≤ id < " + numExperts);
            offsets[e + 1]++;
        }
        for (int e = 0; e < numExperts; e++) offsets[e + 1] += offsets[e];
        int[] next = java.util.Arrays.copyOf(offsets, numExperts);
        for (int i = 0; i < n * k; i++) { // (token, slot) in order: stable
            int row = next[expertIds[i]]++;
            rowToken[row] = i / k;
            slotRow[i] = row;
        }
    }

    /** out[r, :] = x[rows[r], :] for r &lt; count; x (·, width) → out (count, width) */
    void gather(float[] out, float[] x, int[] rows, int count, int width);

    /**
     * Grouped matmul over experts' row ranges: for every expert e and r in [offsets[e], offsets[e+1]),
     * out[r, :] = x[r, :] · w[e]ᵀ (+ bias[e]). x (R, K) F32 with R = offsets[E]; w[e] (N, K) F32/BF16/F16,
     * the same shape for all e; bias null, or per expert null or (N); → out (R, N). Experts without rows are
     * skipped (their weights are not read).
     */
    void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias);

    /**
     * The MoE layer's two input matmuls, reading the permuted rows through a row map: for every expert e and permuted
     * row r in [offsets[e], offsets[e+1]), outGate[r, :] = x[xRows[r], :] · wGate[e]ᵀ and outUp[r, :] = x[xRows[r], :] ·
     * wUp[e]ᵀ (no bias). x (·, K), xRows (R) (the rowToken of {@link #sortByExpert}), wGate[e] and wUp[e] (N, K) of one
     * shape → outGate, outUp (R, N). Equals {@link #gather} followed by two {@link #groupedMatmul} calls (this default);
     * a backend may read x's rows in place and share one parallel loop between the two.
     */
    default void groupedMatmul2(float[] outGate, float[] outUp, float[] x, int[] xRows, int[] offsets, Tensor[] wGate, Tensor[] wUp) {
        MoeChecks.groupedMatmul2(outGate, outUp, x, xRows, offsets, wGate, wUp);
        int rows = offsets[wGate.length], k = wGate[0].cols();
        float[] xs = new float[rows * k];
        gather(xs, x, xRows, rows, k);
        groupedMatmul(outGate, xs, offsets, wGate, null);
        groupedMatmul(outUp, xs, offsets, wUp, null);
    }

    /**
     * Weighted un-permute and sum: y[t, :] = Σ_{s = 0 .. k−1} expertWeights[t, s] · expertOut[slotRow[t, s], :],
     * summed in slot order (a fixed order per token, no atomics). expertOut (N·k, d), slotRow (N, k),
     * expertWeights (N, k) → y (N, d), overwritten.
     */
    void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d);

    // ---------------------------------------------------------------- Mixture of Experts: training

    /**
     * Gradient of {@link #combineExperts}: for every token t and slot s, with r = slotRow[t, s],
     * dExpertOut[r, :] = expertWeights[t, s] · dy[t, :] and dWeights[t, s] = Σ_i dy[t, i] · expertOut[r, i].
     * dy (N, d), expertOut (N·k, d), slotRow, expertWeights (N, k) → dExpertOut (N·k, d), dWeights (N, k), both
     * overwritten (slotRow is a permutation, so every row of dExpertOut is written once).
     */
    void combineExpertsBackward(float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                float[] expertWeights, int n, int k, int d);

    /**
     * Gradient of {@link #gather}, accumulated: x[rows[r], :] += src[r, :] for r = 0, 1, ..., count − 1 in that order
     * (a fixed order per destination row: deterministic). src (count, width) → x (·, width).
     */
    void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width);

    // ---------------------------------------------------------------- optimiser

    /**
     * The per-step scalars of one AdamW update, each rounded to F32 once (torch's single-tensor AdamW in F32):
     * {@code decayFactor} = 1 − lr·λ (applied when {@code decay}), {@code stepSize} = lr / (1 − β1^t),
     * {@code sqrtBiasCorrection2} = √(1 − β2^t).
     */
    record AdamWStep(boolean decay, float decayFactor, float stepSize, float sqrtBiasCorrection2, float oneMinusBeta1,
                     float beta2, float oneMinusBeta2, float eps) {

        /** the sizes {@link #adamW} needs, or an error naming them */
        public void check(java.lang.foreign.MemorySegment param, float[] grad, float[] m, float[] v, int n) {
            if (param.byteSize() < 4L * n || grad.length < n || m.length < n || v.length < n)
                throw new IllegalArgumentException("adamW: " + n + " elements, but param has " + param.byteSize() / 4 + ", grad " + grad.length
                        + ", m " + m.length + ", v " + v.length);
        }

        /** the plain loop over elements [from, to): the reference roundings */
        public void applyPlain(java.lang.foreign.MemorySegment param, float[] grad, float[] m, float[] v, int from, int to) {
            for (int i = from; i < to; i++) {
                float p = param.getAtIndex(Tensor.F32, i);
                if (decay) p *= decayFactor;
                float g = grad[i];
                m[i] = m[i] + oneMinusBeta1 * (g - m[i]);                 // torch: exp_avg.lerp_(grad, 1 - beta1)
                v[i] = v[i] * beta2 + oneMinusBeta2 * g * g;              // torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
                float denom = (float) Math.sqrt(v[i]) / sqrtBiasCorrection2 + eps;
                p -= stepSize * (m[i] / denom);
                param.setAtIndex(Tensor.F32, i, p);
            }
        }
    }

    /**
     * One AdamW update of n F32 elements, each on its own with every product, quotient and sum rounded separately (no
     * fused multiply-add), so every backend gives the same bits: p ← p·decayFactor (if decay); m ← m + (1−β1)(g − m);
     * v ← v·β2 + (1−β2)·g·g; p ← p − stepSize · m / (√v / sqrtBiasCorrection2 + ε). {@code param} is F32 memory (n
     * floats); m and v are updated in place. This default is the plain loop.
     */
    default void adamW(java.lang.foreign.MemorySegment param, float[] grad, float[] m, float[] v, int n, AdamWStep s) {
        s.check(param, grad, m, v, n);
        s.applyPlain(param, grad, m, v, 0, n);
    }
}
