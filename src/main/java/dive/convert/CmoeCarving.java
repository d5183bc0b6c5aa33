package dive.convert;

import dive.model.DenseFfn;
import dive.model.LlamaModel;
import dive.tensor.Tensor;

import java.util.Arrays;
import java.util.function.IntToDoubleFunction;

/**
 * The CMoE baseline's carving (Pei et al., "CMoE: Fast Carving of Mixture-of-Experts for Efficient LLM Inference",
 * arXiv 2502.04416; ACL 2026 as "Analytical FFN-to-MoE Restructuring via Activation Pattern Analysis"): one dense FFN
 * of width I becomes a shared expert plus E equal routed experts and an analytical router, from calibration activations
 * alone — no training. Widths: {@link CmoeSettings}; statistics: {@link CmoeActivations}; routing: {@link CmoeRouter}.
 *
 * <h2>Per layer, with B (N, I) the active-channel markers (K_a per token) and a_j = Σ_n B_nj</h2>
 * <ol>
 * <li><b>Shared expert</b>: the {@code sharedWidth} channels with the highest activation count a_j (ties → lower
 *     index). Every token uses them.
 * <li><b>Seeds</b>: among the remaining R = E·m channels (m = {@code expertWidth}), the E with the highest a_j, in
 *     descending order (ties → lower index): seed s_e starts routed expert e.
 * <li><b>Balanced clustering by co-activation</b>: cost of channel j in expert e = the L1 (Hamming) distance between
 *     their activation patterns, ‖B_:j − B_:s_e‖₁ = a_j + a_s_e − 2·C_j,s_e (C = co-activation counts); the R channels
 *     are assigned to the E experts, exactly m each, minimising the total cost ({@link BalancedAssignment}; the authors
 *     solve the same linear assignment problem with Jonker–Volgenant). One round, as the authors' code runs it
 *     (their k-means loop has {@code max_iters = 1}): the seeds are not re-estimated before assigning.
 * <li><b>Representative channel</b> of expert e: its member j closest in L1 to the expert's mean pattern
 *     μ_n = (1/m)·Σ_{u∈e} B_nu; since m·‖B_:j − μ‖₁ = Σ_{u∈e} a_u + m·a_j − 2·Σ_{u∈e} C_ju, the member minimising
 *     m·a_j − 2·Σ_{u∈e} C_ju (ties → lower index), in exact integers.
 * <li><b>Analytical router</b> (E, d) ×2: row e of {@code routerGate} / {@code routerUp} = the representative's W_gate /
 *     W_up row scaled to unit L2 norm; a token's expert scores are the representative's (normalised) activation,
 *     |(r_up,e · x)·SiLU(r_gate,e · x)| — see {@link CmoeRouter}. Load-balancing bias b = 0 (it moves only during
 *     fine-tuning).
 * </ol>
 * Experts are then slices of the dense FFN (W_gate, W_up rows and W_down columns at their channel indices); with all
 * experts used the MoE reproduces the dense FFN exactly.
 *
 * <h2>Defaults taken from the authors' code</h2>
 * K_a = 10, S2A2E16 (2 shared + 2 active of 16 slices: 25 % of the FFN active), calibration on 8 sequences × 2048 tokens
 * of WikiText-2 (their carving sees only the first batch of 8), bias step γ = 0.001.
 *
 * <h2>What differs from the paper's code, and why</h2>
 * <ul>
 * <li>Calibration runs on the dense model's own activations (layer ℓ+1 sees dense outputs), as every method here does
 *     ({@link CalibrationStatistics}); the authors feed each layer the outputs of the already carved MoE layers before
 *     it. The sequential variant needs the carved layer's forward inside calibration: possible later, not done here.
 * <li>{@link CmoeActivations#collect} scores channels by the FFN's intermediate h; the authors score by ĥ, the cosine
 *     form with x and weight rows normalised ({@link CmoeActivations#addInputs}, {@link CmoeActivations#collectNormalized}
 *     from the FFN input x the model's observer hands out): the pipeline's {@link CmoeMethod} uses ĥ.
 * <li>When the slice count does not divide I, the leftover channels join the shared expert (the authors drop them).
 * <li>Ties are broken by index everywhere (the authors' {@code torch.topk} and {@code lapjv} break them arbitrarily);
 *     the balanced assignment is an exact optimum like theirs, though another optimum may be chosen when several exist.
 * </ul>
 *
 * <p>Memory per layer: the markers (4·N·K_a bytes, held for every layer by {@link CmoeActivations}) plus I × E ints of
 * co-activation counts with the seeds and R × E longs of assignment cost, under 1 MB for TinyLlama-1.1B (I = 5632,
 * S2A2E16: E = 14, R = 4928); no I × I matrix is built. Time: 0.8 s for one such layer on random markers (16,384
 * tokens, one core). The whole carving is deterministic (no randomness at all).
 */
