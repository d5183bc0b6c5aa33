package dive.model;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

/**
 * Picks the next token from logits. Temperature 0 is greedy (argmax, the lowest id on ties). Otherwise
 * probabilities = softmax(logits / temperature); with top-p &lt; 1 only the smallest set of most likely tokens whose
 * probabilities sum to at least top-p is kept (nucleus sampling), renormalized, and one is drawn with a
 * {@link SplittableRandom} seeded once: the same seed and logits give the same tokens.
 *
 * <p>A sampler holds its random state: one per request, not shared between threads.
 */
public final class Sampler {
    private final float temperature;
    private final float topP;
    private final RandomGenerator random;

    /**
     * @param temperature 0 for greedy, else &gt; 0
     * @param topP        in (0, 1]; 1 keeps every token
     * @param seed        seeds the random generator
     */
    public Sampler(float temperature, float topP, long seed) {
        if (!(temperature >= 0) || Float.isInfinite(temperature))
            throw new IllegalArgumentException("temperature " + temperature + " (expected 0 for greedy or a positive number)");
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top-p " + topP + " (expected a number in (0, 1])");
        this.temperature = temperature;
        this.topP = topP;
        this.random = new SplittableRandom(seed);
    }

    public static Sampler greedy() { return new Sampler(0f, 1f, 0L); }

    /** the index of the largest of logits[off .. off+n), the lowest index on ties */
    public static int argmax(float[] logits, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) if (logits[off + i] > logits[off + best]) best = i;
        return best;
    }

    /**
     * samples from logits[off .. off+vocab) among the ids of {@code allowed} only (null: every id) → an allowed id: the
     * others' logits count as −∞ (e.g. ids the tokenizer cannot decode). The caller's logits are not changed.
     *
     * @throws IllegalArgumentException when no id in [0, vocab) is allowed
     */
    public int sample(float[] logits, int off, int vocab, java.util.BitSet allowed) {
        if (allowed == null || allowed.nextClearBit(0) >= vocab) return sample(logits, off, vocab);
        if (allowed.nextSetBit(0) < 0 || allowed.nextSetBit(0) >= vocab)
            throw new IllegalArgumentException("no token id in [0, " + vocab + ") is allowed");
        float[] masked = new float[vocab];
        Arrays.fill(masked, Float.NEGATIVE_INFINITY);
        for (int i = allowed.nextSetBit(0); i >= 0 && i < vocab; i = allowed.nextSetBit(i + 1)) masked[i] = logits[off + i];
        int id = sample(masked, 0, vocab);
        if (allowed.get(id)) return id;
        // only when every allowed logit is −∞ or rounding lands on a zero-probability id: the best allowed id
        int best = allowed.nextSetBit(0);
        for (int i = allowed.nextSetBit(0); i >= 0 && i < vocab; i = allowed.nextSetBit(i + 1)) if (masked[i] > masked[best]) best = i;
        return best;
    }

    /** samples from logits[off .. off+vocab) → a token id in [0, vocab) */
    public int sample(float[] logits, int off, int vocab) {
        if (temperature == 0f) return argmax(logits, off, vocab);
        // probabilities in double: softmax of logits / temperature, max-subtracted
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) max = Math.max(max, logits[off + i]);
        double[] probs = new double[vocab];
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            probs[i] = Math.exp((logits[off + i] - max) / temperature);
            sum += probs[i];
        }
        for (int i = 0; i < vocab; i++) probs[i] /= sum;
        if (topP >= 1f) return draw(probs, null, vocab);
        // nucleus: most likely first, keep until the kept mass reaches top-p
        Integer[] order = new Integer[vocab];
        for (int i = 0; i < vocab; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> probs[a] != probs[b] ? Double.compare(probs[b], probs[a]) : Integer.compare(a, b));
        int kept = 0;
        double mass = 0;
        while (kept < vocab && (kept == 0 || mass < topP)) mass += probs[order[kept++]];
        int[] ids = new int[kept];
        for (int i = 0; i < kept; i++) ids[i] = order[i];
        return draw(probs, ids, kept);
    }

    /** draws among ids (or 0..n−1 when ids is null) in proportion to probs */
    private int draw(double[] probs, int[] ids, int n) {
        double total = 0;
        for (int i = 0; i < n; i++) total += probs[ids == null ? i : ids[i]];
        double u = random.nextDouble() * total;
        double acc = 0;
        for (int i = 0; i < n; i++) {
            int id = ids == null ? i : ids[i];
            acc += probs[id];
            if (u < acc) return id;
        }
        return ids == null ? n - 1 : ids[n - 1];  // rounding: u at the very top
    }
}
