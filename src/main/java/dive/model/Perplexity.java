package dive.model;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.IntConsumer;

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
        return compute(model, ids, window, done -> {});
    }

    /** windows scored together in one batched forward: about this many tokens per batch */
    static final int TOKENS_PER_BATCH = 2048;

    /**
     * As {@link #compute(LlamaModel, int[], int)}; several windows go through one batched forward, and
     * {@code windowsDone} hears how many windows each batch finished (for a progress bar).
     */
    public static Result compute(LlamaModel model, int[] ids, int window, IntConsumer windowsDone) {
        if (window < 2) throw new IllegalArgumentException("perplexity window " + window + " (expected ≥ 2 tokens)");
        checkWindow(model.config(), "perplexity window", window);
        int vocab = model.config().vocabSize();
        List<int[]> windows = new ArrayList<>();
        for (int start = 0; start < ids.length; start += window) {
            int len = Math.min(window, ids.length - start);
            if (len >= 2) windows.add(Arrays.copyOfRange(ids, start, start + len));
        }
        if (windows.isEmpty()) throw new IllegalArgumentException("perplexity of " + ids.length + " ids: no token to predict (need at least 2 in a window)");
        int perBatch = Math.max(1, TOKENS_PER_BATCH / window);
        double nllSum = 0;
        int predicted = 0;
        for (int w0 = 0; w0 < windows.size(); w0 += perBatch) {
            int[][] batch = windows.subList(w0, Math.min(windows.size(), w0 + perBatch)).toArray(int[][]::new);
            KVCache[] caches = new KVCache[batch.length];
            for (int b = 0; b < batch.length; b++) caches[b] = model.newCache(batch[b].length);
            float[][] logits = model.forwardBatch(batch, caches, true);  // per window (len, vocab)
            for (KVCache c : caches) c.close();
            for (int b = 0; b < batch.length; b++) {
                int[] chunk = batch[b];
                for (int t = 0; t + 1 < chunk.length; t++) {
                    nllSum += logSumExp(logits[b], t * vocab, vocab) - logits[b][t * vocab + chunk[t + 1]];
                    predicted++;
                }
            }
            windowsDone.accept(batch.length);
        }
        return new Result(Math.exp(nllSum / predicted), nllSum, predicted);
    }

    /**
     * refuses a window of more tokens than the model has positions: {@code what} names the window for the message
     * (e.g. "--window"), which reads "WHAT N exceeds config.json max_position_embeddings M of the model"
     */
    public static void checkWindow(LlamaConfig config, String what, int window) {
        if (window > config.maxPositionEmbeddings())
            throw new IllegalArgumentException(what + " " + window + " exceeds the model's max_position_embeddings "
                    + config.maxPositionEmbeddings() + " (config.json): positions beyond it were never trained");
    }

    /** how many windows {@link #compute} scores for {@code tokens} ids */
    public static int windowCount(int tokens, int window) {
        int full = tokens / window, rest = tokens % window;
        return full + (rest >= 2 ? 1 : 0);
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
