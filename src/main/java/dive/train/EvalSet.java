package dive.train;

import java.util.ArrayList;
import java.util.List;

/**
 * Fixed held-out windows of one dataset: the first {@code maxWindows} non-overlapping windows of T + 1 tokens
 * from the start of its eval split (no randomness, so every evaluation sees the same tokens).
 */
public record EvalSet(String dataset, List<int[][]> batches, int windows) {

    public static EvalSet of(TokenShard shard, String dataset, int seqLen, int batchSize, int maxWindows) {
        int[] tokens = shard.tokens();
        int windows = Math.min(maxWindows, tokens.length / (seqLen + 1));
        if (windows < 1) {
            throw new IllegalArgumentException("eval split of dataset '" + dataset + "' has " + tokens.length
                    + " tokens, fewer than one window of seq_len + 1 = " + (seqLen + 1));
        }
        List<int[][]> batches = new ArrayList<>();
        for (int start = 0; start < windows; start += batchSize) {
            int rows = Math.min(batchSize, windows - start);
            int[][] batch = new int[rows][];
            for (int r = 0; r < rows; r++) {
                int offset = (start + r) * (seqLen + 1);
                batch[r] = java.util.Arrays.copyOfRange(tokens, offset, offset + seqLen + 1);
            }
            batches.add(batch);
        }
        return new EvalSet(dataset, List.copyOf(batches), windows);
    }

    /** mean loss per predicted token over all windows (each batch's mean weighted by its rows) */
    public double meanLoss(TrainableModel model) { return evaluate(model).loss(); }

    /**
     * @param loss        mean loss per predicted token
     * @param expertShare an MoE model's expert load on these windows: each expert's share of the top-k assignments,
     *                    all MoE layers pooled (sums to 1) → (E); null for a dense model
     */
    public record Result(double loss, double[] expertShare) {}

    public Result evaluate(TrainableModel model) {
        double sum = 0;
        long[] counts = null;
        for (int[][] batch : batches) {
            sum += model.loss(batch) * batch.length;
            long[] c = model.lastExpertCounts();
            if (c == null) continue;
            if (counts == null) counts = new long[c.length];
            for (int e = 0; e < c.length; e++) counts[e] += c[e];
        }
        double[] share = null;
        if (counts != null) {
            long total = java.util.Arrays.stream(counts).sum();
            share = new double[counts.length];
            for (int e = 0; e < counts.length; e++) share[e] = total == 0 ? 0 : (double) counts[e] / total;
        }
        return new Result(sum / windows, share);
    }
}
