package dive.backend;

import dive.tensor.Tensor;

/**
 * The plain reference: loops as the formulas read, F32 (double where a sum is long), one thread.
 * Every faster backend is tested against this one.
 */
public class ScalarBackend extends CpuBackend {

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

    // ---------------------------------------------------------------- backward passes

    @Override
    public void matmulBackwardInput(float[] dx, float[] dOut, int m, Tensor w) {
        int n = w.rows(), k = w.cols();
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++) {
                float acc = 0f;
                for (int j = 0; j < n; j++) acc += dOut[i * n + j] * w.getFloat((long) j * k + p);
                dx[i * k + p] = acc;
            }
    }

    @Override
    public void matmulBackwardWeight(float[] dw, float[] dOut, float[] x, int m, int n, int k) {
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++) {
                float acc = 0f;
                for (int i = 0; i < m; i++) acc += dOut[i * n + j] * x[i * k + p];
                dw[j * k + p] += acc;
            }
    }

    @Override
    public void rmsNormBackward(float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps) {
        int d = Math.toIntExact(weight.numel());
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += (double) x[r * d + i] * x[r * d + i];
            float inv = (float) (1.0 / Math.sqrt(ss / d + eps));
            double dot = 0; // Σ_j g[j]·dOut[j]·x[j]
            for (int i = 0; i < d; i++) dot += (double) weight.getFloat(i) * dOut[r * d + i] * x[r * d + i];
            float c = (float) (dot * inv * inv * inv / d);
            for (int i = 0; i < d; i++) {
                float dy = dOut[r * d + i];
                if (dWeight != null) dWeight[i] += dy * x[r * d + i] * inv;
                dx[r * d + i] = inv * weight.getFloat(i) * dy - c * x[r * d + i];
            }
        }
    }

    @Override
    public void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        // the transpose of a rotation is the rotation by −angle: rope at negated positions
        int[] negated = new int[rows];
        for (int r = 0; r < rows; r++) negated[r] = -positions[r];
        rope(dx, rows, heads, headDim, negated, invFreq);
    }

    @Override
    public void attentionBackward(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                                  int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        int group = nHeads / nKvHeads, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        java.util.Arrays.fill(dq, 0, B * T * qDim, 0f);
        java.util.Arrays.fill(dk, 0, B * T * kvDim, 0f);
        java.util.Arrays.fill(dv, 0, B * T * kvDim, 0f);
        float[] p = new float[T], dp = new float[T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < nHeads; h++) {
                int kvh = h / group;
                for (int t = 0; t < T; t++) {
                    int qOff = (b * T + t) * qDim + h * headDim;
                    for (int s = 0; s <= t; s++) { // p = softmax(scale·q·k), dp = dOut·v
                        int kOff = (b * T + s) * kvDim + kvh * headDim;
                        float dot = 0f, dpv = 0f;
                        for (int i = 0; i < headDim; i++) {
                            dot += q[qOff + i] * k[kOff + i];
                            dpv += dOut[qOff + i] * v[kOff + i];
                        }
                        p[s] = dot * scale;
                        dp[s] = dpv;
                    }
                    softmax(p, 0, t + 1);
                    float pdp = 0f;
                    for (int s = 0; s <= t; s++) pdp += p[s] * dp[s];
                    for (int s = 0; s <= t; s++) {
                        int kOff = (b * T + s) * kvDim + kvh * headDim;
                        float ds = p[s] * (dp[s] - pdp) * scale;
                        for (int i = 0; i < headDim; i++) {
                            dq[qOff + i] += ds * k[kOff + i];
                            dk[kOff + i] += ds * q[qOff + i];
                            dv[kOff + i] += p[s] * dOut[qOff + i];
                        }
                    }
                }
            }
    }

    @Override
    public void swigluBackward(float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i], sig = 1f / (1f + (float) Math.exp(-g));
            dGate[i] = dOut[i] * up[i] * sig * (1f + g * (1f - sig));
            dUp[i] = dOut[i] * g * sig;
        }
    }

    @Override
    public void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d) {
        for (int t = 0; t < ids.length; t++)
            for (int i = 0; i < d; i++) dTable[ids[t] * d + i] += dOut[t * d + i];
    }

    @Override
    public double crossEntropy(float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale) {
        int count = 0;
        for (int r = 0; r < rows; r++) if (targets[r] != IGNORE_INDEX) count++;
        double lossSum = 0;
        for (int r = 0; r < rows; r++) {
            int target = targets[r], off = r * vocab;
            if (target == IGNORE_INDEX) {
                if (dLogits != null) java.util.Arrays.fill(dLogits, off, off + vocab, 0f);
                continue;
            }
            if (target < 0 || target >= vocab)
                throw new IllegalArgumentException("target " + target + " of row " + r + " is outside the vocabulary [0, " + vocab + ") and not " + IGNORE_INDEX);
            float max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < vocab; i++) max = Math.max(max, logits[off + i]);
            double sum = 0;
            for (int i = 0; i < vocab; i++) sum += (float) Math.exp(logits[off + i] - max);
            lossSum += Math.log(sum) + max - logits[off + target];
            if (dLogits != null) {
                float inv = (float) (1.0 / sum), g = gradScale / count;
                for (int i = 0; i < vocab; i++) {
                    float prob = (float) Math.exp(logits[off + i] - max) * inv;
                    dLogits[off + i] = (prob - (i == target ? 1f : 0f)) * g;
                }
            }
        }
        return count == 0 ? Double.NaN : lossSum / count;
    }

    @Override
    public void addScaled(float[] x, float[] y, float a, int n) {
        for (int i = 0; i < n; i++) x[i] += a * y[i];
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

    @Override
    public void combineExpertsBackward(float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                       float[] expertWeights, int n, int k, int d) {
        for (int t = 0; t < n; t++) {
            for (int s = 0; s < k; s++) {
                int r = slotRow[t * k + s];
                float g = expertWeights[t * k + s], dot = 0f;
                for (int i = 0; i < d; i++) {
                    dExpertOut[r * d + i] = g * dy[t * d + i];
                    dot += dy[t * d + i] * expertOut[r * d + i];
                }
                dWeights[t * k + s] = dot;
            }
        }
    }

    @Override
    public void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width) {
        for (int r = 0; r < count; r++)
            for (int i = 0; i < width; i++) x[rows[r] * width + i] += src[r * width + i];
    }
}
