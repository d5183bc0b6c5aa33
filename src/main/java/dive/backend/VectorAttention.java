package dive.backend;

import jdk.incubator.vector.FloatVector;

import java.util.Arrays;

import static dive.backend.VectorElementwise.softmaxInPlace;
import static dive.backend.VectorSupport.*;

/**
 * Causal grouped-query attention and its gradient for {@link VectorBackend}: the CPU twin of native/src/attention.cu.
 * Decode takes dot products; prefill and the backward transpose the keys (and values) so that scores are vertical FMAs.
 */
final class VectorAttention {
    private VectorAttention() {}

    static void attention(Workers workers, float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos,
                          int nHeads, int nKvHeads, int headDim, float scale) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException("attention: nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        int group = nHeads / nKvHeads;
        int len = startPos + T, lenPadded = roundUp(len, L);
        int units = T * nHeads; // one (query, head) each
        long work = (long) units * len * headDim;
        int tasks = Math.min(units, 64);
        if (T * group < TRANSPOSED_KEYS_MIN_QUERIES) { // decode: each key is read by few queries, dot products directly
            workers.parallelFor(tasks, work >= PARALLEL_MIN_FMAS, task -> {
                float[] scores = new float[len];
                for (int u = task; u < units; u += tasks) {
                    int t = u / nHeads, h = u % nHeads, kvh = h / group;
                    int qOff = (t * nHeads + h) * headDim, visible = startPos + t + 1;
                    attentionScoresDirect(scores, q, qOff, kCache, kvh, nKvHeads, visible, headDim, scale);
                    softmaxInPlace(scores, 0, visible);
                    attentionValues(out, qOff, scores, 0, visible, vCache, kvh, nKvHeads, headDim);
                }
            });
            return;
        }
        // prefill: keysT (nKvHeads, headDim, lenPadded) holds the keys transposed, so the scores of L
        // positions are one vector FMA per head dimension (no horizontal sums); zero past len
        float[] keysT = new float[nKvHeads * headDim * lenPadded];
        for (int kvh = 0; kvh < nKvHeads; kvh++)
            for (int s = 0; s < len; s++) {
                int src = (s * nKvHeads + kvh) * headDim, dst = kvh * headDim * lenPadded + s;
                for (int i = 0; i < headDim; i++) keysT[dst + i * lenPadded] = kCache[src + i];
            }
        int blocks = (T + 3) / 4, blockUnits = blocks * nHeads; // 4 consecutive queries of one head share each key load
        int blockTasks = Math.min(blockUnits, 64);
        workers.parallelFor(blockTasks, work >= PARALLEL_MIN_FMAS, task -> {
            float[] scores = new float[4 * lenPadded]; // (4, lenPadded)
            // interleaved so that long (late) and short (early) causal rows mix in every task
            for (int u = task; u < blockUnits; u += blockTasks) {
                int t0 = (u / nHeads) * 4, h = u % nHeads, kvh = h / group, queries = Math.min(4, T - t0);
                attentionScores4(scores, 0, lenPadded, q, h * headDim, nHeads * headDim, t0, queries, keysT, kvh * headDim * lenPadded,
                        lenPadded, startPos + t0 + queries, headDim, scale);
                int visibleMax = startPos + t0 + queries;
                for (int j = 0; j < 4; j++) {
                    int visible = startPos + t0 + Math.min(j, queries - 1) + 1;
                    softmaxInPlace(scores, j * lenPadded, visible);
                    Arrays.fill(scores, j * lenPadded + visible, j * lenPadded + visibleMax, 0f); // causal mask
                }
                attentionValues4(out, t0, queries, h, nHeads, scores, lenPadded, visibleMax, vCache, kvh, nKvHeads, headDim);
            }
        });
    }

    /** below this many queries per KV head (T · group), attention skips transposing the keys */
    static final int TRANSPOSED_KEYS_MIN_QUERIES = 8;

    /** scores[s] = scale · q · k[s, kvh] for s &lt; visible, one dot product per position */
    private static void attentionScoresDirect(float[] scores, float[] q, int qOff, float[] kCache, int kvh, int nKvHeads,
                                              int visible, int headDim, float scale) {
        int upper = headDim - headDim % L;
        for (int s = 0; s < visible; s++) {
            int kOff = (s * nKvHeads + kvh) * headDim;
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            for (; i < upper; i += L)
                acc = FloatVector.fromArray(F, q, qOff + i).fma(FloatVector.fromArray(F, kCache, kOff + i), acc);
            float dot = sumLanes(acc);
            for (; i < headDim; i++) dot += q[qOff + i] * kCache[kOff + i];
            scores[s] = dot * scale;
        }
    }

