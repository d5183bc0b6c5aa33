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
    public double meanLoss(TrainableModel model) {
        double sum = 0;
        for (int[][] batch : batches) sum += model.loss(batch) * batch.length;
        return sum / windows;
    }
}
