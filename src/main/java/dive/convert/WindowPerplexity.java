package dive.convert;

import dive.backend.Backend;
import dive.model.KVCache;
import dive.model.LlamaModel;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * Perplexity of several groups of windows (e.g. one group per dataset) with every window of every group batched
 * through the same forwards. Each window is scored from an empty context with labels = its ids (its first token is
 * not predicted), as {@link dive.model.Perplexity} does; a group's perplexity = exp(Σ NLL / predicted tokens). The NLL
 * of a window comes from the backend's (vectorised) cross-entropy.
 */
public final class WindowPerplexity {
    private WindowPerplexity() {}

    /** perplexity per group (G), windows of about {@link CalibrationStatistics#TOKENS_PER_BATCH} tokens a forward */
    public static double[] perGroup(LlamaModel model, List<List<int[]>> groups, IntConsumer windowsDone) {
        List<int[]> all = new ArrayList<>();
        List<Integer> groupOf = new ArrayList<>();
        for (int g = 0; g < groups.size(); g++)
            for (int[] w : groups.get(g)) {
                if (w.length < 2) throw new IllegalArgumentException("window of " + w.length + " tokens in group " + g + " (expected ≥ 2)");
                all.add(w);
                groupOf.add(g);
            }
        int vocab = model.config().vocabSize();
        double[] nll = new double[groups.size()];
        long[] predicted = new long[groups.size()];
        int next = 0;
        for (List<int[]> batch : CalibrationStatistics.batches(all, CalibrationStatistics.TOKENS_PER_BATCH)) {
            KVCache[] caches = new KVCache[batch.size()];
            for (int b = 0; b < caches.length; b++) caches[b] = model.newCache(batch.get(b).length);
            float[][] logits = model.forwardBatch(batch.toArray(int[][]::new), caches, true);  // per window (T, vocab)
            for (int b = 0; b < batch.size(); b++, next++) {
                int[] w = batch.get(b);
                int g = groupOf.get(next);
                int[] targets = new int[w.length];  // row t predicts w[t+1]; the last row predicts nothing
                System.arraycopy(w, 1, targets, 0, w.length - 1);
                targets[w.length - 1] = Backend.IGNORE_INDEX;
                double meanNll = model.backend().crossEntropy(null, logits[b], targets, w.length, vocab, 1f);
                nll[g] += meanNll * (w.length - 1);
                predicted[g] += w.length - 1;
            }
            windowsDone.accept(batch.size());
        }
        double[] ppl = new double[groups.size()];
        for (int g = 0; g < ppl.length; g++) {
            if (predicted[g] == 0) throw new IllegalArgumentException("group " + g + " has no window to score");
            ppl[g] = Math.exp(nll[g] / predicted[g]);
        }
        return ppl;
    }

}
