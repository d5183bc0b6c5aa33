package dive.train;

import java.util.List;

/**
 * Seeded training batches: each row picks a dataset with probability proportional to its mix weight, then a
 * window of T + 1 tokens at a uniformly random offset in that dataset's token stream. The state is the
 * generator's state and the number of batches drawn, so a checkpoint can resume the exact same stream.
 */
public final class DataLoader {
    public record State(long rngState, long batchesDrawn) {}

    private final List<TokenShard> datasets;
    private final double[] cumulativeWeight; // normalized, last = 1
    private final int batchSize, seqLen;
    private SplitMix64 rng;
    private long batchesDrawn;

    /** weights: one per dataset, ≥ 0, not all 0 */
    public DataLoader(List<TokenShard> datasets, double[] weights, int batchSize, int seqLen, long seed) {
        if (datasets.isEmpty()) throw new IllegalArgumentException("data.datasets: expected at least one dataset");
        if (weights.length != datasets.size()) throw new IllegalArgumentException("data: " + weights.length + " mix weights for " + datasets.size() + " datasets");
        if (batchSize < 1) throw new IllegalArgumentException("batch_size = " + batchSize + ": expected ≥ 1");
        if (seqLen < 1) throw new IllegalArgumentException("seq_len = " + seqLen + ": expected ≥ 1");
        double total = 0;
        for (int i = 0; i < weights.length; i++) {
            if (!(weights[i] >= 0) || Double.isInfinite(weights[i])) throw new IllegalArgumentException("data mix weight of '" + datasets.get(i).name() + "' = " + weights[i] + ": expected a finite value ≥ 0");
            total += weights[i];
        }
        if (!(total > 0)) throw new IllegalArgumentException("data mix weights are all 0");
        for (int i = 0; i < datasets.size(); i++) {
            TokenShard d = datasets.get(i);
            if (weights[i] > 0 && d.tokens().length < seqLen + 1) {
                throw new IllegalArgumentException("dataset '" + d.name() + "' has " + d.tokens().length
                        + " tokens, fewer than one window of seq_len + 1 = " + (seqLen + 1));
            }
        }
        this.cumulativeWeight = new double[weights.length];
        double sum = 0;
        for (int i = 0; i < weights.length; i++) { sum += weights[i]; cumulativeWeight[i] = sum / total; }
        cumulativeWeight[weights.length - 1] = 1.0;
        this.datasets = List.copyOf(datasets);
        this.batchSize = batchSize; this.seqLen = seqLen;
        this.rng = new SplitMix64(seed);
    }

    /** the default mix: proportional to each dataset's token count */
    public static double[] proportionalWeights(List<TokenShard> datasets) {
        double[] w = new double[datasets.size()];
        for (int i = 0; i < w.length; i++) w[i] = datasets.get(i).tokens().length;
        return w;
    }

    /** the next batch (B, T + 1) */
    public int[][] nextBatch() {
        int[][] batch = new int[batchSize][];
        for (int b = 0; b < batchSize; b++) {
            double u = rng.nextDouble();
            int d = 0;
            while (d < cumulativeWeight.length - 1 && u >= cumulativeWeight[d]) d++;
            int[] tokens = datasets.get(d).tokens();
            int offset = (int) rng.nextLong(tokens.length - seqLen); // offsets 0 … n − (T + 1)
            batch[b] = java.util.Arrays.copyOfRange(tokens, offset, offset + seqLen + 1);
        }
        batchesDrawn++;
        return batch;
    }

    public State state() { return new State(rng.state(), batchesDrawn); }

    public void restore(State state) {
        this.rng = new SplitMix64(state.rngState());
        this.batchesDrawn = state.batchesDrawn();
    }

    public int batchSize() { return batchSize; }
    public int seqLen() { return seqLen; }
}
