package dive.convert;

import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** CMoE's carving on hand-built activation patterns, and against a brute-force carving from the dense marker matrix. */
class CmoeCarvingTest {

    /** one score row per token: 5 on the marked channels, a small distinct value elsewhere (so the top-K_a is exactly them) */
    static CmoeActivations activations(int width, int k, int[][] marked) {
        CmoeActivations a = new CmoeActivations(width, k);
        float[] scores = new float[marked.length * width];
        for (int n = 0; n < marked.length; n++) {
            for (int j = 0; j < width; j++) scores[n * width + j] = 0.01f * j;
            for (int j : marked[n]) scores[n * width + j] = (n + j) % 2 == 0 ? 5f : -5f;  // |·| counts, not the sign
        }
        a.addScores(scores, marked.length);
        return a;
    }

    /**
     * I = 8, K_a = 4, 9 tokens; channels 0, 1 on every token (shared); {3, 5, 7} fire together, {2, 4, 6} together.
     * Counts a = 9 9 3 4 4 3 3 1 → shared {0, 1}; seeds 3 then 4 (count 4, tie → lower index), so expert 0 grows from 3.
     * Hamming cost a_j + a_s − 2·C_js to (seed 3, seed 4): j=2 (7, 3), 3 (0, 8), 4 (8, 0), 5 (1, 7), 6 (7, 3), 7 (3, 5):
     * the unique optimum is {3, 5, 7} (cost 4) and {2, 4, 6} (cost 6). Representative score 3·a_j − 2·Σ_{u∈e} C_ju:
     * expert 0: j=3 12−16 = −4, j=5 9−12 = −3, j=7 3−4 = −1 → 3; expert 1: j=2 −3, j=4 12−16 = −4, j=6 −3 → 4.
     */
    static final int[][] TOKENS = {{0, 1, 2, 4}, {0, 1, 2, 6}, {0, 1, 2, 4}, {0, 1, 3, 5}, {0, 1, 3, 7}, {0, 1, 4, 6},
            {0, 1, 3, 5}, {0, 1, 4, 6}, {0, 1, 3, 5}};

    /** W_gate row j = (j+1)·e_j, W_up row j = 2·e_j (d = I = 8): unit rows are e_j */
    static float[] diagonal(int width, boolean gate) {
        float[] w = new float[width * width];
        for (int j = 0; j < width; j++) w[j * width + j] = gate ? j + 1 : 2;
        return w;
    }

    static CmoeLayer handLayer() {
        CmoeActivations a = activations(8, 4, TOKENS);
        return CmoeCarving.carve(a, new CmoeSettings(2, 2, 3, 1, 4), diagonal(8, true), diagonal(8, false), 8);
    }

    @Test
    void handBuiltPatternsGiveTheKnownSharedExpertClustersAndRepresentatives() {
        CmoeActivations a = activations(8, 4, TOKENS);
        assertArrayEquals(new long[] {9, 9, 3, 4, 4, 3, 3, 1}, a.activationCounts());
        assertEquals(4.0 / 9, a.activationRates()[3], 1e-15);
        CmoeLayer layer = handLayer();
        assertArrayEquals(new int[] {0, 1}, layer.shared());
        assertArrayEquals(new int[][] {{3, 5, 7}, {2, 4, 6}}, layer.experts());
        assertArrayEquals(new int[] {3, 4}, layer.representatives());
        float[] e3 = new float[8], e4 = new float[8];
        e3[3] = 1; e4[4] = 1;
        assertArrayEquals(e3, Arrays.copyOfRange(layer.routerGate(), 0, 8));
        assertArrayEquals(e4, Arrays.copyOfRange(layer.routerGate(), 8, 16));
        assertArrayEquals(e4, Arrays.copyOfRange(layer.routerUp(), 8, 16));
        assertArrayEquals(new float[2], layer.selectionBias());
        assertEquals(8, layer.intermediateSize());
    }

