package dive.cuda;

import dive.bindings.dive_h;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dive.cuda.CudaException.check;

/**
 * Typed launchers for the kernels of dive.h on one {@link CudaDevice}'s stream: device pointers are
 * {@link DeviceBuffer}s ({@link DeviceBuffer#NULL} for an optional one left out), a failed launch is a
 * {@link CudaException} naming the kernel and its sizes. Asynchronous like the kernels; shapes as in dive.h.
 */
public final class CudaKernels {
    private final CudaDevice device;

    CudaKernels(CudaDevice device) { this.device = device; }

    private MemorySegment s() { return device.stream(); }

    // ---------------------------------------------------------------- convert.cu
    /** out (n) bf16 ← in (n) F32, round to nearest even */
    public void f32ToBf16(DeviceBuffer out, DeviceBuffer in, long n) {
        check(dive_h.dive_f32_to_bf16(out.pointer(), in.pointer(), n, s()), "dive_f32_to_bf16(n=" + n + ")");
    }

    /** out (n) F32 ← in (n) bf16, exact */
    public void bf16ToF32(DeviceBuffer out, DeviceBuffer in, long n) {
        check(dive_h.dive_bf16_to_f32(out.pointer(), in.pointer(), n, s()), "dive_bf16_to_f32(n=" + n + ")");
    }

    // ---------------------------------------------------------------- stats.cu
    /** merges h (rows, width) F32 into mean, m2, sumSquares (width) double; countBefore rows seen so far */
    public void channelStatsUpdate(DeviceBuffer mean, DeviceBuffer m2, DeviceBuffer sumSquares, long countBefore, DeviceBuffer h, long rows, int width) {
        check(dive_h.dive_channel_stats_update(mean.pointer(), m2.pointer(), sumSquares.pointer(), countBefore, h.pointer(), rows, width, s()),
                "dive_channel_stats_update(rows=" + rows + ", width=" + width + ")");
    }

    // ---------------------------------------------------------------- prune.cu
    /** out[r, :] = in[index[r], :]; in (·, width), out (count, width), elements of elementBytes */
    public void gatherRows(DeviceBuffer out, DeviceBuffer in, DeviceBuffer index, int count, long width, int elementBytes) {
        check(dive_h.dive_gather_rows(out.pointer(), in.pointer(), index.pointer(), count, width, elementBytes, s()),
                "dive_gather_rows(count=" + count + ", width=" + width + ", " + elementBytes + "-byte elements)");
    }

    /** out[r, c] = in[r, index[c]]; in (rows, width), out (rows, count) */
    public void gatherColumns(DeviceBuffer out, DeviceBuffer in, DeviceBuffer index, long rows, int width, int count, int elementBytes) {
        check(dive_h.dive_gather_columns(out.pointer(), in.pointer(), index.pointer(), rows, width, count, elementBytes, s()),
                "dive_gather_columns(rows=" + rows + ", width=" + width + ", count=" + count + ")");
    }

    /**
     * out[r, :] = x[rows[r], :] (rows NULL: r) as bf16 ({@code bf16}) or F32, for r &lt; min(*count, maxCount) (count NULL:
     * maxCount) — the count read on the device; a source row outside [0, xRows) gives zeros and is recorded in badIndex
     * (NULL: not recorded)
     */
    public void gatherConvertRows(DeviceBuffer out, boolean bf16, DeviceBuffer x, int xRows, DeviceBuffer rows, DeviceBuffer count,
                                  int maxCount, int width, DeviceBuffer badIndex) {
        check(dive_h.dive_gather_convert_rows(out.pointer(), bf16 ? 1 : 0, x.pointer(), xRows, rows.pointer(), count.pointer(), maxCount,
                width, badIndex.pointer(), s()), "dive_gather_convert_rows(max=" + maxCount + ", width=" + width + (bf16 ? ", bf16" : "") + ")");
    }

    // ---------------------------------------------------------------- route.cu
    /** routerLogits (n, E) → expertIds, expertWeights (n, k) */
    public void routeTopK(DeviceBuffer expertIds, DeviceBuffer expertWeights, DeviceBuffer routerLogits, int n, int numExperts, int k) {
        check(dive_h.dive_route_topk(expertIds.pointer(), expertWeights.pointer(), routerLogits.pointer(), n, numExperts, k, s()),
                "dive_route_topk(n=" + n + ", experts=" + numExperts + ", k=" + k + ")");
    }

