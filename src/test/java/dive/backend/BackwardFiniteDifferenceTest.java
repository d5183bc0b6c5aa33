package dive.backend;

import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The backward ops of {@link ScalarBackend} against finite differences of the forward ops written
 * again here in double precision. For an op y = f(x) and a random upstream gradient dy, the scalar
 * J(x) = Σ dy·f(x) has ∇J = the op's input gradient; along a random direction u the central difference
 * (J(x + εu) − J(x − εu)) / 2ε (double, ε = 1e-3, error O(ε²)) must equal Σ ∇J·u. The analytic gradient
 * comes from the F32 backend, so the tolerance is relative 1e-4 of Σ |∇J·u| terms (F32 rounding).
 */
class BackwardFiniteDifferenceTest {
    private static final double EPS = 1e-3;
    private final ScalarBackend backend = new ScalarBackend();
    private final Random random = new Random(42);

    private float[] rand(int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) ((random.nextDouble() * 2 - 1) * scale);
        return a;
    }

    private static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    private static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    /**
     * asserts Σ grad·u = directional derivative of J at x along u (central differences), for a random u
     */
    private void check(String what, float[] x, float[] grad, Function<double[], Double> objective) {
        double[] u = toDouble(rand(x.length, 1));
        double[] plus = toDouble(x), minus = toDouble(x);
        for (int i = 0; i < x.length; i++) {
            plus[i] += EPS * u[i];
            minus[i] -= EPS * u[i];
        }
        double numeric = (objective.apply(plus) - objective.apply(minus)) / (2 * EPS);
        double analytic = 0, magnitude = 0;
        for (int i = 0; i < x.length; i++) {
            analytic += grad[i] * u[i];
            magnitude += Math.abs(grad[i] * u[i]);
        }
        assertTrue(magnitude > 1e-3, what + ": gradient is (almost) zero, the test would prove nothing");
        assertEquals(numeric, analytic, 1e-4 * magnitude + 1e-9, what + ": analytic " + analytic + " vs finite differences " + numeric);
    }

    // ---------------------------------------------------------------- forward ops in double

    /** y (m, n) = x (m, k) · w (n, k)ᵀ */
    static double[] matmul(double[] x, double[] w, int m, int n, int k) {
        double[] y = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
                y[i * n + j] = s;
            }
        return y;
    }

    static double[] rmsNorm(double[] x, double[] g, int rows, int d, double eps) {
        double[] y = new double[rows * d];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += x[r * d + i] * x[r * d + i];
            double inv = 1 / Math.sqrt(ss / d + eps);
            for (int i = 0; i < d; i++) y[r * d + i] = x[r * d + i] * inv * g[i];
        }
        return y;
    }

    static double[] rope(double[] x, int rows, int heads, int hd, int[] pos, float[] invFreq) {
        double[] y = x.clone();
        int half = hd / 2;
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < half; i++) {
                double angle = (float) (pos[r] * invFreq[i]), c = Math.cos(angle), s = Math.sin(angle);
                for (int h = 0; h < heads; h++) {
                    int base = (r * heads + h) * hd;
                    double a = x[base + i], b = x[base + i + half];
                    y[base + i] = a * c - b * s;
                    y[base + i + half] = b * c + a * s;
                }
            }
        return y;
    }

    /** causal GQA attention over B sequences of T positions: q (B,T,H,hd), k, v (B,T,KV,hd) */
    static double[] attention(double[] q, double[] k, double[] v, int B, int T, int H, int KV, int hd, double scale) {
        double[] out = new double[B * T * H * hd];
        int group = H / KV;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < H; h++) {
                    int qo = ((b * T + t) * H + h) * hd, kvh = h / group;
                    double[] p = new double[t + 1];
                    double max = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int s = 0; s <= t; s++) {
                        int ko = ((b * T + s) * KV + kvh) * hd;
                        double dot = 0;
                        for (int i = 0; i < hd; i++) dot += q[qo + i] * k[ko + i];
                        p[s] = dot * scale;
                        max = Math.max(max, p[s]);
                    }
                    for (int s = 0; s <= t; s++) sum += (p[s] = Math.exp(p[s] - max));
                    for (int s = 0; s <= t; s++) {
                        int vo = ((b * T + s) * KV + kvh) * hd;
                        for (int i = 0; i < hd; i++) out[qo + i] += p[s] / sum * v[vo + i];
                    }
                }
        return out;
    }

    static double silu(double g) { return g / (1 + Math.exp(-g)); }

    // ---------------------------------------------------------------- tests

    @Test
    void matmulGradientsOfInputAndWeight() {
        int m = 5, n = 7, k = 9;
        float[] x = rand(m * k, 1), w = rand(n * k, 1), dy = rand(m * n, 1);
        Tensor wt = Tensor.ofFloats("w", w, n, k);
        float[] dx = new float[m * k];
        backend.matmulBackwardInput(dx, dy, m, wt);
        check("matmul dx", x, dx, xs -> dot(toDouble(dy), matmul(xs, toDouble(w), m, n, k)));
        float[] dw = rand(n * k, 1), before = dw.clone(); // accumulates: the old contents stay
        backend.matmulBackwardWeight(dw, dy, x, m, n, k);
        for (int i = 0; i < dw.length; i++) dw[i] -= before[i];
        check("matmul dw", w, dw, ws -> dot(toDouble(dy), matmul(toDouble(x), ws, m, n, k)));
    }

    @Test
    void rmsNormGradientsOfInputAndWeight() {
        int rows = 3, d = 11;
        float eps = 1e-5f;
        float[] x = rand(rows * d, 2), g = rand(d, 1.5f), dy = rand(rows * d, 1);
        float[] dx = new float[rows * d], dg = new float[d];
        backend.rmsNormBackward(dx, dg, dy, x, Tensor.ofFloats("g", g, d), rows, eps);
        check("rmsNorm dx", x, dx, xs -> dot(toDouble(dy), rmsNorm(xs, toDouble(g), rows, d, eps)));
        check("rmsNorm dWeight", g, dg, gs -> dot(toDouble(dy), rmsNorm(toDouble(x), gs, rows, d, eps)));
    }

    @Test
    void ropeGradientIsTheInverseRotation() {
        int rows = 4, heads = 3, hd = 10;
        int[] pos = {0, 3, 7, 100};
        float[] invFreq = new float[hd / 2];
        for (int i = 0; i < hd / 2; i++) invFreq[i] = (float) Math.pow(10000, -2.0 * i / hd);
        float[] x = rand(rows * heads * hd, 1), dy = rand(rows * heads * hd, 1);
        float[] dx = dy.clone();
        backend.ropeBackward(dx, rows, heads, hd, pos, invFreq);
        check("rope dx", x, dx, xs -> dot(toDouble(dy), rope(xs, rows, heads, hd, pos, invFreq)));
    }

    @Test
    void attentionGradientsOfQueriesKeysValuesForGqaGroups() {
        for (int[] heads : new int[][] {{2, 2}, {4, 2}, {4, 1}}) {
            int B = 2, T = 5, H = heads[0], KV = heads[1], hd = 6;
            float scale = (float) (1 / Math.sqrt(hd));
            float[] q = rand(B * T * H * hd, 1.5), k = rand(B * T * KV * hd, 1.5), v = rand(B * T * KV * hd, 1), dy = rand(B * T * H * hd, 1);
            float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
            backend.attentionBackward(dq, dk, dv, dy, q, k, v, B, T, H, KV, hd, scale);
            String g = " (heads " + H + "/" + KV + ")";
            check("attention dq" + g, q, dq, qs -> dot(toDouble(dy), attention(qs, toDouble(k), toDouble(v), B, T, H, KV, hd, scale)));
            check("attention dk" + g, k, dk, ks -> dot(toDouble(dy), attention(toDouble(q), ks, toDouble(v), B, T, H, KV, hd, scale)));
            check("attention dv" + g, v, dv, vs -> dot(toDouble(dy), attention(toDouble(q), toDouble(k), vs, B, T, H, KV, hd, scale)));
        }
    }

    @Test
    void swigluGradientsOfGateAndUp() {
        int n = 37;
        float[] gate = rand(n, 4), up = rand(n, 2), dy = rand(n, 1);
        float[] dGate = new float[n], dUp = new float[n];
        backend.swigluBackward(dGate, dUp, dy, gate, up, n);
        check("swiglu dGate", gate, dGate, gs -> {
            double s = 0;
            for (int i = 0; i < n; i++) s += dy[i] * silu(gs[i]) * up[i];
            return s;
        });
        check("swiglu dUp", up, dUp, us -> {
            double s = 0;
            for (int i = 0; i < n; i++) s += dy[i] * silu(gate[i]) * us[i];
            return s;
        });
    }

    @Test
    void embeddingGradientScatterAddsRepeatedIds() {
        int vocab = 6, d = 5;
        int[] ids = {3, 1, 3, 5, 3};
        float[] table = rand(vocab * d, 1), dy = rand(ids.length * d, 1);
        float[] dTable = new float[vocab * d];
        backend.embeddingBackward(dTable, dy, ids, d);
        check("embedding dTable", table, dTable, ts -> {
            double s = 0;
            for (int t = 0; t < ids.length; t++)
                for (int i = 0; i < d; i++) s += dy[t * d + i] * ts[ids[t] * d + i];
            return s;
        });
        for (int i = 0; i < d; i++) { // rows never looked up get nothing
            assertEquals(0f, dTable[0 * d + i]);
            assertEquals(0f, dTable[2 * d + i]);
        }
    }

    @Test
    void crossEntropyLossAndGradientWithIgnoredRows() {
        int rows = 4, vocab = 13;
        float[] logits = rand(rows * vocab, 5);
        int[] targets = {2, Backend.IGNORE_INDEX, 12, 0};
        Function<double[], Double> loss = ls -> {
            double sum = 0;
            int count = 0;
            for (int r = 0; r < rows; r++) {
                if (targets[r] == Backend.IGNORE_INDEX) continue;
                double lse = 0;
                for (int i = 0; i < vocab; i++) lse += Math.exp(ls[r * vocab + i]);
                sum += Math.log(lse) - ls[r * vocab + targets[r]];
                count++;
            }
            return sum / count;
        };
        float[] d = new float[rows * vocab];
        float gradScale = 0.5f;
        double value = backend.crossEntropy(d, logits, targets, rows, vocab, gradScale);
        assertEquals(loss.apply(toDouble(logits)), value, 1e-6 * value);
        for (int i = 0; i < d.length; i++) d[i] /= gradScale;
        check("crossEntropy dLogits", logits, d, loss);
        for (int i = 0; i < vocab; i++) assertEquals(0f, d[vocab + i], "ignored row gets no gradient");
        // in place (dLogits = logits) gives the same, and no dLogits gives the loss only
        float[] inPlace = logits.clone();
        assertEquals(value, backend.crossEntropy(inPlace, inPlace, targets, rows, vocab, 1f), 0);
        for (int i = 0; i < d.length; i++) assertEquals(d[i], inPlace[i], 1e-7);
        assertEquals(value, backend.crossEntropy(null, logits, targets, rows, vocab, 1f), 0);
        assertTrue(Double.isNaN(backend.crossEntropy(null, logits, new int[] {-100, -100, -100, -100}, rows, vocab, 1f)));
        assertThrows(IllegalArgumentException.class, () -> backend.crossEntropy(null, logits, new int[] {0, 13, 0, 0}, rows, vocab, 1f));
    }

    @Test
    void crossEntropyOfLargeLogitsStaysFinite() {
        float[] logits = {1000f, 0f, -1000f};
        double value = backend.crossEntropy(null, logits, new int[] {1}, 1, 3, 1f);
        assertEquals(1000.0, value, 1e-3); // −log softmax = log(e^1000 + 1 + e^-1000) − 0 ≈ 1000
    }
}