    /**
     * scores[scoreOff + j·scoreStride + s] = scale · Σ_i q[qBase + (t0+j)·qRowStride + i]·keysT[kOff + i·stride + s] for
     * queries j &lt; 4 (missing ones repeat the last; results unused) and s &lt; visible (rounded up to L lanes)
     */
    private static void attentionScores4(float[] scores, int scoreOff, int scoreStride, float[] q, int qBase, int qRowStride,
                                         int t0, int queries, float[] keysT, int kOff, int stride, int visible, int headDim,
                                         float scale) {
        int q0 = qBase + t0 * qRowStride;
        int q1 = qBase + (t0 + Math.min(1, queries - 1)) * qRowStride;
        int q2 = qBase + (t0 + Math.min(2, queries - 1)) * qRowStride;
        int q3 = qBase + (t0 + Math.min(3, queries - 1)) * qRowStride;
        for (int s = 0; s < visible; s += L) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0, row = kOff + s; i < headDim; i++, row += stride) {
                FloatVector key = FloatVector.fromArray(F, keysT, row);
                a0 = FloatVector.broadcast(F, q[q0 + i]).fma(key, a0);
                a1 = FloatVector.broadcast(F, q[q1 + i]).fma(key, a1);
                a2 = FloatVector.broadcast(F, q[q2 + i]).fma(key, a2);
                a3 = FloatVector.broadcast(F, q[q3 + i]).fma(key, a3);
            }
            a0.mul(scale).intoArray(scores, scoreOff + s);
            a1.mul(scale).intoArray(scores, scoreOff + scoreStride + s);
            a2.mul(scale).intoArray(scores, scoreOff + 2 * scoreStride + s);
            a3.mul(scale).intoArray(scores, scoreOff + 3 * scoreStride + s);
        }
    }

    /**
     * out[t0+j, h, i] = Σ_{s &lt; visible} p[j·pStride + s]·v[s, kvh, i] for queries j &lt; queries: each
     * value row is loaded once for 4 queries (p is zero past each query's causal end; rows of missing
     * queries are computed and dropped)
     */
    private static void attentionValues4(float[] out, int t0, int queries, int h, int nHeads, float[] p, int pStride,
                                         int visible, float[] vCache, int kvh, int nKvHeads, int headDim) {
        int rowStride = nKvHeads * headDim, base = kvh * headDim;
        int p1 = pStride, p2 = 2 * pStride, p3 = 3 * pStride;
        int i = 0;
        for (; i + L <= headDim; i += L) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int s = 0, v = base + i; s < visible; s++, v += rowStride) {
                FloatVector value = FloatVector.fromArray(F, vCache, v);
                a0 = FloatVector.broadcast(F, p[s]).fma(value, a0);
                a1 = FloatVector.broadcast(F, p[p1 + s]).fma(value, a1);
                a2 = FloatVector.broadcast(F, p[p2 + s]).fma(value, a2);
                a3 = FloatVector.broadcast(F, p[p3 + s]).fma(value, a3);
            }
            int o = (t0 * nHeads + h) * headDim + i, step = nHeads * headDim;
            a0.intoArray(out, o);
            if (queries > 1) a1.intoArray(out, o + step);
            if (queries > 2) a2.intoArray(out, o + 2 * step);
            if (queries > 3) a3.intoArray(out, o + 3 * step);
        }
        for (; i < headDim; i++) {
            for (int j = 0; j < queries; j++) {
                float acc = 0f;
                for (int s = 0; s < visible; s++) acc += p[j * pStride + s] * vCache[s * rowStride + base + i];
                out[((t0 + j) * nHeads + h) * headDim + i] = acc;
            }
        }
    }

    /** out[qOff + i] = Σ_{s &lt; visible} p[pOff + s]·v[s, kvh, i] */
    private static void attentionValues(float[] out, int qOff, float[] p, int pOff, int visible, float[] vCache, int kvh,
                                        int nKvHeads, int headDim) {
        int rowStride = nKvHeads * headDim, base = kvh * headDim;
        int i = 0;
        for (; i + 2 * L <= headDim; i += 2 * L) { // two column vectors × even/odd positions: 4 FMA chains
            FloatVector e0 = FloatVector.zero(F), e1 = e0, o0 = e0, o1 = e0;
            int s = 0;
            for (; s + 1 < visible; s += 2) {
                int v0 = s * rowStride + base + i, v1 = v0 + rowStride;
                FloatVector pe = FloatVector.broadcast(F, p[pOff + s]), po = FloatVector.broadcast(F, p[pOff + s + 1]);
                e0 = pe.fma(FloatVector.fromArray(F, vCache, v0), e0);
                e1 = pe.fma(FloatVector.fromArray(F, vCache, v0 + L), e1);
                o0 = po.fma(FloatVector.fromArray(F, vCache, v1), o0);
                o1 = po.fma(FloatVector.fromArray(F, vCache, v1 + L), o1);
            }
            if (s < visible) {
                int v0 = s * rowStride + base + i;
                FloatVector pe = FloatVector.broadcast(F, p[pOff + s]);
                e0 = pe.fma(FloatVector.fromArray(F, vCache, v0), e0);
                e1 = pe.fma(FloatVector.fromArray(F, vCache, v0 + L), e1);
            }
            e0.add(o0).intoArray(out, qOff + i);
            e1.add(o1).intoArray(out, qOff + i + L);
        }
        for (; i + L <= headDim; i += L) {
            FloatVector acc = FloatVector.zero(F);
            for (int s = 0; s < visible; s++)
                acc = FloatVector.broadcast(F, p[pOff + s]).fma(FloatVector.fromArray(F, vCache, s * rowStride + base + i), acc);
            acc.intoArray(out, qOff + i);
        }
        for (; i < headDim; i++) {
            float acc = 0f;
            for (int s = 0; s < visible; s++) acc += p[pOff + s] * vCache[s * rowStride + base + i];
            out[qOff + i] = acc;
        }
    }

    /**
     * One task per (sequence, KV head): it owns that slice of dk and dv and the dq of the query heads sharing it,
     * and runs them in a fixed order, so the sums are deterministic without locks. Per query head, blocks of 4
     * queries at a time: the rows of P = softmax(scale·q·kᵀ) and of dP = dOut·vᵀ come from vertical FMAs over the
     * transposed keys and values (as in {@link #attention}), then dS row by row; dq = dS·k, dk += dSᵀ·q and
     * dv += Pᵀ·dOut are register-tiled row combinations (4 output rows share each loaded input row).
     */
    static void attentionBackward(Workers workers, float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                  int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        if (nKvHeads < 1 || nHeads % nKvHeads != 0)
            throw new IllegalArgumentException("attentionBackward: nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        long work = (long) B * nHeads * T * T * headDim * 2;
        workers.parallelFor(B * nKvHeads, work >= PARALLEL_MIN_FMAS, task ->
                attentionBackwardTask(dq, dk, dv, dOut, q, k, v, task / nKvHeads, task % nKvHeads, T, nHeads, nKvHeads, headDim, scale));
    }

    /** {@link #attentionBackward} of sequence b, KV head kvh and the query heads reading it */
    private static void attentionBackwardTask(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                              int b, int kvh, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        int group = nHeads / nKvHeads, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        int tPadded = roundUp(T, L), blocksPadded = roundUp(T, 4);
        // keysT, valuesT (headDim, tPadded): scores and dOut·vᵀ of L positions are vertical FMAs; zero past T
        float[] keysT = new float[headDim * tPadded], valuesT = new float[headDim * tPadded];
        for (int s = 0; s < T; s++) {
            int kOff = (b * T + s) * kvDim + kvh * headDim;
            for (int i = 0; i < headDim; i++) {
                keysT[i * tPadded + s] = k[kOff + i];
                valuesT[i * tPadded + s] = v[kOff + i];
            }
        }
        // p, ds (blocksPadded, tPadded): rows of one head; zero past each query's causal end
        float[] p = new float[blocksPadded * tPadded], dp = new float[4 * tPadded], ds = new float[blocksPadded * tPadded];
        int kv0 = b * T * kvDim + kvh * headDim;       // k[b, 0, kvh, 0]
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            int q0 = b * T * qDim + h * headDim;       // q[b, 0, h, 0]
            for (int t0 = 0; t0 < T; t0 += 4) {
                int queries = Math.min(4, T - t0), visibleMax = t0 + queries;
                int sEnd = roundUp(visibleMax, L);
                attentionScores4(p, t0 * tPadded, tPadded, q, q0, qDim, t0, queries, keysT, 0, tPadded, sEnd, headDim, scale);
                attentionScores4(dp, 0, tPadded, dOut, q0, qDim, t0, queries, valuesT, 0, tPadded, sEnd, headDim, 1f);
                for (int j = 0; j < queries; j++) {
                    int t = t0 + j, row = t * tPadded;
                    softmaxInPlace(p, row, t + 1);
                    Arrays.fill(p, row + t + 1, row + tPadded, 0f);   // causal mask; padding adds nothing below
                    float pdp = dot(p, row, dp, j * tPadded, t + 1);
                    softmaxGradient(ds, row, p, dp, j * tPadded, pdp, scale, t + 1);
                    Arrays.fill(ds, row + t + 1, row + tPadded, 0f);
                }
            }
            // dq[t] = Σ_{s ≤ t} ds[t, s]·k[s]  (overwritten)
            for (int t0 = 0; t0 < T; t0 += 4)
                combineRows4(dq, q0 + t0 * qDim, qDim, Math.min(4, T - t0), ds, t0 * tPadded, tPadded, 1,
                        0, Math.min(T, t0 + 4), k, kv0, kvDim, headDim, false);
            // dk[s] (+)= Σ_{t ≥ s} ds[t, s]·q[t], dv[s] (+)= Σ_{t ≥ s} p[t, s]·dOut[t]; the group's first head overwrites
            boolean accumulate = h > kvh * group;
            for (int s0 = 0; s0 < T; s0 += 4) {
                int keys = Math.min(4, T - s0);
                combineRows4(dk, kv0 + s0 * kvDim, kvDim, keys, ds, s0, 1, tPadded, s0, T, q, q0, qDim, headDim, accumulate);
                combineRows4(dv, kv0 + s0 * kvDim, kvDim, keys, p, s0, 1, tPadded, s0, T, dOut, q0, qDim, headDim, accumulate);
            }
        }
    }

    /** ds[row + s] = scale · p[row + s]·(dp[dpOff + s] − pdp) for s &lt; n */
    private static void softmaxGradient(float[] ds, int row, float[] p, float[] dp, int dpOff, float pdp, float scale, int n) {
        int s = 0;
        for (int upper = n - n % L; s < upper; s += L)
            FloatVector.fromArray(F, p, row + s).mul(FloatVector.fromArray(F, dp, dpOff + s).sub(pdp)).mul(scale).intoArray(ds, row + s);
        for (; s < n; s++) ds[row + s] = p[row + s] * (dp[dpOff + s] - pdp) * scale;
    }

    /**
     * dst[d0 + r·dStride + i] (+)= Σ_{j = j0 .. j1−1} coef[c0 + r·cStride + j·cStep] · src[s0 + j·sStride + i] for output
     * rows r &lt; rows (≤ 4) and i &lt; width, j ascending. Each src row chunk is loaded once for the 4 rows (a missing row
     * repeats the last one's coefficients; its result is dropped).
     */
    private static void combineRows4(float[] dst, int d0, int dStride, int rows, float[] coef, int c0, int cStride, int cStep,
                                     int j0, int j1, float[] src, int s0, int sStride, int width, boolean accumulate) {
        int c1 = c0 + Math.min(1, rows - 1) * cStride, c2 = c0 + Math.min(2, rows - 1) * cStride, c3 = c0 + Math.min(3, rows - 1) * cStride;
        int i = 0;
        for (; i + L <= width; i += L) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int j = j0, c = j0 * cStep, sr = s0 + j0 * sStride + i; j < j1; j++, c += cStep, sr += sStride) {
                FloatVector row = FloatVector.fromArray(F, src, sr);
                a0 = FloatVector.broadcast(F, coef[c0 + c]).fma(row, a0);
                a1 = FloatVector.broadcast(F, coef[c1 + c]).fma(row, a1);
                a2 = FloatVector.broadcast(F, coef[c2 + c]).fma(row, a2);
                a3 = FloatVector.broadcast(F, coef[c3 + c]).fma(row, a3);
            }
            int o = d0 + i;
            storeRow(dst, o, a0, accumulate);
            if (rows > 1) storeRow(dst, o + dStride, a1, accumulate);
            if (rows > 2) storeRow(dst, o + 2 * dStride, a2, accumulate);
            if (rows > 3) storeRow(dst, o + 3 * dStride, a3, accumulate);
        }
        for (; i < width; i++) {
            for (int r = 0; r < rows; r++) {
                float acc = 0f;
                for (int j = j0; j < j1; j++) acc = Math.fma(coef[c0 + r * cStride + j * cStep], src[s0 + j * sStride + i], acc);
                int o = d0 + r * dStride + i;
                dst[o] = accumulate ? dst[o] + acc : acc;
            }
        }
    }

    private static void storeRow(float[] dst, int o, FloatVector v, boolean accumulate) {
        (accumulate ? v.add(FloatVector.fromArray(F, dst, o)) : v).intoArray(dst, o);
    }

    /** Σ a[ao + i]·b[bo + i], i &lt; n */
    private static float dot(float[] a, int ao, float[] b, int bo, int n) {
        FloatVector acc = FloatVector.zero(F);
        int i = 0;
        for (int upper = n - n % L; i < upper; i += L)
            acc = FloatVector.fromArray(F, a, ao + i).fma(FloatVector.fromArray(F, b, bo + i), acc);
        float s = sumLanes(acc);
        for (; i < n; i++) s += a[ao + i] * b[bo + i];
        return s;
    }

}
