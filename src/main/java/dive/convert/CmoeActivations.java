package dive.convert;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.model.DenseFfn;
import dive.model.LlamaModel;
import dive.model.RoutingObserver;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.util.Arrays;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * CMoE's calibration statistics of one FFN layer: which channels are <i>active</i> on each calibration token.
 *
 * <p>Per token n the activation score s_n (I) is taken, and its K_a channels of largest |s_nj| are marked active
 * (ties → lower index; the authors' "ATopK", K_a = 10 by default): a binary marker matrix B (N, I) with exactly K_a ones
 * per row. Everything CMoE's carving needs is a function of B:
 * <pre>
 * a_j   = Σ_n B_nj                     activation count; rate_j = a_j / N
 * C_jk  = Σ_n B_nj · B_nk              co-activation count (C_jj = a_j)
 * ‖B_:j − B_:k‖₁ = a_j + a_k − 2 C_jk  Hamming distance between two channels' activation patterns
 * </pre>
 * B is kept sparse: the K_a marked channel indices per token, {@code 4·N·K_a} bytes per layer (TinyLlama-1.1B, the
 * authors' 8 × 2048 = 16,384 calibration tokens, K_a = 10: 655 KB per layer, 14.4 MB for all 22 layers; the arrays grow by doubling, so up to twice that). The I × I
 * co-activation matrix (127 MB as int for I = 5632) is never built: the carving needs only C between every channel and
 * the E seed channels (I × E) and, per expert, the row sums of C inside the expert, both computed from the sparse
 * markers (see {@link CmoeCarving}).
 *
 * <p>Two activation scores:
 * <ul>
 * <li>{@link #addScores} with h = SiLU(W_gate x) ⊙ (W_up x), the FFN's intermediate activation, which the dense model's
 *     {@link RoutingObserver#onDenseIntermediate} hands out: what {@link #collect} uses;
 * <li>{@link #addInputs} with the authors' normalised score ĥ_j = SiLU(x̂ · ŵ_gate,j) · (x̂ · ŵ_up,j), x̂ = x/‖x‖₂ and
 *     ŵ the rows of W_gate, W_up scaled to unit L2 norm (a cosine form that ignores per-channel weight scale). It needs
 *     the FFN input x, which the model's observer hands out ({@link RoutingObserver#onFfnInput}): what
 *     {@link #collectNormalized} (the pipeline's {@code cmoe} method) uses.
 * </ul>
 */
public final class CmoeActivations {
    private final int width;
    private final int activeNeurons;
    private final long[] counts;  // (I) a_j
    private int[] markers;        // (N, K_a) marked channels per token, ascending within a token
    private int tokens;

    public CmoeActivations(int width, int activeNeurons) {
        if (width < 1) throw new IllegalArgumentException("width " + width + " (expected ≥ 1)");
        if (activeNeurons < 1 || activeNeurons > width)
            throw new IllegalArgumentException("activeNeurons " + activeNeurons + " (expected 1 ≤ K_a ≤ width = " + width + ")");
        this.width = width;
        this.activeNeurons = activeNeurons;
        this.counts = new long[width];
        this.markers = new int[Math.max(activeNeurons, 1024 * activeNeurons)];
    }

    /** marks the top-K_a channels by |score| of each of the first {@code rows} rows of {@code scores} (rows, I) */
    public void addScores(float[] scores, int rows) {
        if (rows <= 0) return;
        if ((long) rows * width > scores.length)
            throw new IllegalArgumentException(rows + " rows of width " + width + " but the scores have " + scores.length + " values");
        long needed = (long) (tokens + rows) * activeNeurons;
        if (needed > Integer.MAX_VALUE - 8) throw new IllegalStateException("more than " + (Integer.MAX_VALUE / activeNeurons) + " calibration tokens");
        if (needed > markers.length) markers = Arrays.copyOf(markers, (int) Math.min(Integer.MAX_VALUE - 8, Math.max(needed, 2L * markers.length)));
        int k = activeNeurons;
        float[] best = new float[k];
        int[] index = new int[k];
        for (int n = 0; n < rows; n++) {
            int off = n * width, size = 0;
            // best[0..size) descending by |score|, equal values in ascending index (a later index never displaces an equal one)
            for (int j = 0; j < width; j++) {
                float v = Math.abs(scores[off + j]);
                if (Float.isNaN(v)) throw new IllegalArgumentException("activation score of token " + (tokens + n) + ", channel " + j + " is NaN");
                if (size == k && !(v > best[k - 1])) continue;
                int p = size == k ? k - 1 : size++;
                while (p > 0 && v > best[p - 1]) { best[p] = best[p - 1]; index[p] = index[p - 1]; p--; }
                best[p] = v;
                index[p] = j;
            }
            int[] marked = Arrays.copyOf(index, k);
            Arrays.sort(marked);
            System.arraycopy(marked, 0, markers, (tokens + n) * k, k);
            for (int j : marked) counts[j]++;
        }
        tokens += rows;
    }

    /**
     * Marks channels by the authors' normalised score (see the class comment) of FFN inputs {@code x} (rows, d).
     *
     * @param gate W_gate (I, d) row-major
     * @param up   W_up (I, d) row-major
     */
    public void addInputs(float[] x, int rows, int hidden, float[] gate, float[] up) {
        addScores(normalizedScores(x, rows, hidden, gate, up, width), rows);
    }

    /**
     * ĥ (rows, I): ĥ_nj = SiLU(x̂_n · ŵ_gate,j) · (x̂_n · ŵ_up,j) with every x_n and every weight row scaled to unit L2
     * norm (a zero vector stays zero); accumulated in double.
     */
    public static float[] normalizedScores(float[] x, int rows, int hidden, float[] gate, float[] up, int width) {
        if ((long) rows * hidden > x.length) throw new IllegalArgumentException(rows + " rows of x of width " + hidden + " but x has " + x.length + " values");
        if ((long) width * hidden != gate.length || gate.length != up.length)
            throw new IllegalArgumentException("W_gate has " + gate.length + " and W_up " + up.length + " values (expected " + width + "·" + hidden + ")");
        double[] gateNorm = rowNorms(gate, width, hidden), upNorm = rowNorms(up, width, hidden);
        double[] xNorm = rowNorms(x, rows, hidden);
        float[] out = new float[rows * width];
        for (int n = 0; n < rows; n++) {
            int xo = n * hidden;
            for (int j = 0; j < width; j++) {
                int wo = j * hidden;
                double g = 0, u = 0;
                for (int i = 0; i < hidden; i++) {
                    g += (double) x[xo + i] * gate[wo + i];
                    u += (double) x[xo + i] * up[wo + i];
                }
                out[n * width + j] = normalized(g, u, xNorm[n], gateNorm[j], upNorm[j]);
            }
        }
        return out;
    }

    /** ĥ = SiLU(g / (‖x‖·‖w_gate‖)) · u / (‖x‖·‖w_up‖) from the raw dot products g = x · w_gate, u = x · w_up */
    static float normalized(double g, double u, double xNorm, double gateNorm, double upNorm) {
        g = scaled(g, xNorm * gateNorm);
        u = scaled(u, xNorm * upNorm);
        return (float) (g / (1 + Math.exp(-g)) * u);
    }

    private static double scaled(double dot, double norms) { return norms == 0 ? 0 : dot / norms; }

    /** L2 norm of each of {@code rows} rows of width {@code cols} */
    static double[] rowNorms(float[] a, int rows, int cols) {
        double[] out = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int i = 0; i < cols; i++) { double v = a[r * cols + i]; s += v * v; }
            out[r] = Math.sqrt(s);
        }
        return out;
    }

    public int width() { return width; }

    /** K_a */
    public int activeNeurons() { return activeNeurons; }

    /** N, the tokens seen */
    public int tokens() { return tokens; }

    /** a_j, the tokens on which channel j was marked active (I), a copy */
    public long[] activationCounts() { return counts.clone(); }

    /** a_j / N (I) */
    public double[] activationRates() {
        if (tokens == 0) throw new IllegalStateException("no calibration tokens seen");
        double[] r = new double[width];
        for (int j = 0; j < width; j++) r[j] = (double) counts[j] / tokens;
        return r;
    }

    /** the K_a channels marked on token n, ascending (a copy) */
    public int[] markers(int n) {
        if (n < 0 || n >= tokens) throw new IndexOutOfBoundsException("token " + n + " of " + tokens);
        return Arrays.copyOfRange(markers, n * activeNeurons, (n + 1) * activeNeurons);
    }

    /** the markers of all tokens (N, K_a), row-major; owned by this object, read-only by contract */
    int[] markerMatrix() { return markers; }

    /**
     * Per-layer activations of a dense model over {@code windows} (each from an empty context), by its own forward:
     * layer ℓ+1 sees the dense outputs of layer ℓ, score = h (see the class comment); batching as
     * {@link CalibrationStatistics}. Every layer's h comes to the host once per batch (tokens × I floats) and is reduced
     * to its markers at once; what stays is {@code 4·N·K_a} bytes plus I counts per layer.
     */
    public static CmoeActivations[] collect(LlamaModel dense, List<int[]> windows, int activeNeurons, IntConsumer windowsDone) {
        if (dense.isMoe()) throw new IllegalArgumentException(dense.source() + ": CMoE calibration needs a dense (llama) model");
        if (windows.isEmpty()) throw new IllegalArgumentException("no calibration windows");
        int layers = dense.config().numHiddenLayers();
        CmoeActivations[] out = new CmoeActivations[layers];
        for (int l = 0; l < layers; l++) out[l] = new CmoeActivations(((DenseFfn) dense.feedForward(l)).intermediateSize(), activeNeurons);
        RoutingObserver observer = new RoutingObserver() {
            @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
            @Override public void onDenseIntermediate(int layer, int tokens, int w, float[] h) { out[layer].addScores(h, tokens); }
        };
        CalibrationStatistics.observe(dense, windows, observer, windowsDone);
        return out;
    }

    /**
     * Per-layer activations of a dense model over {@code windows} by the authors' normalised score ĥ (see the class
     * comment), from each layer's FFN input x ({@link RoutingObserver#onFfnInput}) on the dense model's own forward
     * (layer ℓ+1 sees the dense outputs of layer ℓ; batching as {@link CalibrationStatistics}). Per layer and batch of
     * N_b tokens the raw products x·W_gateᵀ and x·W_upᵀ (N_b, I) are computed on the backend and come to the host with x
     * (N_b, d); ĥ = SiLU(g/(‖x‖‖w_gate‖))·u/(‖x‖‖w_up‖) is reduced to its markers at once and dropped. What stays is
     * {@code 4·N·K_a} bytes plus I counts per layer, and the weight rows' norms (2·I doubles per layer); the transient
     * part is one layer's batch: 2·N_b·I floats on the backend and 2·N_b·I + N_b·d floats on the host (TinyLlama-1.1B,
     * N_b = 2048, I = 5632, d = 2048: 92 MB on the backend, 109 MB on the host).
     */
    public static CmoeActivations[] collectNormalized(LlamaModel dense, List<int[]> windows, int activeNeurons, IntConsumer windowsDone) {
        if (dense.isMoe()) throw new IllegalArgumentException(dense.source() + ": CMoE calibration needs a dense (llama) model");
        if (windows.isEmpty()) throw new IllegalArgumentException("no calibration windows");
        int layers = dense.config().numHiddenLayers();
        CmoeActivations[] out = new CmoeActivations[layers];
        double[][] gateNorm = new double[layers][], upNorm = new double[layers][];
        for (int l = 0; l < layers; l++) {
            DenseFfn ffn = (DenseFfn) dense.feedForward(l);
            out[l] = new CmoeActivations(ffn.intermediateSize(), activeNeurons);
            gateNorm[l] = rowNorms(ffn.gate());
            upNorm[l] = rowNorms(ffn.up());
        }
        RoutingObserver observer = new RoutingObserver() {
            @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
            @Override public void onFfnInput(Backend b, int layer, int tokens, int hidden, DeviceTensor x) {
                DenseFfn ffn = (DenseFfn) dense.feedForward(layer);
                int width = ffn.intermediateSize();
                float[] g = new float[tokens * width], u = new float[tokens * width], xs = new float[tokens * hidden];
                try (DeviceTensor gd = b.allocate(DType.F32, (long) tokens * width); DeviceTensor ud = b.allocate(DType.F32, (long) tokens * width)) {
                    b.matmul(gd, x, tokens, ffn.gate());  // (N_b, I)
                    b.matmul(ud, x, tokens, ffn.up());    // (N_b, I)
                    b.read(gd, 0, g, g.length);
                    b.read(ud, 0, u, u.length);
                }
                b.read(x, 0, xs, xs.length);
                double[] xNorm = rowNorms(xs, tokens, hidden);
                for (int n = 0; n < tokens; n++)
                    for (int j = 0; j < width; j++) {
                        int i = n * width + j;
                        g[i] = normalized(g[i], u[i], xNorm[n], gateNorm[layer][j], upNorm[layer][j]);
                    }
                out[layer].addScores(g, tokens);
            }
        };
        CalibrationStatistics.observe(dense, windows, observer, windowsDone);
        return out;
    }

    /** the L2 norm of every row of a (rows, cols) weight, in double */
    static double[] rowNorms(Tensor w) {
        int rows = w.rows(), cols = w.cols();
        double[] out = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int i = 0; i < cols; i++) { double v = w.getFloat((long) r * cols + i); s += v * v; }
            out[r] = Math.sqrt(s);
        }
        return out;
    }
}
