package dive.convert;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.model.DenseFfn;
import dive.model.KVCache;
import dive.model.LlamaModel;
import dive.model.RoutingObserver;

import dive.tensor.DType;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * The per-layer {@link ChannelStatistics} of a dense model's FFN intermediate activations over a set of calibration
 * windows. Gathered by running the dense model itself (so layer ℓ+1 sees the dense outputs of layer ℓ) with an
 * observer on every {@link DenseFfn}: one batched forward per group of windows, all layers observed at once. The
 * running statistics stay on the model's backend ({@link Backend#channelStatistics}, the same arithmetic as
 * {@link ChannelStatistics#add}) and come to the host once, at the end.
 *
 * @param layers per decoder layer, statistics over every token of every window
 */
public record CalibrationStatistics(ChannelStatistics[] layers) {

    /** windows per batched forward: about this many tokens */
    public static final int TOKENS_PER_BATCH = 2048;

    public long tokens() { return layers[0].count(); }

    /** layer-wise merge (neither input changes) */
    public static CalibrationStatistics merge(CalibrationStatistics a, CalibrationStatistics b) {
        if (a.layers.length != b.layers.length) throw new IllegalArgumentException("statistics of " + a.layers.length + " and " + b.layers.length + " layers");
        ChannelStatistics[] out = new ChannelStatistics[a.layers.length];
        for (int l = 0; l < out.length; l++) out[l] = ChannelStatistics.merge(a.layers[l], b.layers[l]);
        return new CalibrationStatistics(out);
    }

    public static CalibrationStatistics collect(LlamaModel dense, List<int[]> windows) {
        return collect(dense, windows, done -> {});
    }

    /**
     * Runs {@code windows} (each from an empty context) through {@code dense}; {@code windowsDone} hears how many
     * windows each batch finished.
     */
    public static CalibrationStatistics collect(LlamaModel dense, List<int[]> windows, IntConsumer windowsDone) {
        if (dense.isMoe()) throw new IllegalArgumentException(dense.source() + ": calibration statistics need a dense (llama) model");
        if (windows.isEmpty()) throw new IllegalArgumentException("no calibration windows");
        int numLayers = dense.config().numHiddenLayers();
        Backend backend = dense.backend();
        // running statistics per layer live on the backend (mean, M2, Σh² in F64); one download per layer at the end
        DeviceTensor[][] running = new DeviceTensor[numLayers][];
        int[] width = new int[numLayers];
        long[] count = new long[numLayers];
        ChannelStatistics[] stats = new ChannelStatistics[numLayers];
        try {
            for (int l = 0; l < numLayers; l++) {
                width[l] = ((DenseFfn) dense.feedForward(l)).intermediateSize();
                running[l] = new DeviceTensor[] {backend.allocate(DType.F64, width[l]), backend.allocate(DType.F64, width[l]),
                        backend.allocate(DType.F64, width[l])};
            }
            RoutingObserver observer = new RoutingObserver() {
                @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
                @Override public void onDenseIntermediate(Backend b, int layer, int tokens, int w, DeviceTensor h) {
                    DeviceTensor[] r = running[layer];
                    b.channelStatistics(r[0], r[1], r[2], count[layer], h, tokens, w);
                    count[layer] += Math.max(0, tokens);
                }
            };
            observe(dense, windows, observer, windowsDone);
            for (int l = 0; l < numLayers; l++) {
                double[] mean = new double[width[l]], m2 = new double[width[l]], squares = new double[width[l]];
                backend.read(running[l][0], 0, mean, mean.length);
                backend.read(running[l][1], 0, m2, m2.length);
                backend.read(running[l][2], 0, squares, squares.length);
                stats[l] = ChannelStatistics.of(count[l], mean, m2, squares);
            }
        } finally {
            for (DeviceTensor[] r : running) if (r != null) for (DeviceTensor t : r) t.close();
        }
        return new CalibrationStatistics(stats);
    }

    /**
     * Runs {@code windows} (each from an empty context) through {@code dense} in batches of about
     * {@link #TOKENS_PER_BATCH} tokens, with {@code observer} on every layer; {@code windowsDone} hears how many
     * windows each batch finished.
     */
    static void observe(LlamaModel dense, List<int[]> windows, RoutingObserver observer, IntConsumer windowsDone) {
        for (List<int[]> batch : batches(windows, TOKENS_PER_BATCH)) {
            KVCache[] caches = new KVCache[batch.size()];
            for (int b = 0; b < caches.length; b++) caches[b] = dense.newCache(batch.get(b).length);
            try {
                dense.observe(batch.toArray(int[][]::new), caches, observer);
            } finally {
                for (KVCache c : caches) c.close();
            }
            windowsDone.accept(batch.size());
        }
    }

    /** consecutive groups of windows of about {@code tokensPerBatch} tokens (at least one window each) */
    static List<List<int[]>> batches(List<int[]> windows, int tokensPerBatch) {
        List<List<int[]>> out = new ArrayList<>();
        List<int[]> current = new ArrayList<>();
        int tokens = 0;
        for (int[] w : windows) {
            if (!current.isEmpty() && tokens + w.length > tokensPerBatch) {
                out.add(current);
                current = new ArrayList<>();
                tokens = 0;
            }
            current.add(w);
            tokens += w.length;
        }
        if (!current.isEmpty()) out.add(current);
        return out;
    }
}
