package dive.backend;

import dive.tensor.Tensor;

/**
 * The one boundary between model code and arithmetic. Model, training and DIVE code call these ops and never touch
 * the Vector API, FFM or CUDA. Activations, gradients, KV caches, routing tables and optimizer moments are
 * {@link DeviceTensor}s the backend allocates and keeps where it computes (row-major; shapes are op arguments);
 * weights are {@link Tensor}s (F32, BF16 or F16, accumulated in F32) in PyTorch's Linear layout {@code [out, in]},
 * read where the checkpoint mapped them and, on a GPU, uploaded once. Host values cross only through the counted edge
 * transfers ({@link #upload}, {@link #write}, {@link #read}, {@link #download}, scalar results such as a loss):
 * token ids in; logits, losses and statistics out ({@link #transfers()}).
 *
 * <p>{@link CpuBackend} holds the CPU side: its array kernels are the reference definition of every op
 * ({@link ScalarBackend} the plain loops, {@link VectorBackend} the fast path); {@link CudaBackend} is the GPU.
 * A caller chooses one ({@link Backends#create(String, String, int)}) and passes it on. Ops on different tensors are
 * safe to call from many threads at once; one tensor belongs to one call chain.
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

    /** {@link CpuBackend#matmul(float[], float[], int, Tensor)}: x (m, K) · w (N, K)ᵀ → out (m, N) */
    void matmul(DeviceTensor out, DeviceTensor x, int m, Tensor w);

    /** {@link CpuBackend#rmsNorm(float[], float[], Tensor, int, float)}; out may be x */
    void rmsNorm(DeviceTensor out, DeviceTensor x, Tensor weight, int rows, float eps);

    /** {@link CpuBackend#rope(float[], int, int, int, int[], float[])}: positions I32 (rows), invFreq F32 (headDim / 2) */
    void rope(DeviceTensor x, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq);

    /** {@link CpuBackend#attention(float[], float[], float[], float[], int, int, int, int, int, float)} */
    void attention(DeviceTensor out, DeviceTensor q, DeviceTensor kCache, DeviceTensor vCache, int T, int startPos,
                   int nHeads, int nKvHeads, int headDim, float scale);

    /** {@link CpuBackend#swiglu(float[], float[], float[], int)}; out may alias gate */
    void swiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, int n);

    /** {@link CpuBackend#embedding(float[], Tensor, int[])}: ids I32 (T) */
    void embedding(DeviceTensor out, Tensor table, DeviceTensor ids, int T);

    /** {@link CpuBackend#add(float[], float[], int)} */
    void add(DeviceTensor x, DeviceTensor y, int n);

    /** {@link CpuBackend#softmax(float[], int, int)} of every row: x (rows, n) in place */
    void softmax(DeviceTensor x, int rows, int n);

    /** y[r, j] += bias[j] for r &lt; rows, j &lt; bias.numel() (a Linear layer's bias) */
    void addBias(DeviceTensor y, int rows, Tensor bias);

    /** x[i] ·= a, i &lt; n */
    void scale(DeviceTensor x, float a, int n);

    /** {@link CpuBackend#matmulBackwardInput(float[], float[], int, Tensor)} */
    void matmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, int m, Tensor w);

    /** {@link CpuBackend#matmulBackwardWeight(float[], float[], float[], int, int, int)}, accumulated into dw */
    void matmulBackwardWeight(DeviceTensor dw, DeviceTensor dOut, DeviceTensor x, int m, int n, int k);

    /** {@link CpuBackend#rmsNormBackward(float[], float[], float[], float[], Tensor, int, float)}; dWeight may be null */
    void rmsNormBackward(DeviceTensor dx, DeviceTensor dWeight, DeviceTensor dOut, DeviceTensor x, Tensor weight, int rows, float eps);

    /** {@link CpuBackend#ropeBackward(float[], int, int, int, int[], float[])} */
    void ropeBackward(DeviceTensor dx, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq);

    /** {@link CpuBackend#attentionBackward(float[], float[], float[], float[], float[], float[], float[], int, int, int, int, int, float)} */
    void attentionBackward(DeviceTensor dq, DeviceTensor dk, DeviceTensor dv, DeviceTensor dOut, DeviceTensor q, DeviceTensor k,
                           DeviceTensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale);

    /** {@link CpuBackend#swigluBackward(float[], float[], float[], float[], float[], int)} */
    void swigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up, int n);

    /** {@link CpuBackend#embeddingBackward(float[], float[], int[], int)}: ids I32 (T) */
    void embeddingBackward(DeviceTensor dTable, DeviceTensor dOut, DeviceTensor ids, int T, int d);

    /**
     * {@link CpuBackend#crossEntropy(float[], float[], int[], int, int, float)}: targets I32 (rows); the mean loss comes back to
     * the host (a device → host transfer of one value)
     */
    double crossEntropy(DeviceTensor dLogits, DeviceTensor logits, DeviceTensor targets, int rows, int vocab, float gradScale);

    /** {@link CpuBackend#addScaled(float[], float[], float, int)} */
    void addScaled(DeviceTensor x, DeviceTensor y, float a, int n);

    /**
     * sum[0] += Σ_{i &lt; n} (double) x[i]², accumulated in double from sum[0] in index order; sum F64 (1) stays on the
     * device (a global gradient norm: one accumulator over many tensors, one value read at the end)
     */
    void sumOfSquares(DeviceTensor sum, DeviceTensor x, int n);

    /** index of the first NaN or infinite element of x[0 .. n), or −1 (one value comes back to the host) */
    long firstNonFinite(DeviceTensor x, long n);

    /** {@link CpuBackend#routeTopK(int[], float[], float[], int, int, int)}: expertIds I32, expertWeights F32 (n, k) */
    void routeTopK(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts, int k);

    /** {@link CpuBackend#sortByExpert(int[], int[], int[], int[], int, int, int)}, all I32 */
    void sortByExpert(DeviceTensor offsets, DeviceTensor rowToken, DeviceTensor slotRow, DeviceTensor expertIds, int n, int k, int numExperts);

    /** {@link CpuBackend#gather(float[], float[], int[], int, int)}: rows I32 (count) */
    void gather(DeviceTensor out, DeviceTensor x, DeviceTensor rows, int count, int width);

    /** out[r, c] = x[r, cols[c]] for r &lt; rows, c &lt; count: x (rows, width), cols I32 (count) → out (rows, count) */
    void gatherColumns(DeviceTensor out, DeviceTensor x, DeviceTensor cols, int rows, int width, int count);

    /** {@link CpuBackend#groupedMatmul(float[], float[], int[], Tensor[], Tensor[])}: offsets I32 (E + 1) */
    void groupedMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w, Tensor[] bias);

    /** {@link CpuBackend#groupedMatmul2(float[], float[], float[], int[], int[], Tensor[], Tensor[])}: xRows, offsets I32 */
    void groupedMatmul2(DeviceTensor outGate, DeviceTensor outUp, DeviceTensor x, DeviceTensor xRows, DeviceTensor offsets,
                        Tensor[] wGate, Tensor[] wUp);

    /** {@link CpuBackend#combineExperts(float[], float[], int[], float[], int, int, int)}: slotRow I32 (n, k) */
    void combineExperts(DeviceTensor y, DeviceTensor expertOut, DeviceTensor slotRow, DeviceTensor expertWeights, int n, int k, int d);

    /** {@link CpuBackend#combineExpertsBackward(float[], float[], float[], float[], int[], float[], int, int, int)} */
    void combineExpertsBackward(DeviceTensor dExpertOut, DeviceTensor dWeights, DeviceTensor dy, DeviceTensor expertOut,
                                DeviceTensor slotRow, DeviceTensor expertWeights, int n, int k, int d);

    /** {@link CpuBackend#scatterAddRows(float[], float[], int[], int, int)}: rows I32 (count) */
    void scatterAddRows(DeviceTensor x, DeviceTensor src, DeviceTensor rows, int count, int width);

    /**
     * One AdamW update ({@link CpuBackend#adamW(java.lang.foreign.MemorySegment, float[], float[], float[], int, AdamWStep)}) of a
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

    /**
     * {@link #dropout} of one linear of every expert, drawing as a loop over the experts does (expert by expert, each
     * expert's linears one after another): element c &lt; width of the i-th row of expert e (permuted row
     * offsets[e] + i, with count_e rows) takes draw firstDraw + offsets[e]·stride + count_e·prefix + i·width + c, where
     * {@code stride} is the draws per row of all of an expert's dropping linears and {@code prefix} those of the linears
     * before this one. x, mask, xDropped (R, width); offsets I32 (E + 1).
     */
    void expertDropout(DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, DeviceTensor offsets, int numExperts, int width,
                       long seed, long firstDraw, int stride, int prefix, double p);

    /** {@link #swiglu} over each expert's rows of width {@code width} (values as one call per expert; out may alias gate) */
    void expertSwiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, DeviceTensor offsets, int numExperts, int width);

    /** {@link #swigluBackward} over each expert's rows of width {@code width} (values as one call per expert) */
    void expertSwigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up,
                              DeviceTensor offsets, int numExperts, int width);

    /** per expert: out[rows of e, :] += bias[e] (d) for every e with a bias */
    void expertAddBias(DeviceTensor out, DeviceTensor offsets, Tensor[] bias, int d);

    /** per expert {@link #biasBackward}: db[e] += Σ over the rows of e of dy (d), for every e with db[e] not null */
    void expertBiasBackward(DeviceTensor[] db, DeviceTensor dy, DeviceTensor offsets, int d);

    // ---------------------------------------------------------------- gated branches (Qwen2-MoE's shared expert)

    /**
     * out[r, j] += σ(gate[r]) · x[r, j] for r &lt; rows, j &lt; width, with σ(g) = 1 / (1 + e^(−g)) in F32
     * ({@link CpuBackend#sigmoidGatedAdd(float[], float[], float[], int, int)}): a branch scaled per row by a sigmoid
     * gate, as Qwen2-MoE adds its shared expert. gate F32 (rows), x (rows, width) → out (rows, width). This default goes
     * through the host (counted transfers) so every backend has it; the CPU backends compute in place.
     */
    default void sigmoidGatedAdd(DeviceTensor out, DeviceTensor x, DeviceTensor gate, int rows, int width) {
        int n = Math.multiplyExact(rows, width);
        float[] o = new float[n], xs = new float[n], g = new float[rows];
        read(out, 0, o, n);
        read(x, 0, xs, n);
        read(gate, 0, g, rows);
        CpuBackend.sigmoidGatedAdd(o, xs, g, rows, width);
        write(out, 0, o, n);
    }

    /**
     * Gradient of {@link #sigmoidGatedAdd} ({@link CpuBackend#sigmoidGatedAddBackward}): dx[r, j] = σ(gate[r]) · dOut[r, j]
     * and dGate[r] = σ'(gate[r]) · Σ_j dOut[r, j] · x[r, j] (summed in double, in j order), both overwritten. This
     * default goes through the host; the CPU backends compute in place.
     */
    default void sigmoidGatedAddBackward(DeviceTensor dx, DeviceTensor dGate, DeviceTensor dOut, DeviceTensor x, DeviceTensor gate,
                                         int rows, int width) {
        int n = Math.multiplyExact(rows, width);
        float[] dxs = new float[n], dg = new float[rows], d = new float[n], xs = new float[n], g = new float[rows];
        read(dOut, 0, d, n);
        read(x, 0, xs, n);
        read(gate, 0, g, rows);
        CpuBackend.sigmoidGatedAddBackward(dxs, dg, d, xs, g, rows, width);
        write(dx, 0, dxs, n);
        write(dGate, 0, dg, rows);
    }

    /** the target id that {@link #crossEntropy} skips */
    int IGNORE_INDEX = -100;

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

}