    /** expertIds (n, k) → offsets (E + 1), rowToken (n·k), slotRow (n, k), badAssignment (1) */
    public void sortByExpert(DeviceBuffer offsets, DeviceBuffer rowToken, DeviceBuffer slotRow, DeviceBuffer badAssignment,
                             DeviceBuffer expertIds, int n, int k, int numExperts) {
        check(dive_h.dive_sort_by_expert(offsets.pointer(), rowToken.pointer(), slotRow.pointer(), badAssignment.pointer(),
                expertIds.pointer(), n, k, numExperts, s()), "dive_sort_by_expert(n=" + n + ", k=" + k + ", experts=" + numExperts + ")");
    }

    /** flag = the smaller of flag and index where −1 means none (folds a per-call bad index into a sticky flag) */
    public void foldFirstIndex(DeviceBuffer flag, DeviceBuffer index) {
        check(dive_h.dive_fold_first_index(flag.pointer(), index.pointer(), s()), "dive_fold_first_index");
    }

    /** softmax of every row of x (rows, n) in place */
    public void softmaxRows(DeviceBuffer x, long rows, int n) {
        check(dive_h.dive_softmax_rows(x.pointer(), rows, n, s()), "dive_softmax_rows(rows=" + rows + ", n=" + n + ")");
    }

    /** expertIds (n, E) = 0 .. E−1, expertWeights (n, E) = softmax(routerLogits · invTemperature) */
    public void softRouting(DeviceBuffer expertIds, DeviceBuffer expertWeights, DeviceBuffer routerLogits, int n, int numExperts,
                            float invTemperature) {
        check(dive_h.dive_soft_routing(expertIds.pointer(), expertWeights.pointer(), routerLogits.pointer(), n, numExperts, invTemperature, s()),
                "dive_soft_routing(n=" + n + ", experts=" + numExperts + ")");
    }

    /** counts[id] += 1 for the ids of expertIds[0 .. assignments); an id outside [0, countsSize) recorded in badIndex */
    public void countExperts(DeviceBuffer counts, int countsSize, DeviceBuffer expertIds, int assignments, DeviceBuffer badIndex) {
        check(dive_h.dive_count_experts(counts.pointer(), countsSize, expertIds.pointer(), assignments, badIndex.pointer(), s()),
                "dive_count_experts(assignments=" + assignments + ", counts=" + countsSize + ")");
    }

    /** the routing softmax's gradient onto dLogits (n, E), accumulated */
    public void routingBackward(DeviceBuffer dLogits, DeviceBuffer weights, DeviceBuffer dWeights, DeviceBuffer expertIds, int n, int slots,
                                int numExperts, double invTemperature, DeviceBuffer badIndex) {
        check(dive_h.dive_routing_backward(dLogits.pointer(), weights.pointer(), dWeights.pointer(), expertIds.pointer(), n, slots, numExperts,
                invTemperature, badIndex.pointer(), s()), "dive_routing_backward(n=" + n + ", slots=" + slots + ", experts=" + numExperts + ")");
    }

    // ---------------------------------------------------------------- moe.cu
    /** out (rows, N) F32 = x (rows, K) bf16 · w[e]ᵀ (E, N, K) bf16 per expert range (+ bias (E, N) F32) */
    public void groupedMatmulBf16(DeviceBuffer out, DeviceBuffer x, DeviceBuffer offsets, DeviceBuffer w, DeviceBuffer bias,
                                  int numExperts, int rows, int n, int k) {
        check(dive_h.dive_grouped_matmul_bf16(out.pointer(), x.pointer(), offsets.pointer(), w.pointer(), bias.pointer(), numExperts, rows, n, k, s()),
                "dive_grouped_matmul_bf16(experts=" + numExperts + ", rows=" + rows + ", N=" + n + ", K=" + k + ")");
    }

    /** the F32 twin of {@link #groupedMatmulBf16} */
    public void groupedMatmulF32(DeviceBuffer out, DeviceBuffer x, DeviceBuffer offsets, DeviceBuffer w, DeviceBuffer bias,
                                 int numExperts, int rows, int n, int k) {
        check(dive_h.dive_grouped_matmul_f32(out.pointer(), x.pointer(), offsets.pointer(), w.pointer(), bias.pointer(), numExperts, rows, n, k, s()),
                "dive_grouped_matmul_f32(experts=" + numExperts + ", rows=" + rows + ", N=" + n + ", K=" + k + ")");
    }