    @Test
    void routerPicksTheExpertWhoseRepresentativeTheTokenActivates() {
        CmoeLayer layer = handLayer();
        float[] x = new float[8];
        x[4] = 2;  // expert 1's representative: score |2·SiLU(2)|, expert 0's: 0
        double[] s = CmoeRouter.scores(layer, x, 0);
        double expected = 2 * (2 / (1 + Math.exp(-2)));
        assertEquals(0, s[0], 0);
        assertEquals(expected, s[1], 1e-12);
        double[] p = CmoeRouter.probabilities(layer, x, 0);
        assertEquals(1 / (1 + Math.exp(-expected)), p[1], 1e-12);
        assertArrayEquals(new int[] {1}, CmoeRouter.select(p, layer.selectionBias(), 1));
        float[] y = new float[8];
        y[3] = -3;  // |(−3)·SiLU(−3)| > 0 as well: the score is an absolute value
        assertArrayEquals(new int[] {0}, CmoeRouter.select(CmoeRouter.probabilities(layer, y, 0), null, 1));
        // a bias only moves the choice, never the weights (all 1 while the scale σ is 0)
        assertArrayEquals(new int[] {0, 1}, CmoeRouter.select(p, new float[] {1f, 0f}, 2));
        assertArrayEquals(new double[] {1, 1}, CmoeRouter.combineWeights(p, new int[] {0, 1}, null));
        assertArrayEquals(new double[] {1 + p[1] * 0.5}, CmoeRouter.combineWeights(p, new int[] {1}, new float[] {0, 0.5f}), 1e-15);
        // the linear surrogate W = routerGate chooses the same on both tokens
        float[] both = new float[16];
        System.arraycopy(x, 0, both, 0, 8);
        System.arraycopy(y, 0, both, 8, 8);
        float[] negated = layer.routerGate().clone();
        for (int i = 0; i < negated.length; i++) negated[i] = -negated[i];
        assertEquals(0.5, CmoeRouter.topKAgreement(layer, both, 2, 1, layer.routerGate()), 0, "y = −3·e_3 has a negative gate logit");
        assertEquals(0.5, CmoeRouter.topKAgreement(layer, both, 2, 1, negated), 0);
    }

