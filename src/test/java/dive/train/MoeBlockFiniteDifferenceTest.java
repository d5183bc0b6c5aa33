package dive.train;

import dive.backend.DeviceScope;
import dive.backend.DeviceTensor;
import dive.backend.Backend;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link MoeBlock}'s backward against central finite differences of an independent double-precision implementation
 * of the block written here from the definition (router logits, top-k with distinct logits or soft softmax(z/t),
 * SwiGLU experts with output biases, weighted sum), on the scalar loss L = Σ y ⊙ r + c · aux with a fixed random r
 * and Mixtral's load-balancing loss aux (f constant). Every element of the router, of every expert's w1, w3, w2 and
 * bias, and of the input x is checked (h = 1e-5 in double); per tensor max|ours − fd| ≤ 2e-4 · max|fd|. The forward
 * output is checked against the same reference. Top-k cases need a margin between the k-th and (k+1)-th logit of
 * every token far above the perturbation, asserted first. The "+ shared" cases add Qwen2-MoE's shared expert
 * (SwiGLU of width S, its own gate, up and down) behind its sigmoid gate σ(w_s · x), whose every element is checked too.
 */
class MoeBlockFiniteDifferenceTest {
    static final int E = 3, D = 6, I = 5, N = 5, S = 4;

    record Case(String name, int k, RoutingMode mode, double auxCoef, Backend backend, boolean shared) {
        Case(String name, int k, RoutingMode mode, double auxCoef, Backend backend) { this(name, k, mode, auxCoef, backend, false); }

        @Override public String toString() { return name + " on " + backend.name(); }
    }