    /** a host array of the buffers' device addresses (NULL entries: null), in {@code arena}; null for a null list */
    private static MemorySegment table(Arena arena, DeviceBuffer[] buffers) {
        if (buffers == null) return MemorySegment.NULL;
        MemorySegment t = arena.allocate(ValueLayout.ADDRESS, buffers.length);
        for (int e = 0; e < buffers.length; e++) t.setAtIndex(ValueLayout.ADDRESS, e, buffers[e] == null ? MemorySegment.NULL : buffers[e].pointer());
        return t;
    }

    /**
     * The grouped matmul with per-expert weight buffers (each (N, K), one allocation each): {@code backwardInput} false:
     * out (rows, N) = in (rows, K) · w[e]ᵀ (+ bias[e] (N) F32, bias null or entries null); true: out (rows, K) = in (rows,
     * N) · w[e] (bias null). {@code bf16}: in and w bf16 on tensor cores; else F32 in order.
     */
    public void groupedGemm(boolean bf16, DeviceBuffer out, DeviceBuffer in, DeviceBuffer offsets, DeviceBuffer[] w, DeviceBuffer[] bias,
                            int rows, int n, int k, boolean backwardInput) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment wt = table(arena, w), bt = table(arena, bias);
            int status = bf16
                    ? dive_h.dive_grouped_gemm_bf16(out.pointer(), in.pointer(), offsets.pointer(), wt, bt, w.length, rows, n, k, backwardInput ? 1 : 0, s())
                    : dive_h.dive_grouped_gemm_f32(out.pointer(), in.pointer(), offsets.pointer(), wt, bt, w.length, rows, n, k, backwardInput ? 1 : 0, s());
            check(status, (bf16 ? "dive_grouped_gemm_bf16" : "dive_grouped_gemm_f32") + "(experts=" + w.length + ", rows=" + rows + ", N=" + n
                    + ", K=" + k + (backwardInput ? ", backward input" : "") + ")");
        }
    }

    /** dw[e] (N, K) += dOut[rows of e]ᵀ · x[rows of e] for every e with dw[e] not null */
    public void groupedWeightGradF32(DeviceBuffer[] dw, DeviceBuffer dOut, DeviceBuffer x, DeviceBuffer offsets, int rows, int n, int k) {
        try (Arena arena = Arena.ofConfined()) {
            check(dive_h.dive_grouped_weight_grad_f32(table(arena, dw), dOut.pointer(), x.pointer(), offsets.pointer(), dw.length, rows, n, k, s()),
                    "dive_grouped_weight_grad_f32(experts=" + dw.length + ", rows=" + rows + ", N=" + n + ", K=" + k + ")");
        }
    }

    /** out[rows of e, :] += bias[e] (d) for every e with bias[e] not null */
    public void expertAddBias(DeviceBuffer out, DeviceBuffer offsets, DeviceBuffer[] bias, int rows, int d) {
        try (Arena arena = Arena.ofConfined()) {
            check(dive_h.dive_expert_add_bias(out.pointer(), offsets.pointer(), table(arena, bias), bias.length, rows, d, s()),
                    "dive_expert_add_bias(experts=" + bias.length + ", rows=" + rows + ", d=" + d + ")");
        }
    }

    /** db[e] (d) += Σ over the rows of e of dy, in row order, for every e with db[e] not null */
    public void expertBiasBackward(DeviceBuffer[] db, DeviceBuffer dy, DeviceBuffer offsets, int rows, int d) {
        try (Arena arena = Arena.ofConfined()) {
            check(dive_h.dive_expert_bias_backward(table(arena, db), dy.pointer(), offsets.pointer(), db.length, rows, d, s()),
                    "dive_expert_bias_backward(experts=" + db.length + ", rows=" + rows + ", d=" + d + ")");
        }
    }

    /** y (n, d) = Σ_s expertWeights[t, s] · expertOut[slotRow[t, s], :] */
    public void combineExperts(DeviceBuffer y, DeviceBuffer expertOut, DeviceBuffer slotRow, DeviceBuffer expertWeights, int n, int k, int d) {
        check(dive_h.dive_combine_experts(y.pointer(), expertOut.pointer(), slotRow.pointer(), expertWeights.pointer(), n, k, d, s()),
                "dive_combine_experts(n=" + n + ", k=" + k + ", d=" + d + ")");
    }

    public void combineExpertsBackward(DeviceBuffer dExpertOut, DeviceBuffer dWeights, DeviceBuffer dy, DeviceBuffer expertOut,
                                       DeviceBuffer slotRow, DeviceBuffer expertWeights, int n, int k, int d) {
        check(dive_h.dive_combine_experts_backward(dExpertOut.pointer(), dWeights.pointer(), dy.pointer(), expertOut.pointer(),
                slotRow.pointer(), expertWeights.pointer(), n, k, d, s()), "dive_combine_experts_backward(n=" + n + ", k=" + k + ", d=" + d + ")");
    }

    /** dx[t, :] += Σ_s dRows[slotRow[t, s], :] in slot order */
    public void unpermuteAdd(DeviceBuffer dx, DeviceBuffer dRows, DeviceBuffer slotRow, int n, int k, int d) {
        check(dive_h.dive_unpermute_add(dx.pointer(), dRows.pointer(), slotRow.pointer(), n, k, d, s()),
                "dive_unpermute_add(n=" + n + ", k=" + k + ", d=" + d + ")");
    }

    // ---------------------------------------------------------------- elementwise.cu
    public void swiglu(DeviceBuffer out, DeviceBuffer gate, DeviceBuffer up, long n) {
        check(dive_h.dive_swiglu(out.pointer(), gate.pointer(), up.pointer(), n, s()), "dive_swiglu(n=" + n + ")");
    }

    public void swigluBackward(DeviceBuffer dGate, DeviceBuffer dUp, DeviceBuffer dOut, DeviceBuffer gate, DeviceBuffer up, long n) {
        check(dive_h.dive_swiglu_backward(dGate.pointer(), dUp.pointer(), dOut.pointer(), gate.pointer(), up.pointer(), n, s()),
                "dive_swiglu_backward(n=" + n + ")");
    }

    /** x += a · y */
    public void addScaled(DeviceBuffer x, DeviceBuffer y, float a, long n) {
        check(dive_h.dive_add_scaled(x.pointer(), y.pointer(), a, n, s()), "dive_add_scaled(n=" + n + ")");
    }

    /** y[r, j] += bias[j]; y (rows, width) */
    public void addBias(DeviceBuffer y, DeviceBuffer bias, long rows, int width) {
        check(dive_h.dive_add_bias(y.pointer(), bias.pointer(), rows, width, s()), "dive_add_bias(rows=" + rows + ", width=" + width + ")");
    }

    /** x ·= a */
    public void scale(DeviceBuffer x, float a, long n) {
        check(dive_h.dive_scale(x.pointer(), a, n, s()), "dive_scale(n=" + n + ")");
    }

    /** x ·= y, element-wise */
    public void multiply(DeviceBuffer x, DeviceBuffer y, long n) {
        check(dive_h.dive_multiply(x.pointer(), y.pointer(), n, s()), "dive_multiply(n=" + n + ")");
    }

    /** db[j] += Σ_r dy[r, j] in row order */
    public void biasBackward(DeviceBuffer db, DeviceBuffer dy, long rows, int width) {
        check(dive_h.dive_bias_backward(db.pointer(), dy.pointer(), rows, width, s()), "dive_bias_backward(rows=" + rows + ", width=" + width + ")");
    }

    /** inverted dropout with SplittableRandom(seed)'s draws from firstDraw: mask, xDropped (n) */
    public void dropout(DeviceBuffer mask, DeviceBuffer xDropped, DeviceBuffer x, long n, long seed, long firstDraw, double p, float keep) {
        check(dive_h.dive_dropout(mask.pointer(), xDropped.pointer(), x.pointer(), n, seed, firstDraw, p, keep, s()),
                "dive_dropout(n=" + n + ", p=" + p + ")");
    }

    /** swiglu over the rows in use: min(*rowCount, maxRows)·width elements, the count read on the device */
    public void swigluRows(DeviceBuffer out, DeviceBuffer gate, DeviceBuffer up, DeviceBuffer rowCount, long maxRows, int width) {
        check(dive_h.dive_swiglu_rows(out.pointer(), gate.pointer(), up.pointer(), rowCount.pointer(), maxRows, width, s()),
                "dive_swiglu_rows(max rows=" + maxRows + ", width=" + width + ")");
    }

    /** swigluBackward over the rows in use */
    public void swigluBackwardRows(DeviceBuffer dGate, DeviceBuffer dUp, DeviceBuffer dOut, DeviceBuffer gate, DeviceBuffer up,
                                   DeviceBuffer rowCount, long maxRows, int width) {
        check(dive_h.dive_swiglu_backward_rows(dGate.pointer(), dUp.pointer(), dOut.pointer(), gate.pointer(), up.pointer(), rowCount.pointer(),
                maxRows, width, s()), "dive_swiglu_backward_rows(max rows=" + maxRows + ", width=" + width + ")");
    }

    /** dropout of one linear of every expert, drawing as the loop over the experts does (dive.h) */
    public void expertDropout(DeviceBuffer mask, DeviceBuffer xDropped, DeviceBuffer x, DeviceBuffer offsets, int numExperts, long rows,
                              int width, long seed, long firstDraw, int stride, int prefix, double p, float keep) {
        check(dive_h.dive_expert_dropout(mask.pointer(), xDropped.pointer(), x.pointer(), offsets.pointer(), numExperts, rows, width, seed,
                firstDraw, stride, prefix, p, keep, s()), "dive_expert_dropout(experts=" + numExperts + ", rows=" + rows + ", width=" + width + ")");
    }

    /** x[rows[r], :] += src[r, :] in order r; a row outside [0, xRows) recorded in badIndex (NULL: not recorded) */
    public void scatterAddRows(DeviceBuffer x, DeviceBuffer src, DeviceBuffer rows, int count, int width, int xRows, DeviceBuffer badIndex) {
        check(dive_h.dive_scatter_add_rows(x.pointer(), src.pointer(), rows.pointer(), count, width, xRows, badIndex.pointer(), s()),
                "dive_scatter_add_rows(count=" + count + ", width=" + width + ")");
    }

    /** out (T, d) F32 = table[ids[t], :]; badIndex (1 int) receives a bad position */
    public void embedding(DeviceBuffer out, DeviceBuffer table, int elementBytes, DeviceBuffer ids, int tokens, int vocab, int d, DeviceBuffer badIndex) {
        check(dive_h.dive_embedding(out.pointer(), table.pointer(), elementBytes, ids.pointer(), tokens, vocab, d, badIndex.pointer(), s()),
                "dive_embedding(T=" + tokens + ", vocab=" + vocab + ", d=" + d + ")");
    }

    public void embeddingBackward(DeviceBuffer dTable, DeviceBuffer dOut, DeviceBuffer ids, int tokens, int d) {
        check(dive_h.dive_embedding_backward(dTable.pointer(), dOut.pointer(), ids.pointer(), tokens, d, s()),
                "dive_embedding_backward(T=" + tokens + ", d=" + d + ")");
    }

    // ---------------------------------------------------------------- norm.cu, rope.cu
    public void rmsNorm(DeviceBuffer out, DeviceBuffer x, DeviceBuffer weight, int rows, int d, float eps) {
        check(dive_h.dive_rmsnorm(out.pointer(), x.pointer(), weight.pointer(), rows, d, eps, s()), "dive_rmsnorm(rows=" + rows + ", d=" + d + ")");
    }

    public void rmsNormBackward(DeviceBuffer dx, DeviceBuffer dWeight, DeviceBuffer dOut, DeviceBuffer x, DeviceBuffer weight, int rows, int d, float eps) {
        check(dive_h.dive_rmsnorm_backward(dx.pointer(), dWeight.pointer(), dOut.pointer(), x.pointer(), weight.pointer(), rows, d, eps, s()),
                "dive_rmsnorm_backward(rows=" + rows + ", d=" + d + ")");
    }

    public void rope(DeviceBuffer x, int rows, int heads, int headDim, DeviceBuffer positions, DeviceBuffer invFreq, boolean inverse) {
        check(dive_h.dive_rope(x.pointer(), rows, heads, headDim, positions.pointer(), invFreq.pointer(), inverse ? 1 : 0, s()),
                "dive_rope(rows=" + rows + ", heads=" + heads + ", headDim=" + headDim + (inverse ? ", inverse" : "") + ")");
    }

    // ---------------------------------------------------------------- attention.cu
    public void attention(DeviceBuffer out, DeviceBuffer q, DeviceBuffer kCache, DeviceBuffer vCache, int tokens, int startPos,
                          int nHeads, int nKvHeads, int headDim, float scale) {
        check(dive_h.dive_attention(out.pointer(), q.pointer(), kCache.pointer(), vCache.pointer(), tokens, startPos, nHeads, nKvHeads, headDim, scale, s()),
                "dive_attention(T=" + tokens + ", startPos=" + startPos + ", heads=" + nHeads + "/" + nKvHeads + ", headDim=" + headDim + ")");
    }

    public void attentionBackward(DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv, DeviceBuffer dOut, DeviceBuffer q, DeviceBuffer k,
                                  DeviceBuffer v, int batch, int tokens, int nHeads, int nKvHeads, int headDim, float scale) {
        check(dive_h.dive_attention_backward(dq.pointer(), dk.pointer(), dv.pointer(), dOut.pointer(), q.pointer(), k.pointer(), v.pointer(),
                batch, tokens, nHeads, nKvHeads, headDim, scale, s()),
                "dive_attention_backward(B=" + batch + ", T=" + tokens + ", heads=" + nHeads + "/" + nKvHeads + ", headDim=" + headDim + ")");
    }

    // ---------------------------------------------------------------- loss.cu, adamw.cu
    /** loss (rows), dLogits (rows, vocab) or NULL; gradScale already holds 1/count */
    public void crossEntropy(DeviceBuffer loss, DeviceBuffer dLogits, DeviceBuffer logits, DeviceBuffer targets, int rows, int vocab,
                             float gradScale, DeviceBuffer badIndex) {
        check(dive_h.dive_cross_entropy(loss.pointer(), dLogits.pointer(), logits.pointer(), targets.pointer(), rows, vocab, gradScale,
                badIndex.pointer(), s()), "dive_cross_entropy(rows=" + rows + ", vocab=" + vocab + ")");
    }

    /** result (3 doubles) = {Σ loss over counted rows, counted rows, first bad row or −1}; dLogits NULL: no gradient */
    public void crossEntropyMean(DeviceBuffer result, DeviceBuffer dLogits, DeviceBuffer logits, DeviceBuffer targets, int rows, int vocab,
                                 float gradScale) {
        check(dive_h.dive_cross_entropy_mean(result.pointer(), dLogits.pointer(), logits.pointer(), targets.pointer(), rows, vocab, gradScale, s()),
                "dive_cross_entropy_mean(rows=" + rows + ", vocab=" + vocab + ")");
    }

    public void adamW(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long n, float lr, float beta1, float beta2,
                      float eps, float weightDecay, float biasCorrection1, float biasCorrection2) {
        check(dive_h.dive_adamw(param.pointer(), grad.pointer(), m.pointer(), v.pointer(), n, lr, beta1, beta2, eps, weightDecay,
                biasCorrection1, biasCorrection2, s()), "dive_adamw(n=" + n + ")");
    }

    /** one AdamW step from the per-step scalars already rounded to F32 (Backend.AdamWStep): the CPU's bits */
    public void adamWStep(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long n, boolean decay, float decayFactor,
                          float stepSize, float sqrtBiasCorrection2, float oneMinusBeta1, float beta2, float oneMinusBeta2, float eps) {
        check(dive_h.dive_adamw_step(param.pointer(), grad.pointer(), m.pointer(), v.pointer(), n, decay ? 1 : 0, decayFactor, stepSize,
                sqrtBiasCorrection2, oneMinusBeta1, beta2, oneMinusBeta2, eps, s()), "dive_adamw_step(n=" + n + ")");
    }

    // ---------------------------------------------------------------- reduce.cu
    /** sum (1 double) += Σ x[i]², i &lt; n */
    public void sumOfSquares(DeviceBuffer sum, DeviceBuffer x, long n) {
        check(dive_h.dive_sum_of_squares(sum.pointer(), x.pointer(), n, s()), "dive_sum_of_squares(n=" + n + ")");
    }

    /** index (1 long) = the first non-finite i &lt; n, or −1 */
    public void firstNonFinite(DeviceBuffer index, DeviceBuffer x, long n) {
        check(dive_h.dive_first_non_finite(index.pointer(), x.pointer(), n, s()), "dive_first_non_finite(n=" + n + ")");
    }
}
