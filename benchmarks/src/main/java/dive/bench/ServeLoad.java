package dive.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Load on an OpenAI-compatible server ({@code ./dive serve}): for each concurrency level, that many streaming clients,
 * each sending {@code --requests} completions one after another (a fixed prompt, greedy, {@code --max-tokens}); per
 * level the aggregate completion tokens (the streams' usage) per second over the level's wall time, and p50 / p99 of
 * the time to first token and of the inter-token latency (gaps between streamed text chunks, pooled). Prints a Markdown table and one JSON
 * line per level. Usage:
 * <pre>java -cp target/dive.jar dive.bench.ServeLoad --url http://127.0.0.1:8080 --model NAME [--clients 1,4,16,64]
 *      [--requests 2] [--prompt TEXT] [--max-tokens 64] [--warmup SECONDS]</pre>
 * The warm-up (untimed, 30 s by default) alternates 5 requests from one client and 1 from each of 16 clients, so both
 * the single-sequence and the batched paths are compiled before anything is measured.
 */
public final class ServeLoad {
    private static final ObjectMapper JSON = new ObjectMapper();

    record Sample(long startNanos, long firstNanos, long endNanos, int tokens, List<Long> gaps) {}

    record Level(int clients, int requests, long tokens, double seconds, double tokensPerSecond,
                 double ttftP50, double ttftP99, double itlP50, double itlP99) {}

    public static void main(String[] args) throws Exception {
        String url = null, model = null, prompt = "The quick brown fox jumps over the lazy dog. ".repeat(3);
        int[] levels = {1, 4, 16, 64};
        int requests = 2, maxTokens = 64, warmup = 30;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) throw new IllegalArgumentException(a + " needs a value");
            switch (a) {
                case "--url" -> url = args[++i];
                case "--model" -> model = args[++i];
                case "--clients" -> levels = Arrays.stream(args[++i].split(",")).mapToInt(s -> Integer.parseInt(s.strip())).toArray();
                case "--requests" -> requests = Integer.parseInt(args[++i]);
                case "--max-tokens" -> maxTokens = Integer.parseInt(args[++i]);
                case "--prompt" -> prompt = args[++i];
                case "--warmup" -> warmup = Integer.parseInt(args[++i]);
                default -> throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        if (url == null || model == null) throw new IllegalArgumentException("--url and --model are required");
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
        String body = JSON.writeValueAsString(JSON.createObjectNode().put("model", model).put("prompt", prompt)
                .put("max_tokens", maxTokens).put("temperature", 0).put("stream", true).set("stream_options",
                        JSON.createObjectNode().put("include_usage", true)));
        URI uri = URI.create(url + "/v1/completions");
        long warmEnd = System.nanoTime() + warmup * 1_000_000_000L;
        while (System.nanoTime() < warmEnd) {  // JIT-compile the single and the batched paths before anything is timed
            level(http, uri, body, 1, 5);
            level(http, uri, body, 16, 1);
        }
        List<Level> out = new ArrayList<>();
        System.out.println("| clients | requests | tokens | wall s | tokens/s | × 1 client | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |");
        System.out.println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (int c : levels) {
            Level l = level(http, uri, body, c, requests);
            out.add(l);
            System.out.printf(Locale.ROOT, "| %d | %d | %d | %.1f | %.1f | %.2f | %.0f | %.0f | %.1f | %.1f |%n", l.clients, l.requests, l.tokens,
                    l.seconds, l.tokensPerSecond, l.tokensPerSecond / out.getFirst().tokensPerSecond, l.ttftP50, l.ttftP99, l.itlP50, l.itlP99);
        }
        for (Level l : out) System.out.println(JSON.writeValueAsString(l));
    }

    static Level level(HttpClient http, URI uri, String body, int clients, int requests) throws Exception {
        List<Sample> samples = Collections.synchronizedList(new ArrayList<>());
        long t0 = System.nanoTime();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> fs = new ArrayList<>();
            for (int c = 0; c < clients; c++)
                fs.add(pool.submit(() -> {
                    for (int r = 0; r < requests; r++) samples.add(run(http, uri, body));
                    return null;
                }));
            for (Future<?> f : fs) f.get();
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        long tokens = samples.stream().mapToLong(Sample::tokens).sum();
        double[] ttft = samples.stream().mapToDouble(s -> (s.firstNanos - s.startNanos) / 1e6).sorted().toArray();
        double[] itl = samples.stream().flatMap(s -> s.gaps.stream()).mapToDouble(g -> g / 1e6).sorted().toArray();
        return new Level(clients, samples.size(), tokens, seconds, tokens / seconds, pct(ttft, 50), pct(ttft, 99), pct(itl, 50), pct(itl, 99));
    }

    /** one streamed completion: the time of each content chunk and the usage's completion tokens */
    static Sample run(HttpClient http, URI uri, String body) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(uri).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
        long start = System.nanoTime();
        HttpResponse<java.util.stream.Stream<String>> resp = http.send(req, HttpResponse.BodyHandlers.ofLines());
        if (resp.statusCode() != 200) throw new IllegalStateException("HTTP " + resp.statusCode() + " from " + uri);
        long first = 0, last = 0;
        int tokens = -1;
        List<Long> gaps = new ArrayList<>();
        try (var lines = resp.body()) {
            for (String line : (Iterable<String>) lines::iterator) {
                if (!line.startsWith("data: ") || line.equals("data: [DONE]")) continue;
                JsonNode j = JSON.readTree(line.substring(6));
                if (j.has("usage")) { tokens = j.get("usage").get("completion_tokens").asInt(); continue; }
                JsonNode ch = j.path("choices").path(0);
                if (ch.path("text").asText("").isEmpty()) continue;
                long now = System.nanoTime();
                if (first == 0) first = now; else gaps.add(now - last);
                last = now;
            }
        }
        if (tokens < 0) throw new IllegalStateException("no usage chunk in the stream from " + uri);
        if (first == 0) first = last = System.nanoTime();
        return new Sample(start, first, last, tokens, gaps);
    }

    static double pct(double[] sorted, double p) {
        if (sorted.length == 0) return Double.NaN;
        int i = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
    }
}
