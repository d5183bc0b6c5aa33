package dive.serve;

import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongSupplier;

/**
 * What a {@link BatchEngine} has done, in the Prometheus text format ({@link #prometheus}): requests by outcome, tokens,
 * steps, queue depth, running sequences, KV bytes in use, and histograms of the batch size per step, the time to first
 * token and the inter-token latency. Thread-safe.
 */
public final class ServeMetrics {
    private final Map<String, AtomicLong> requests = new TreeMap<>();
    final AtomicLong promptTokens = new AtomicLong(), completionTokens = new AtomicLong(), steps = new AtomicLong();
    final Histogram batchSize = new Histogram(new double[] {1, 2, 4, 8, 16, 32, 64, 128, 256});
    final Histogram timeToFirstToken = new Histogram(new double[] {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
    final Histogram interTokenLatency = new Histogram(new double[] {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
    private final LongSupplier queueDepth, running, kvBytes;

    ServeMetrics(LongSupplier queueDepth, LongSupplier running, LongSupplier kvBytes) {
        this.queueDepth = queueDepth;
        this.running = running;
        this.kvBytes = kvBytes;
        for (FinishReason r : FinishReason.values()) requests.put(r.openAi(), new AtomicLong());
        for (RejectedException.Reason r : RejectedException.Reason.values()) requests.put("rejected_" + r.name().toLowerCase(Locale.ROOT), new AtomicLong());
        requests.put("error", new AtomicLong());
    }

    void ended(FinishReason r) { requests.get(r.openAi()).incrementAndGet(); }
    void rejected(RejectedException.Reason r) { requests.get("rejected_" + r.name().toLowerCase(Locale.ROOT)).incrementAndGet(); }
    void failed() { requests.get("error").incrementAndGet(); }

    /** requests that ended with {@code outcome} (a finish reason's OpenAI name, "rejected_queue_full", …, "error") */
    public long requests(String outcome) {
        AtomicLong n = requests.get(outcome);
        if (n == null) throw new IllegalArgumentException("no request outcome '" + outcome + "' (expected one of " + requests.keySet() + ")");
        return n.get();
    }

    public long completionTokens() { return completionTokens.get(); }
    public long promptTokens() { return promptTokens.get(); }
    public long steps() { return steps.get(); }

    /** the metrics in the Prometheus text exposition format */
    public String prometheus() {
        StringBuilder b = new StringBuilder();
        b.append("# HELP dive_requests_total Requests by outcome.\n# TYPE dive_requests_total counter\n");
        requests.forEach((k, v) -> b.append("dive_requests_total{outcome=\"").append(k).append("\"} ").append(v.get()).append('\n'));
        counter(b, "dive_prompt_tokens_total", "Prompt tokens processed.", promptTokens.get());
        counter(b, "dive_completion_tokens_total", "Tokens generated.", completionTokens.get());
        counter(b, "dive_steps_total", "Batched forward steps.", steps.get());
        gauge(b, "dive_queue_depth", "Requests waiting for a place in the batch.", queueDepth.getAsLong());
        gauge(b, "dive_running_sequences", "Sequences in the batch (prefilling or decoding).", running.getAsLong());
        gauge(b, "dive_kv_cache_bytes", "KV-cache bytes held by running sequences.", kvBytes.getAsLong());
        batchSize.write(b, "dive_batch_size", "Sequences per batched step.");
        timeToFirstToken.write(b, "dive_time_to_first_token_seconds", "From submission to the first generated token.");
        interTokenLatency.write(b, "dive_inter_token_latency_seconds", "Between consecutive tokens of one request.");
        return b.toString();
    }

    private static void counter(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" counter\n")
                .append(name).append(' ').append(v).append('\n');
    }

    private static void gauge(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" gauge\n")
                .append(name).append(' ').append(v).append('\n');
    }

    /** a cumulative histogram with fixed upper bounds */
    static final class Histogram {
        private final double[] bounds;
        private final AtomicLongArray counts;  // per bucket (not cumulative), the last is +Inf
        private final AtomicLong count = new AtomicLong();
        private final java.util.concurrent.atomic.DoubleAdder sum = new java.util.concurrent.atomic.DoubleAdder();

        Histogram(double[] bounds) {
            this.bounds = bounds.clone();
            this.counts = new AtomicLongArray(bounds.length + 1);
        }

        void observe(double v) {
            int i = 0;
            while (i < bounds.length && v > bounds[i]) i++;
            counts.incrementAndGet(i);
            count.incrementAndGet();
            sum.add(v);
        }

        long count() { return count.get(); }

        void write(StringBuilder b, String name, String help) {
            b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" histogram\n");
            long cumulative = 0;
            for (int i = 0; i <= bounds.length; i++) {
                cumulative += counts.get(i);
                String le = i == bounds.length ? "+Inf" : format(bounds[i]);
                b.append(name).append("_bucket{le=\"").append(le).append("\"} ").append(cumulative).append('\n');
            }
            b.append(name).append("_sum ").append(format(sum.sum())).append('\n');
            b.append(name).append("_count ").append(count.get()).append('\n');
        }

        private static String format(double v) {
            return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : Double.toString(v);
        }
    }
}
