package dive.backend;

import dive.tensor.Tensor;

/**
 * The plain reference: loops as the formulas read, F32 (double where a sum is long), one thread.
 * Every faster backend is tested against this one.
 */
public class ScalarBackend implements Backend {

    @Override public String name() { return "scalar"; }

    @Override
    public void matmul(float[] out, float[] x, int m, Tensor w) {
        int n = w.rows(), k = w.cols();
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                float acc = 0f;
                long row = (long) j * k;
                for (int p = 0; p < k; p++) acc += x[i * k + p] * w.getFloat(row + p);
                out[i * n + j] = acc;
            }
        }
    }

    @Override
    public void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps) {
        int d = Math.toIntExact(weight.numel());
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += (double) x[r * d + i] * x[r * d + i];
            float inv = (float) (1.0 / Math.sqrt(ss / d + eps));
            for (int i = 0; i < d; i++) out[r * d + i] = x[r * d + i] * inv * weight.getFloat(i);
        }
    }

    @Override
    public void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        int half = headDim / 2;
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < half; i++) {
                float angle = positions[r] * invFreq[i];
                float cos = (float) Math.cos(angle), sin = (float) Math.sin(angle);
                for (int h = 0; h < heads; h++) {
                    int base = (r * heads + h) * headDim;
                    float a = x[base + i], b = x[base + i + half];
                    x[base + i] = a * cos - b * sin;
                    x[base + i + half] = b * cos + a * sin;
                }
            }
        }
    }

    @Override
    public void attention(float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos,
                          int nHeads, int nKvHeads, int headDim, float scale) {
        int group = nHeads / nKvHeads;
        float[] scores = new float[startPos + T];
        for (int t = 0; t < T; t++) {
            int len = startPos + t + 1;
            for (int h = 0; h < nHeads; h++) {
                int kvh = h / group;
                int qOff = (t * nHeads + h) * headDim;
                for (int s = 0; s < len; s++) {
                    int kOff = (s * nKvHeads + kvh) * headDim;
                    float dot = 0f;
                    for (int i = 0; i < headDim; i++) dot += q[qOff + i] * kCache[kOff + i];
                    scores[s] = dot * scale;
                }
                softmax(scores, 0, len);
                for (int i = 0; i < headDim; i++) {
                    float acc = 0f;
                    for (int s = 0; s < len; s++) acc += scores[s] * vCache[(s * nKvHeads + kvh) * headDim + i];
                    out[qOff + i] = acc;
                }
            }
        }
    }

    @Override
    public void swiglu(float[] out, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }

    @Override
    public void softmax(float[] x, int off, int n) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) max = Math.max(max, x[off + i]);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (int i = 0; i < n; i++) x[off + i] *= inv;
    }

    @Override
    public void embedding(float[] out, Tensor table, int[] ids) {
        int vocab = table.rows(), d = table.cols();
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= vocab) throw new IllegalArgumentException("token id " + id + " at position " + t + " is outside the vocabulary [0, " + vocab + ")");
            for (int i = 0; i < d; i++) out[t * d + i] = table.getFloat((long) id * d + i);
        }
    }

    @Override
    public void add(float[] x, float[] y, int n) {
        for (int i = 0; i < n; i++) x[i] += y[i];
    }

    // ================================================================ Mixture of Experts

    @Override
    public void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k) {
        MoeChecks.routeTopK(expertIds, expertWeights, routerLogits, n, numExperts, k);
        boolean[] taken = new boolean[numExperts];
        for (int t = 0; t < n; t++) {
            int row = t * numExperts;
            java.util.Arrays.fill(taken, false);
            for (int s = 0; s < k; s++) { // the largest remaining logit; strict > keeps the lower index on ties
                int best = -1;
                for (int e = 0; e < numExperts; e++)
                    if (!taken[e] && (best < 0 || routerLogits[row + e] > routerLogits[row + best])) best = e;
                taken[best] = true;
                expertIds[t * k + s] = best;
                expertWeights[t * k + s] = routerLogits[row + best];
            }
            softmax(expertWeights, t * k, k);
        }
    }

    @Override
    public void gather(float[] out, float[] x, int[] rows, int count, int width) {
        for (int r = 0; r < count; r++)
            for (int i = 0; i < width; i++) out[r * width + i] = x[rows[r] * width + i];
    }

    @Override
    public void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias) {
        MoeChecks.groupedMatmul(out, x, offsets, w, bias);
        for (int e = 0; e < w.length; e++) {
            int n = w[e].rows(), k = w[e].cols();
            for (int r = offsets[e]; r < offsets[e + 1]; r++) {
                for (int j = 0; j < n; j++) {
                    float acc = 0f;
                    for (int p = 0; p < k; p++) acc += x[r * k + p] * w[e].getFloat((long) j * k + p);
                    out[r * n + j] = bias == null || bias[e] == null ? acc : acc + bias[e].getFloat(j);
                }
            }
        }
    }

    @Override
    public void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d) {
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < d; i++) {
                float acc = 0f;
                for (int s = 0; s < k; s++) acc += expertWeights[t * k + s] * expertOut[slotRow[t * k + s] * d + i];
                y[t * d + i] = acc;
            }
        }
    }
}
