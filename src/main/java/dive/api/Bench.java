package dive.api;

import dive.model.KVCache;
import dive.model.LlamaModel;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Throughput of a loaded model: prefill (B sequences × T prompt tokens through one batched forward)
 * and decode (B sequences, one new token each per step, with KV caches), medians over repeats.
 * Before timing, untimed warm-up repeats run for at least {@link #WARMUP_NANOS} so the JIT has compiled
 * the kernels (steady state, as a long-running service sees it). Random ids from a seed; the same shapes
 * as {@code benchmarks/peers/hf_llama.py}.
 */
public final class Bench {
    private Bench() {}

    /** minimum untimed warm-up (2 s, and at least one repeat) */
    public static final long WARMUP_NANOS = 2_000_000_000L;

    public record Result(int batch, int promptLen, int gen, int repeats, String backend,
                         double prefillTokensPerSecond, double decodeTokensPerSecond,
                         double prefillMedianSeconds, double decodeMedianSeconds) {}

    public static Result run(LlamaModel model, int batch, int promptLen, int gen, int repeats, Runnable onRepeat) {
        if (batch < 1 || promptLen < 1 || gen < 1 || repeats < 1)
            throw new IllegalArgumentException("bench: batch, prompt length, generated tokens and repeats must be ≥ 1 (got "
                    + batch + ", " + promptLen + ", " + gen + ", " + repeats + ")");
        int vocab = model.config().vocabSize();
        SplittableRandom rnd = new SplittableRandom(0);
        int[][] prompts = new int[batch][promptLen];
        for (int[] p : prompts) for (int i = 0; i < promptLen; i++) p[i] = rnd.nextInt(vocab);
        double[] prefill = new double[repeats], decode = new double[repeats];
        long warmupEnd = System.nanoTime() + WARMUP_NANOS;
        boolean warm = false;
        for (int r = 0; r < repeats; r++) {
            KVCache[] caches = new KVCache[batch];
            for (int b = 0; b < batch; b++) caches[b] = model.newCache(promptLen + gen);
            long t0 = System.nanoTime();
            float[][] last = model.forwardBatch(prompts, caches, false);
            long t1 = System.nanoTime();
            int[][] step = new int[batch][1];
            for (int g = 0; g < gen; g++) {
                for (int b = 0; b < batch; b++) step[b][0] = argmax(last[b]);
                last = model.forwardBatch(step, caches, false);
            }
            long t2 = System.nanoTime();
            for (KVCache c : caches) c.close();
            if (!warm) {                                // untimed warm-up until the deadline
                warm = t2 >= warmupEnd;
                r--;
            } else {
                prefill[r] = (t1 - t0) / 1e9;
                decode[r] = (t2 - t1) / 1e9;
                if (onRepeat != null) onRepeat.run();
            }
        }
        double p = median(prefill), d = median(decode);
        return new Result(batch, promptLen, gen, repeats, model.backend().name(),
                batch * (double) promptLen / p, batch * (double) gen / d, p, d);
    }

    private static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    static double median(double[] xs) {
        double[] s = xs.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }
}