    static Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        for (Backend b : new Backend[] {new ScalarBackend(), new VectorBackend(2)}) {
            cases.add(Arguments.of(new Case("top-2", 2, RoutingMode.TOP_K, 0, b)));
            cases.add(Arguments.of(new Case("top-1", 1, RoutingMode.TOP_K, 0, b)));
            cases.add(Arguments.of(new Case("top-2 + aux 0.7", 2, RoutingMode.TOP_K, 0.7, b)));
            cases.add(Arguments.of(new Case("soft t=0.5", 2, RoutingMode.soft(0.5), 0, b)));
            cases.add(Arguments.of(new Case("soft t=0.05 + aux 0.7", 1, RoutingMode.soft(0.05), 0.7, b)));
            cases.add(Arguments.of(new Case("top-2 + shared", 2, RoutingMode.TOP_K, 0, b, true)));
            cases.add(Arguments.of(new Case("soft t=0.5 + shared + aux 0.7", 2, RoutingMode.soft(0.5), 0.7, b, true)));
        }
        return cases.stream();
    }

    /**
     * all the block's numbers in double: router (E·D), then per expert w1 (I·D), w3 (I·D), w2 (D·I), bias (D), then x
     * (N·D), then the shared expert's gate (S·D), up (S·D), down (D·S) and its sigmoid gate w_s (D), used by "+ shared"
     */
    static final int ROUTER = 0, EXPERTS = E * D, PER_EXPERT = 3 * I * D + D, X = EXPERTS + E * PER_EXPERT, SG = X + N * D,
            SU = SG + S * D, SD = SU + S * D, SW = SD + D * S, TOTAL = SW + D;

    static int w1(int e) { return EXPERTS + e * PER_EXPERT; }
    static int w3(int e) { return w1(e) + I * D; }
    static int w2(int e) { return w3(e) + I * D; }
    static int bias(int e) { return w2(e) + D * I; }

    /** y (N, D) of the reference block; logits (N, E) written when not null */
    static double[] reference(double[] v, int k, RoutingMode mode, double[] logits, boolean shared) {
        double[] y = new double[N * D];
        for (int t = 0; t < N; t++) {
            double[] z = new double[E];
            for (int e = 0; e < E; e++) for (int i = 0; i < D; i++) z[e] += v[ROUTER + e * D + i] * v[X + t * D + i];
            if (logits != null) System.arraycopy(z, 0, logits, t * E, E);
            double[] g = new double[E]; // weight per expert, 0 when not selected
            if (mode instanceof RoutingMode.Soft soft) {
                double max = Arrays.stream(z).max().orElseThrow(), sum = 0;
                for (int e = 0; e < E; e++) sum += g[e] = Math.exp((z[e] - max) / soft.temperature());
                for (int e = 0; e < E; e++) g[e] /= sum;
            } else {
                Integer[] order = {0, 1, 2};
                Arrays.sort(order, (a, b) -> Double.compare(z[b], z[a]));
                double sum = 0;
                for (int s = 0; s < k; s++) sum += g[order[s]] = Math.exp(z[order[s]] - z[order[0]]);
                for (int s = 0; s < k; s++) g[order[s]] /= sum;
            }
            for (int e = 0; e < E; e++) {
                if (g[e] == 0) continue;
                double[] h = new double[I];
                for (int j = 0; j < I; j++) {
                    double a = 0, b = 0;
                    for (int i = 0; i < D; i++) {
                        a += v[w1(e) + j * D + i] * v[X + t * D + i];
                        b += v[w3(e) + j * D + i] * v[X + t * D + i];
                    }
                    h[j] = a / (1 + Math.exp(-a)) * b;
                }
                for (int i = 0; i < D; i++) {
                    double o = v[bias(e) + i];
                    for (int j = 0; j < I; j++) o += v[w2(e) + i * I + j] * h[j];
                    y[t * D + i] += g[e] * o;
                }
            }
            if (shared) swigluBranch(v, t, y);
        }
        return y;
    }

    /** y[t] += σ(w_s · x_t) · down(silu(gate · x_t) ⊙ (up · x_t)), the shared expert of the layout's SG..SW */
    static void swigluBranch(double[] v, int t, double[] y) {
        double[] h = new double[S];
        double z = 0;
        for (int i = 0; i < D; i++) z += v[SW + i] * v[X + t * D + i];
        for (int j = 0; j < S; j++) {
            double a = 0, b = 0;
            for (int i = 0; i < D; i++) {
                a += v[SG + j * D + i] * v[X + t * D + i];
                b += v[SU + j * D + i] * v[X + t * D + i];
            }
            h[j] = a / (1 + Math.exp(-a)) * b;
        }
        double sigma = 1 / (1 + Math.exp(-z));
        for (int i = 0; i < D; i++) {
            double o = 0;
            for (int j = 0; j < S; j++) o += v[SD + i * S + j] * h[j];
            y[t * D + i] += sigma * o;
        }
    }

    /** L = Σ y·r + c · E · Σ_e f_e · P_e, with the top-k counts f fixed at the unperturbed point */
    static double loss(double[] v, int k, RoutingMode mode, double[] r, double auxCoef, double[] fraction, boolean shared) {
        double[] logits = new double[N * E];
        double[] y = reference(v, k, mode, logits, shared);
        double l = 0;
        for (int i = 0; i < y.length; i++) l += y[i] * r[i];
        if (auxCoef > 0) {
            double[] p = new double[E];
            for (int t = 0; t < N; t++) {
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int e = 0; e < E; e++) max = Math.max(max, logits[t * E + e]);
                for (int e = 0; e < E; e++) sum += Math.exp(logits[t * E + e] - max);
                for (int e = 0; e < E; e++) p[e] += Math.exp(logits[t * E + e] - max) / sum / N;
            }
            double aux = 0;
            for (int e = 0; e < E; e++) aux += fraction[e] * p[e];
            l += auxCoef * E * aux;
        }
        return l;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void backwardMatchesFiniteDifferences(Case c) { checkAgainstFiniteDifferences(c, false); }

    /**
     * Stage 0's case: experts frozen and nothing below the block trainable, so the backward skips the experts and the
     * input gradient; the router's gradient must still match finite differences, and the experts get no gradient.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void frozenExpertsWithoutInputGradientStillGiveTheRouterGradient(Case c) { checkAgainstFiniteDifferences(c, true); }

    private void checkAgainstFiniteDifferences(Case c, boolean frozenExperts) {
        Random random = new Random(c.k() * 31 + c.name().length());
        double[] v = new double[TOTAL];
        for (int i = 0; i < TOTAL; i++) v[i] = (float) (random.nextGaussian() * 0.7); // float-representable
        double[] r = new double[N * D];
        for (int i = 0; i < r.length; i++) r[i] = (float) random.nextGaussian();

        // distinct logits: the k-th and (k+1)-th of every token far apart (for top-k selection and for the aux counts)
        double[] logits = new double[N * E];
        reference(v, c.k(), c.mode(), logits, c.shared());
        double[] fraction = new double[E];
        for (int t = 0; t < N; t++) {
            double[] z = Arrays.copyOfRange(logits, t * E, t * E + E), sorted = z.clone();
            Arrays.sort(sorted);
            for (int j = 0; j + 1 < E; j++) assertTrue(sorted[j + 1] - sorted[j] > 1e-3, "token " + t + " logits too close: " + Arrays.toString(z));
            for (int e = 0; e < E; e++) if (z[e] >= sorted[E - c.k()]) fraction[e] += 1.0 / N;
        }

        TensorArena arena = TensorArena.auto();
        Backend b = c.backend();
        Parameter router = param("router", v, ROUTER, E, D, arena);
        TrainableLlama.Linear[] w1 = new TrainableLlama.Linear[E], w3 = new TrainableLlama.Linear[E], w2 = new TrainableLlama.Linear[E];
        Parameter[] bias = new Parameter[E];
        for (int e = 0; e < E; e++) {
            w1[e] = new TrainableLlama.Linear(b, "w1", "experts." + e + ".w1", param("w1", v, w1(e), I, D, arena));
            w3[e] = new TrainableLlama.Linear(b, "w3", "experts." + e + ".w3", param("w3", v, w3(e), I, D, arena));
            w2[e] = new TrainableLlama.Linear(b, "w2", "experts." + e + ".w2", param("w2", v, w2(e), D, I, arena));
            bias[e] = param("bias", v, bias(e), 1, D, arena);
        }
        TrainableLlama.Linear sg = null, su = null, sd = null;
        Parameter sw = null;
        if (c.shared()) {
            sg = new TrainableLlama.Linear(b, "gate_proj", "shared_expert.gate_proj", param("sg", v, SG, S, D, arena));
            su = new TrainableLlama.Linear(b, "up_proj", "shared_expert.up_proj", param("su", v, SU, S, D, arena));
            sd = new TrainableLlama.Linear(b, "down_proj", "shared_expert.down_proj", param("sd", v, SD, D, S, arena));
            sw = Parameter.copyOf("shared_expert_gate", Tensor.ofFloats("sw", toFloats(v, SW, D), 1, D), arena);
        }
        MoeBlock block = new MoeBlock(b, "block", router, w1, w3, w2, bias, c.k(), sg, su, sd, sw);
        if (frozenExperts) {
            for (int e = 0; e < E; e++) {
                for (TrainableLlama.Linear lin : List.of(w1[e], w3[e], w2[e])) lin.weight.setTrainable(false);
                bias[e].setTrainable(false);
                assertFalse(block.expertTrainable(e));
            }
            if (c.shared()) for (TrainableLlama.Linear lin : List.of(sg, su, sd)) lin.weight.setTrainable(false);  // stage 0: its gate trains
        }
        float[] x = new float[N * D];
        for (int i = 0; i < x.length; i++) x[i] = (float) v[X + i];
        DeviceScope scope = new DeviceScope(b);
        DeviceTensor yT = scope.floats((long) N * D), counts = scope.ints(E);
        MoeBlock.Saved saved = block.forward(yT, scope.upload(x), N, c.mode(), null, counts, 0, scope);
        float[] y = b.download(yT);
        double[] yRef = reference(v, c.k(), c.mode(), null, c.shared());
        for (int i = 0; i < y.length; i++) assertEquals(yRef[i], y[i], 1e-5 * (1 + Math.abs(yRef[i])), "forward y[" + i + "]");

        DeviceTensor[] dAux = null;
        if (c.auxCoef() > 0) {
            dAux = new DeviceTensor[1];
            double aux = MoeBlock.auxLoss(b, new MoeBlock.Saved[] {saved}, new int[][] {b.downloadInts(counts)}, dAux, c.auxCoef(), scope);
            double auxRef = (loss(v, c.k(), c.mode(), new double[N * D], 1, fraction, c.shared()));
            assertEquals(auxRef, aux, 1e-6 * auxRef, "aux loss");
        }
        float[] dy = new float[N * D];
        for (int i = 0; i < dy.length; i++) dy[i] = (float) r[i];
        DeviceTensor dxT = frozenExperts ? null : scope.floats((long) N * D);
        block.backward(dxT, scope.upload(dy), saved, dAux == null ? null : dAux[0], !frozenExperts, scope);
        float[] dx = frozenExperts ? null : b.download(dxT);

        double h = 1e-5;
        double[] fd = new double[TOTAL];
        for (int i = 0; i < TOTAL; i++) {
            double keep = v[i];
            v[i] = keep + h;
            double plus = loss(v, c.k(), c.mode(), r, c.auxCoef(), fraction, c.shared());
            v[i] = keep - h;
            double minus = loss(v, c.k(), c.mode(), r, c.auxCoef(), fraction, c.shared());
            v[i] = keep;
            fd[i] = (plus - minus) / (2 * h);
        }
        check("router", router.gradValues(), fd, ROUTER);
        if (c.shared()) check("shared_expert_gate", sw.gradValues(), fd, SW);
        if (frozenExperts) {
            if (c.shared()) for (TrainableLlama.Linear lin : List.of(sg, su, sd))
                for (float g : lin.weight.gradValues()) assertEquals(0f, g, "a frozen shared expert gets no gradient");
            for (int e = 0; e < E; e++)
                for (Parameter p : List.of(w1[e].weight, w3[e].weight, w2[e].weight, bias[e]))
                    for (float g : p.gradValues()) assertEquals(0f, g, "a frozen expert gets no gradient");
            return;
        }
        for (int e = 0; e < E; e++) {
            check("w1[" + e + "]", w1[e].weight.gradValues(), fd, w1(e));
            check("w3[" + e + "]", w3[e].weight.gradValues(), fd, w3(e));
            check("w2[" + e + "]", w2[e].weight.gradValues(), fd, w2(e));
            check("bias[" + e + "]", bias[e].gradValues(), fd, bias(e));
        }
        if (c.shared()) {
            check("shared gate_proj", sg.weight.gradValues(), fd, SG);
            check("shared up_proj", su.weight.gradValues(), fd, SU);
            check("shared down_proj", sd.weight.gradValues(), fd, SD);
        }
        check("x", dx, fd, X);
        if (c.mode() == RoutingMode.TOP_K && c.auxCoef() == 0 && c.k() == 1)
            for (float g : router.gradValues()) assertEquals(0f, g, "top-1 without aux: the weight is softmax of one logit = 1");
    }

    static float[] toFloats(double[] v, int at, int n) {
        float[] f = new float[n];
        for (int i = 0; i < n; i++) f[i] = (float) v[at + i];
        return f;
    }

    static Parameter param(String name, double[] v, int at, int rows, int cols, TensorArena arena) {
        float[] f = toFloats(v, at, rows * cols);
        Tensor t = rows == 1 ? Tensor.ofFloats(name, f, cols) : Tensor.ofFloats(name, f, rows, cols);
        return Parameter.copyOf(name, t, arena);
    }

    static void check(String what, float[] ours, double[] fd, int at) {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < ours.length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(ours[i] - fd[at + i]));
            maxRef = Math.max(maxRef, Math.abs(fd[at + i]));
        }
        if (maxRef == 0) {
            assertEquals(0.0, maxDiff, what + ": finite differences are 0 (an expert without tokens), ours are not");
            return;
        }
        assertTrue(maxDiff <= 2e-4 * maxRef, what + ": max|ours − fd| = " + maxDiff + " vs max|fd| = " + maxRef);
    }
}