    @Test
    void selectionBiasMovesByOneStepAgainstTheLoad() {
        float[] b = {0, 0, 0};
        CmoeRouter.updateSelectionBias(b, new long[] {5, 1, 3}, CmoeRouter.DEFAULT_BIAS_STEP);
        assertArrayEquals(new float[] {-0.001f, 0.001f, 0}, b);
        assertThrows(IllegalArgumentException.class, () -> CmoeRouter.updateSelectionBias(b, new long[2], 0.1));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> CmoeRouter.select(new double[3], null, 4)).getMessage().contains("topK"));
    }

    @Test
    void randomCarvingMatchesABruteForceCarvingOfTheDenseMarkerMatrix() {
        Random random = new Random(7);
        for (int trial = 0; trial < 30; trial++) {
            int shared = random.nextInt(3), experts = 3, m = 2, width = shared + experts * m, k = 1 + random.nextInt(3), tokens = 5 + random.nextInt(20);
            float[] scores = new float[tokens * width];
            for (int i = 0; i < scores.length; i++) scores[i] = (float) random.nextGaussian() * (1 + i % width % 3);
            CmoeActivations a = new CmoeActivations(width, k);
            a.addScores(scores, tokens);
            float[] gate = new float[width * 4], up = new float[width * 4];
            for (int i = 0; i < gate.length; i++) { gate[i] = (float) random.nextGaussian(); up[i] = (float) random.nextGaussian(); }
            CmoeLayer layer = CmoeCarving.carve(a, new CmoeSettings(shared, experts, m, 1, k), gate, up, 4);

            // dense markers B (N, I) by sorting each row's |score|
            int[][] b = new int[tokens][width];
            for (int n = 0; n < tokens; n++) {
                final int row = n;
                Integer[] order = new Integer[width];
                for (int j = 0; j < width; j++) order[j] = j;
                Arrays.sort(order, (p, q) -> {
                    float vp = Math.abs(scores[row * width + p]), vq = Math.abs(scores[row * width + q]);
                    return vp != vq ? Float.compare(vq, vp) : Integer.compare(p, q);
                });
                for (int i = 0; i < k; i++) b[n][order[i]] = 1;
            }
            long[] count = new long[width];
            for (int[] r : b) for (int j = 0; j < width; j++) count[j] += r[j];
            int[] byCount = CmoeCarving.descendingByCount(count, java.util.stream.IntStream.range(0, width).toArray());
            int[] expectShared = Arrays.copyOf(byCount, shared);
            Arrays.sort(expectShared);
            assertArrayEquals(expectShared, layer.shared());
            int[] routed = Arrays.copyOfRange(byCount, shared, width);
            int[] seeds = Arrays.copyOf(routed, experts);  // byCount order: highest first
            // brute force: the least total Hamming distance to the seeds over all balanced assignments
            long best = bruteForce(b, routed, seeds, m, new int[experts], 0, 0);
            long ours = 0;
            for (int e = 0; e < experts; e++) for (int j : layer.experts()[e]) ours += hamming(b, j, seeds[e]);
            assertEquals(best, ours, "trial " + trial);
            // the representative: the member nearest (L1) to the expert's mean pattern, ties → lower index
            for (int e = 0; e < experts; e++) {
                double bestDist = Double.MAX_VALUE;
                int rep = -1;
                for (int j : layer.experts()[e]) {
                    double dist = 0;
                    for (int[] r : b) {
                        double mean = 0;
                        for (int u : layer.experts()[e]) mean += r[u];
                        dist += Math.abs(r[j] - mean / m);
                    }
                    if (dist < bestDist - 1e-9) { bestDist = dist; rep = j; }
                }
                assertEquals(rep, layer.representatives()[e], "trial " + trial + ", expert " + e);
            }
        }
    }

    static long hamming(int[][] b, int i, int j) {
        long d = 0;
        for (int[] r : b) d += Math.abs(r[i] - r[j]);
        return d;
    }

    static long bruteForce(int[][] b, int[] items, int[] seeds, int capacity, int[] load, int next, long cost) {
        if (next == items.length) return cost;
        long best = Long.MAX_VALUE;
        for (int e = 0; e < seeds.length; e++) {
            if (load[e] == capacity) continue;
            load[e]++;
            best = Math.min(best, bruteForce(b, items, seeds, capacity, load, next + 1, cost + hamming(b, items[next], seeds[e])));
            load[e]--;
        }
        return best;
    }

    @Test
    void largerRandomCarvingIsAnEqualSizedPartitionAndDeterministic() {
        int width = 96, tokens = 300, k = 6;
        Random random = new Random(3);
        float[] scores = new float[tokens * width];
        for (int i = 0; i < scores.length; i++) scores[i] = (float) (random.nextGaussian() * (1 + (i % width) / 32.0));
        float[] gate = new float[width * 16], up = new float[width * 16];
        for (int i = 0; i < gate.length; i++) { gate[i] = (float) random.nextGaussian(); up[i] = (float) random.nextGaussian(); }
        CmoeSettings settings = CmoeSettings.fromName("S2A2E16", width).withActiveNeurons(k);
        CmoeLayer[] runs = new CmoeLayer[2];
        for (int r = 0; r < 2; r++) {
            CmoeActivations a = new CmoeActivations(width, k);
            a.addScores(Arrays.copyOfRange(scores, 0, 100 * width), 100);  // in two batches: the same as one
            a.addScores(Arrays.copyOfRange(scores, 100 * width, scores.length), tokens - 100);
            runs[r] = CmoeCarving.carve(a, settings, gate, up, 16);
        }
        assertEquals(runs[0], runs[1]);
        CmoeLayer layer = runs[0];
        assertEquals(12, layer.sharedWidth());
        assertEquals(14, layer.numExperts());
        boolean[] seen = new boolean[width];
        for (int j : layer.shared()) { assertFalse(seen[j]); seen[j] = true; }
        for (int e = 0; e < layer.numExperts(); e++) {
            assertEquals(6, layer.experts()[e].length);
            assertTrue(Arrays.binarySearch(layer.experts()[e], layer.representatives()[e]) >= 0);
            for (int j : layer.experts()[e]) { assertFalse(seen[j], "channel " + j + " twice"); seen[j] = true; }
        }
        for (boolean s : seen) assertTrue(s);
        for (int e = 0; e < layer.numExperts(); e++) {
            double norm = 0;
            for (int i = 0; i < 16; i++) norm += layer.routerUp()[e * 16 + i] * layer.routerUp()[e * 16 + i];
            assertEquals(1, norm, 1e-5);
        }
    }

    @Test
    void badParametersAreRefusedNamingTheParameter() {
        CmoeActivations a = activations(8, 4, TOKENS);
        float[] w = diagonal(8, true);
        assertMessage("sharedWidth + experts·expertWidth", () -> CmoeCarving.carve(a, new CmoeSettings(1, 2, 3, 1, 4), w, w, 8));
        assertMessage("activeNeurons", () -> CmoeCarving.carve(a, new CmoeSettings(2, 2, 3, 1, 3), w, w, 8));
        assertMessage("W_gate", () -> CmoeCarving.carve(a, new CmoeSettings(2, 2, 3, 1, 4), new float[7], w, 8));
        assertMessage("no calibration tokens", () -> CmoeCarving.carve(new CmoeActivations(8, 4), new CmoeSettings(2, 2, 3, 1, 4), w, w, 8));
    }

    static void assertMessage(String part, org.junit.jupiter.api.function.Executable call) {
        String message = assertThrows(IllegalArgumentException.class, call).getMessage();
        assertTrue(message.contains(part), "'" + message + "' should name " + part);
    }
}
