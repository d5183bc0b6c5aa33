package dive.model;

/**
 * Perplexity over non-overlapping windows, the Hugging Face convention with stride = window: the ids are cut into
 * windows of {@code window} tokens (the last may be shorter); each window is scored on its own from an empty
 * context with labels = its ids, so its first token is not predicted; ppl = exp(Σ NLL / predicted tokens), NLL in
 * nats.
 */
public final class Perplexity {
    private Perplexity() {}

    /**
     * @param perplexity      exp(mean NLL)
     * @param nllSum          total negative log-likelihood in nats
     * @param predictedTokens how many tokens were predicted (ids − number of windows, windows of one token add none)
     */
    public record Result(double perplexity, double nllSum, int predictedTokens) {
        public double meanNll() { return nllSum / predictedTokens; }
    }

    public static Result compute(LlamaModel model, int[] ids, int window) {
        if (window < 2) throw new IllegalArgumentException("perplexity window " + window + " (expected ≥ 2 tokens)");
        int vocab = model.config().vocabSize();
        double nllSum = 0;
        int predicted = 0;
        for (int start = 0; start < ids.length; start += window) {
            int len = Math.min(window, ids.length - start);
            if (len < 2) continue;
            int[] chunk = java.util.Arrays.copyOfRange(ids, start, start + len);
            float[] logits = model.logits(chunk);  // (len, vocab)
            for (int t = 0; t + 1 < len; t++) {
                nllSum += logSumExp(logits, t * vocab, vocab) - logits[t * vocab + chunk[t + 1]];
                predicted++;
            }
        }
        if (predicted == 0) throw new IllegalArgumentException("perplexity of " + ids.length + " ids: no token to predict (need at least 2 in a window)");
        return new Result(Math.exp(nllSum / predicted), nllSum, predicted);
    }

    /** log Σ exp(x[off .. off+n)) in double, max-subtracted */
    static double logSumExp(float[] x, int off, int n) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) max = Math.max(max, x[off + i]);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.exp(x[off + i] - max);
        return max + Math.log(sum);
    }
}
