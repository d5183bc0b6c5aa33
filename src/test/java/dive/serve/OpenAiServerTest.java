package dive.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.VectorBackend;
import dive.model.GenerateOptions;
import dive.model.Generator;
import dive.model.LlamaModel;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The OpenAI-compatible server over HTTP with the JDK's client: completions and chat (plain and streamed, usage), the
 * text equal to the engine's greedy generation, OpenAI's error objects and status codes, a client that hangs up
 * mid-stream (its request cancelled), the API key, and the metrics page.
 */
class OpenAiServerTest {
    static final Path DEFAULT = Path.of("src/main/resources/dive/default");
    static final ObjectMapper JSON = new ObjectMapper();
    static final String CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
            + "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    static LlamaModel model;
    static Tokenizer tokenizer;
    static BatchEngine engine;
    static OpenAiServer server, keyed;
    static HttpClient client = HttpClient.newHttpClient();

    @BeforeAll
    static void start() throws Exception {
        model = LlamaModel.load(DEFAULT, new VectorBackend(2));
        tokenizer = Tokenizer.load(DEFAULT.resolve("tokenizer.json"));
        engine = BatchEngine.start(model, tokenizer, tokenizer.decodableIds(), new ServeOptions(8, 32, 64L << 20, 64));
        server = OpenAiServer.start(engine, tokenizer, ChatTemplate.of(CHATML, "<|begin_of_text|>", "<|end_of_text|>"), "default", null,
                new InetSocketAddress("127.0.0.1", 0));
        keyed = OpenAiServer.start(engine, tokenizer, null, "default", "s3cret", new InetSocketAddress("127.0.0.1", 0));
    }

    @AfterAll
    static void stop() throws Exception {
        server.close();
        keyed.close();
        engine.close();
        model.close();
    }

