package dive.convert;

import dive.backend.Backend;
import dive.model.KVCache;
import dive.model.LlamaModel;
import dive.model.RoutingObserver;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * Perplexity per group of windows (as {@link WindowPerplexity}) and, for a Mixtral model, the routing share per group
 * and expert, both from the same batched forwards: a {@link RoutingObserver} counts every top-k assignment of every
 * token of every MoE layer; share[g][e] = assignments to expert e / all assignments of group g's tokens (rows sum to 1).
 */
public final class HeldOutEvaluation {
    private HeldOutEvaluation() {}

    /** @param routingShare (groups, E), null for a dense model */
    public record Result(double[] perplexity, double[][] routingShare) {}

    public static Result run(LlamaModel model, List<List<int[]>> groups, IntConsumer windowsDone) {
        List<int[]> all = new ArrayList<>();
        List<Integer> groupOf = new ArrayList<>();
        for (int g = 0; g < groups.size(); g++)
            for (int[] w : groups.get(g)) {
                if (w.length < 2) throw new IllegalArgumentException("window of " + w.length + " tokens in group " + g + " (expected ≥ 2)");
                all.add(w);
                groupOf.add(g);
            }
        int vocab = model.config().vocabSize();
        int experts = model.isMoe() ? model.config().moe().numLocalExperts() : 0;
        int k = model.isMoe() ? model.config().moe().numExpertsPerTok() : 0;
        double[] nll = new double[groups.size()];
        long[] predicted = new long[groups.size()];
        long[][] counts = new long[groups.size()][experts];
        int next = 0;
        for (List<int[]> batch : CalibrationStatistics.batches(all, CalibrationStatistics.TOKENS_PER_BATCH)) {
            int[] rowGroup = new int[batch.stream().mapToInt(w -> w.length).sum()];  // (N) group of each row of the call
            int row = 0;
            for (int b = 0; b < batch.size(); b++)
                for (int t = 0; t < batch.get(b).length; t++) rowGroup[row++] = groupOf.get(next + b);
            RoutingObserver observer = !model.isMoe() ? null : (layer, tokens, routerLogits, expertIds, expertWeights) -> {
                // expertIds (N, k); the array may be longer (model scratch)
                for (int n = 0; n < tokens; n++)
                    for (int j = 0; j < k; j++) counts[rowGroup[n]][expertIds[n * k + j]]++;
            };
            KVCache[] caches = new KVCache[batch.size()];
            for (int b = 0; b < caches.length; b++) caches[b] = model.newCache(batch.get(b).length);
            int[][] targets = new int[batch.size()][];
            for (int b = 0; b < batch.size(); b++) {
                int[] w = batch.get(b);
                targets[b] = new int[w.length];  // row t predicts w[t+1]; the last row predicts nothing
                System.arraycopy(w, 1, targets[b], 0, w.length - 1);
                targets[b][w.length - 1] = Backend.IGNORE_INDEX;
            }
            double[] sums = model.crossEntropySums(batch.toArray(int[][]::new), targets, caches, observer);  // only the B sums come back
            for (KVCache c : caches) c.close();
            for (int b = 0; b < batch.size(); b++, next++) {
                int g = groupOf.get(next);
                nll[g] += sums[b];
                predicted[g] += batch.get(b).length - 1;
            }
            if (windowsDone != null) windowsDone.accept(batch.size());
        }
        double[] ppl = new double[groups.size()];
        double[][] share = model.isMoe() ? new double[groups.size()][experts] : null;
        for (int g = 0; g < ppl.length; g++) {
            if (predicted[g] == 0) throw new IllegalArgumentException("group " + g + " has no window to score");
            ppl[g] = Math.exp(nll[g] / predicted[g]);
            if (share != null) {
                long total = 0;
                for (long c : counts[g]) total += c;
                for (int e = 0; e < experts; e++) share[g][e] = (double) counts[g][e] / total;
            }
        }
        return new Result(ppl, share);
    }
}
