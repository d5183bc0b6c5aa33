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