public final class CmoeCarving {
    private CmoeCarving() {}

    /** the carving of every layer of a model */
    public record Result(CmoeSettings settings, CmoeLayer[] layers) {}

    /** carves every layer of {@code dense} from its activations ({@link CmoeActivations#collect}) */
    public static Result carve(LlamaModel dense, CmoeActivations[] activations, CmoeSettings settings) {
        int layers = dense.config().numHiddenLayers(), hidden = dense.config().hiddenSize();
        if (activations.length != layers)
            throw new IllegalArgumentException("activations of " + activations.length + " layers for a model of " + layers);
        CmoeLayer[] out = new CmoeLayer[layers];
        for (int l = 0; l < layers; l++) {
            DenseFfn ffn = (DenseFfn) dense.feedForward(l);
            Tensor gate = ffn.gate(), up = ffn.up();
            out[l] = carve(activations[l], settings, hidden, i -> gate.getFloat(i), i -> up.getFloat(i));
        }
        return new Result(settings, out);
    }

    /**
     * Carves one layer.
     *
     * @param gate W_gate (I, d) row-major
     * @param up   W_up (I, d) row-major
     */
    public static CmoeLayer carve(CmoeActivations activations, CmoeSettings settings, float[] gate, float[] up, int hidden) {
        long size = (long) activations.width() * hidden;
        if (gate.length != size || up.length != size)
            throw new IllegalArgumentException("W_gate has " + gate.length + " and W_up " + up.length + " values (expected I·d = " + size + ")");
        return carve(activations, settings, hidden, i -> gate[i], i -> up[i]);
    }