    static HttpResponse<String> post(OpenAiServer s, String path, String body, String... headers) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        for (int i = 0; i < headers.length; i += 2) b.header(headers[i], headers[i + 1]);
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(OpenAiServer s, String path, String... headers) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path)).GET();
        for (int i = 0; i < headers.length; i += 2) b.header(headers[i], headers[i + 1]);
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static String greedy(int[] prompt, int n) {
        return tokenizer.decode(Generator.generate(model, prompt, GenerateOptions.greedy(n), tokenizer.decodableIds(), id -> {}), true);
    }

    @Test
    void modelsListsTheServedModel() throws Exception {
        HttpResponse<String> r = get(server, "/v1/models");
        assertEquals(200, r.statusCode());
        JsonNode j = JSON.readTree(r.body());
        assertEquals("list", j.get("object").asText());
        assertEquals("default", j.get("data").get(0).get("id").asText());
        assertEquals(200, get(server, "/v1/models/default").statusCode());
        assertEquals(404, get(server, "/v1/models/other").statusCode());
        assertEquals("{\"status\":\"ok\"}", get(server, "/health").body());
    }

    @Test
    void aCompletionIsTheEnginesGreedyTextWithUsage() throws Exception {
        String prompt = "public static void main(String[] args) {";
        HttpResponse<String> r = post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":" + JSON.writeValueAsString(prompt)
                + ",\"max_tokens\":12,\"temperature\":0}");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode j = JSON.readTree(r.body());
        assertEquals("text_completion", j.get("object").asText());
        int[] ids = tokenizer.encode(prompt);
        assertEquals(greedy(ids, 12), j.get("choices").get(0).get("text").asText());
        assertEquals(ids.length, j.get("usage").get("prompt_tokens").asInt());
        assertEquals(12, j.get("usage").get("completion_tokens").asInt());
        assertEquals("length", j.get("choices").get(0).get("finish_reason").asText());
    }

    @Test
    void aPromptOfTokenIdsIsTheSameAsItsText() throws Exception {
        int[] ids = tokenizer.encode("def main(");
        String list = java.util.Arrays.toString(ids).replace(" ", "");
        for (String prompt : new String[] {list, "[" + list + "]"}) {
            HttpResponse<String> r = post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":" + prompt + ",\"max_tokens\":5,\"temperature\":0}");
            assertEquals(200, r.statusCode(), r.body());
            assertEquals(greedy(ids, 5), JSON.readTree(r.body()).get("choices").get(0).get("text").asText());
            assertEquals(ids.length, JSON.readTree(r.body()).get("usage").get("prompt_tokens").asInt());
        }
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":[5,99999999]}"), 400, null, "99999999");
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":[5,\"x\"]}"), 400, null, "not an integer id");
    }

    @Test
    void aStreamedCompletionAddsUpToThePlainOneAndEndsWithDone() throws Exception {
        String body = "{\"model\":\"default\",\"prompt\":\"import java.util.\",\"max_tokens\":10,\"temperature\":0,\"stream\":true,"
                + "\"stream_options\":{\"include_usage\":true}}";
        HttpResponse<String> r = post(server, "/v1/completions", body);
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        StringBuilder text = new StringBuilder();
        List<String> events = events(r.body());
        assertEquals("[DONE]", events.getLast());
        String finish = null;
        JsonNode usage = null;
        for (String e : events.subList(0, events.size() - 1)) {
            JsonNode j = JSON.readTree(e);
            assertEquals("text_completion", j.get("object").asText());
            if (j.has("usage")) { usage = j.get("usage"); continue; }
            JsonNode c = j.get("choices").get(0);
            text.append(c.get("text").asText());
            if (!c.get("finish_reason").isNull()) finish = c.get("finish_reason").asText();
        }
        assertEquals(greedy(tokenizer.encode("import java.util."), 10), text.toString());
        assertEquals("length", finish);
        assertNotNull(usage);
        assertEquals(10, usage.get("completion_tokens").asInt());
    }

    @Test
    void chatRendersTheTemplateAndStreamsDeltas() throws Exception {
        String messages = "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Say hi\"}]";
        HttpResponse<String> plain = post(server, "/v1/chat/completions", "{\"model\":\"default\",\"messages\":" + messages + ",\"max_tokens\":8,\"temperature\":0}");
        assertEquals(200, plain.statusCode(), plain.body());
        JsonNode j = JSON.readTree(plain.body());
        assertEquals("chat.completion", j.get("object").asText());
        assertEquals("assistant", j.get("choices").get(0).get("message").get("role").asText());
        String rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n";
        int[] ids = tokenizer.encode(rendered, false);
        assertEquals(greedy(ids, 8), j.get("choices").get(0).get("message").get("content").asText());
        assertEquals(ids.length, j.get("usage").get("prompt_tokens").asInt());

        HttpResponse<String> streamed = post(server, "/v1/chat/completions", "{\"model\":\"default\",\"messages\":" + messages
                + ",\"max_tokens\":8,\"temperature\":0,\"stream\":true}");
        List<String> events = events(streamed.body());
        assertEquals("[DONE]", events.getLast());
        JsonNode first = JSON.readTree(events.getFirst());
        assertEquals("chat.completion.chunk", first.get("object").asText());
        assertEquals("assistant", first.get("choices").get(0).get("delta").get("role").asText());
        StringBuilder text = new StringBuilder();
        for (String e : events.subList(0, events.size() - 1)) text.append(JSON.readTree(e).get("choices").get(0).get("delta").path("content").asText(""));
        assertEquals(j.get("choices").get(0).get("message").get("content").asText(), text.toString());
    }

    @Test
    void errorsAreOpenAiErrorObjectsWithTheirStatus() throws Exception {
        assertError(post(server, "/v1/completions", "{\"model\":\"gpt-4\",\"prompt\":\"x\"}"), 404, "model_not_found", "'gpt-4' does not exist");
        assertError(post(server, "/v1/completions", "{\"prompt\":\"x\"}"), 400, null, "'model' is required");
        assertError(post(server, "/v1/completions", "{not json"), 400, null, "not valid JSON");
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":\"x\",\"temperature\":-1}"), 400, null, "'temperature' must be a number in [0.0, 2.0]");
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":\"x\",\"max_tokens\":0}"), 400, null, "'max_tokens' must be an integer");
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":\"x\",\"n\":2}"), 400, null, "'n' must be an integer in [1, 1]");
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":\"x\",\"max_tokens\":1100}"), 413, "context_length_exceeded", "more than the model's context of 1024");
        assertError(post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":\"" + "x".repeat(OpenAiServer.MAX_BODY_BYTES) + "\"}"), 413, "request_too_large", "exceeds");
        assertError(get(server, "/v1/completions"), 405, "method_not_allowed", "GET is not allowed");
        assertError(get(server, "/v2/anything"), 404, "not_found", "no route");
        assertError(post(keyed, "/v1/chat/completions", "{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                "Authorization", "Bearer s3cret"), 400, null, "has no chat template");
        assertError(post(server, "/v1/chat/completions", "{\"model\":\"default\",\"messages\":[{\"role\":\"tool\",\"content\":\"hi\"}]}"), 400, null, "role 'tool'");
    }

    @Test
    void theApiKeyIsRequiredWhenSet() throws Exception {
        assertError(get(keyed, "/v1/models"), 401, "invalid_api_key", "no API key");
        assertError(get(keyed, "/v1/models", "Authorization", "Bearer wrong"), 401, "invalid_api_key", "incorrect API key");
        assertEquals(200, get(keyed, "/v1/models", "Authorization", "Bearer s3cret").statusCode());
        assertEquals(200, get(keyed, "/health").statusCode(), "health needs no key");
    }

    @Test
    void aClientThatHangsUpMidStreamCancelsItsRequest() throws Exception {
        long before = engine.metrics().requests("cancelled");
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"default\",\"prompt\":\"a\",\"max_tokens\":240,\"temperature\":0,\"stream\":true,\"stop\":[\"\\u0000\"]}"))
                .build();
        HttpResponse<InputStream> r = client.send(req, HttpResponse.BodyHandlers.ofInputStream());
        try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
            String line = in.readLine();
            assertTrue(line.startsWith("data: "), line);
        }  // hangs up after the first event
        BatchEngineTest.waitFor(() -> engine.metrics().requests("cancelled") > before, "the request cancelled after the client left");
    }

    @Test
    void metricsArePrometheusText() throws Exception {
        post(server, "/v1/completions", "{\"model\":\"default\",\"prompt\":\"x\",\"max_tokens\":2}");
        HttpResponse<String> r = get(server, "/metrics");
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
        for (String m : List.of("dive_requests_total{outcome=\"length\"}", "dive_completion_tokens_total ", "dive_queue_depth ",
                "dive_batch_size_bucket{le=\"+Inf\"}", "dive_time_to_first_token_seconds_count ", "dive_inter_token_latency_seconds_sum ",
                "dive_http_responses_total{code=\"200\"}"))
            assertTrue(r.body().contains(m), m + " in\n" + r.body());
    }

    /**
     * 300 requests over HTTP from 24 threads, every third a stream the client drops after its first event: every request
     * ends (none lost, none hung: the engine counts each exactly once), the plain ones equal serial greedy generation,
     * and afterwards no KV cache is held and the backend's live memory is back where it was.
     */
    @Test
    void soakWithDisconnectsOverHttp() throws Exception {
        String[] prompts = {"import java.util.", "def main(", "The quick brown fox", "#include <stdio.h>"};
        String[] expected = new String[prompts.length];
        for (int i = 0; i < prompts.length; i++) expected[i] = greedy(tokenizer.encode(prompts[i]), 6);
        dive.backend.CpuBackend backend = (dive.backend.CpuBackend) model.backend();
        BatchEngineTest.waitFor(() -> engine.metrics().prometheus().contains("dive_running_sequences 0"), "idle before the soak");
        long liveBefore = backend.liveBytes();
        long endedBefore = ended();
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(24);
        try {
            List<java.util.concurrent.Future<?>> fs = new ArrayList<>();
            for (int n = 0; n < 300; n++) {
                int i = n % prompts.length;
                boolean drop = n % 3 == 0;
                fs.add(pool.submit(() -> {
                    String body = "{\"model\":\"default\",\"prompt\":" + JSON.writeValueAsString(prompts[i]) + ",\"max_tokens\":"
                            + (drop ? 200 : 6) + ",\"temperature\":0" + (drop ? ",\"stream\":true" : "") + "}";
                    HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/v1/completions"))
                            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build();
                    if (drop) {
                        HttpResponse<InputStream> r = client.send(req, HttpResponse.BodyHandlers.ofInputStream());
                        try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
                            assertTrue(in.readLine().startsWith("data: "));
                        }
                    } else {
                        HttpResponse<String> r = client.send(req, HttpResponse.BodyHandlers.ofString());
                        assertEquals(200, r.statusCode(), r.body());
                        assertEquals(expected[i], JSON.readTree(r.body()).get("choices").get(0).get("text").asText());
                    }
                    return null;
                }));
            }
            for (var f : fs) f.get(120, TimeUnit.SECONDS);
        } finally {
            pool.shutdownNow();
        }
        BatchEngineTest.waitFor(() -> ended() - endedBefore == 300, "all 300 requests ended (ended " + (ended() - endedBefore) + ")");
        BatchEngineTest.waitFor(() -> engine.metrics().prometheus().contains("dive_kv_cache_bytes 0"), "every KV cache freed");
        assertEquals(liveBefore, backend.liveBytes(), "backend memory back to where it was");
    }

    private static long ended() {
        ServeMetrics m = engine.metrics();
        return m.requests("stop") + m.requests("length") + m.requests("cancelled") + m.requests("deadline") + m.requests("error");
    }

    static void assertError(HttpResponse<String> r, int status, String code, String messagePart) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode e = JSON.readTree(r.body()).get("error");
        assertNotNull(e, r.body());
        assertTrue(e.get("message").asText().contains(messagePart), e.get("message").asText());
        assertTrue(e.has("type") && e.has("param") && e.has("code"), r.body());
        if (code != null) assertEquals(code, e.get("code").asText());
    }

    static List<String> events(String sse) {
        List<String> out = new ArrayList<>();
        for (String block : sse.split("\n\n")) {
            if (block.isBlank()) continue;
            assertTrue(block.startsWith("data: "), block);
            out.add(block.substring("data: ".length()));
        }
        return out;
    }
}
