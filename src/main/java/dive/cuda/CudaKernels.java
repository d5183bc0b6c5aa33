package dive.cuda;

import dive.bindings.dive_h;

import java.lang.foreign.MemorySegment;

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

    public void adamW(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long n, float lr, float beta1, float beta2,
                      float eps, float weightDecay, float biasCorrection1, float biasCorrection2) {
        check(dive_h.dive_adamw(param.pointer(), grad.pointer(), m.pointer(), v.pointer(), n, lr, beta1, beta2, eps, weightDecay,
                biasCorrection1, biasCorrection2, s()), "dive_adamw(n=" + n + ")");
    }
}