    /** one layer, weights read element by element (only the E representative rows are read) */
    private static CmoeLayer carve(CmoeActivations act, CmoeSettings settings, int hidden, IntToDoubleFunction gate, IntToDoubleFunction up) {
        int width = act.width();
        settings.requireIntermediateSize(width);
        if (act.activeNeurons() != settings.activeNeurons())
            throw new IllegalArgumentException("activeNeurons " + settings.activeNeurons() + " but the activations were marked with K_a = " + act.activeNeurons());
        if (act.tokens() == 0) throw new IllegalArgumentException("activations: no calibration tokens seen");
        if (hidden < 1) throw new IllegalArgumentException("hidden " + hidden + " (expected ≥ 1)");
        long[] count = act.activationCounts();
        int experts = settings.experts(), m = settings.expertWidth();

        // 1. shared expert; the rest are the routed channels, ascending
        int[] byRate = descendingByCount(count, allChannels(width));
        int[] shared = Arrays.copyOf(byRate, settings.sharedWidth());
        Arrays.sort(shared);
        boolean[] isShared = new boolean[width];
        for (int j : shared) isShared[j] = true;
        int[] routed = new int[width - shared.length];
        for (int j = 0, r = 0; j < width; j++) if (!isShared[j]) routed[r++] = j;

        // 2. seeds: the E routed channels of highest count, descending
        int[] seeds = Arrays.copyOf(descendingByCount(count, routed), experts);
        int[] seedSlot = new int[width];
        Arrays.fill(seedSlot, -1);
        for (int e = 0; e < experts; e++) seedSlot[seeds[e]] = e;

        // 3. co-activation with the seeds (I, E) → Hamming cost (R, E) → balanced assignment
        int k = act.activeNeurons(), tokens = act.tokens();
        int[] markers = act.markerMatrix();
        int[] withSeed = new int[width * experts];
        int[] present = new int[k];
        for (int n = 0; n < tokens; n++) {
            int off = n * k, found = 0;
            for (int i = 0; i < k; i++) { int s = seedSlot[markers[off + i]]; if (s >= 0) present[found++] = s; }
            for (int f = 0; f < found; f++)
                for (int i = 0; i < k; i++) withSeed[markers[off + i] * experts + present[f]]++;
        }
        long[][] cost = new long[routed.length][experts];
        for (int r = 0; r < routed.length; r++) {
            int j = routed[r];
            for (int e = 0; e < experts; e++) cost[r][e] = count[j] + count[seeds[e]] - 2L * withSeed[j * experts + e];
        }
        int[] capacity = new int[experts];
        Arrays.fill(capacity, m);
        int[] cluster = BalancedAssignment.assign(cost, capacity);
        int[][] members = new int[experts][m];
        int[] fill = new int[experts];
        int[] expertOf = new int[width];
        Arrays.fill(expertOf, -1);
        for (int r = 0; r < routed.length; r++) {
            int e = cluster[r];
            members[e][fill[e]++] = routed[r];  // routed is ascending, so members are too
            expertOf[routed[r]] = e;
        }

        // 4. representatives: argmin over members of m·a_j − 2·Σ_{u∈e} C_ju, Σ_u C_ju = Σ_{n: j marked} (members of e marked on n)
        long[] inExpert = new long[width];
        int[] perExpert = new int[experts];
        for (int n = 0; n < tokens; n++) {
            int off = n * k;
            for (int i = 0; i < k; i++) { int e = expertOf[markers[off + i]]; if (e >= 0) perExpert[e]++; }
            for (int i = 0; i < k; i++) { int j = markers[off + i], e = expertOf[j]; if (e >= 0) inExpert[j] += perExpert[e]; }
            for (int i = 0; i < k; i++) { int e = expertOf[markers[off + i]]; if (e >= 0) perExpert[e] = 0; }
        }
        int[] representatives = new int[experts];
        for (int e = 0; e < experts; e++) {
            long best = Long.MAX_VALUE;
            for (int j : members[e]) {
                long score = (long) m * count[j] - 2 * inExpert[j];
                if (score < best) { best = score; representatives[e] = j; }
            }
        }

        // 5. analytical router: the representatives' unit-norm W_gate and W_up rows
        float[] routerGate = new float[experts * hidden], routerUp = new float[experts * hidden];
        for (int e = 0; e < experts; e++) {
            unitRow(gate, representatives[e], hidden, routerGate, e);
            unitRow(up, representatives[e], hidden, routerUp, e);
        }
        return new CmoeLayer(shared, members, representatives, routerGate, routerUp, new float[experts], hidden);
    }

    /** out[e·d ..) = row {@code row} of a (·, d) matrix / its L2 norm (zeros stay zeros); the norm in double */
    private static void unitRow(IntToDoubleFunction matrix, int row, int hidden, float[] out, int e) {
        long base = (long) row * hidden;
        double[] v = new double[hidden];
        double norm = 0;
        for (int i = 0; i < hidden; i++) { v[i] = matrix.applyAsDouble(Math.toIntExact(base + i)); norm += v[i] * v[i]; }
        norm = Math.sqrt(norm);
        for (int i = 0; i < hidden; i++) out[e * hidden + i] = norm == 0 ? 0f : (float) (v[i] / norm);
    }

    private static int[] allChannels(int width) {
        int[] a = new int[width];
        for (int j = 0; j < width; j++) a[j] = j;
        return a;
    }

    /** {@code among} ordered by descending count, ties → lower index */
    static int[] descendingByCount(long[] count, int[] among) {
        return Arrays.stream(among).boxed()
                .sorted((a, b) -> count[a] != count[b] ? Long.compare(count[b], count[a]) : Integer.compare(a, b))
                .mapToInt(Integer::intValue).toArray();
    }
}
