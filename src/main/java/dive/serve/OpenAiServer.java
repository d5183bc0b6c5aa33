package dive.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dive.tokenizer.Tokenizer;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An OpenAI-compatible HTTP server over a {@link BatchEngine}: {@code GET /v1/models}, {@code POST /v1/completions},
 * {@code POST /v1/chat/completions} (where the model has a chat template), {@code stream: true} as server-sent events
 * in OpenAI's chunk format, {@code usage}, OpenAI's error objects, {@code GET /health} and {@code GET /metrics}
 * (Prometheus text). HTTP is the JDK's own server ({@code jdk.httpserver}); each exchange runs on a virtual thread and
 * blocks on its completion's deltas, so the only shared state is the engine's bounded queue. Request bodies are limited
 * to {@value #MAX_BODY_BYTES} bytes; a streaming client that goes away cancels its request at the engine's next step.
 */
public final class OpenAiServer implements AutoCloseable {
    /** the largest request body accepted (HTTP 413 above) */
    public static final int MAX_BODY_BYTES = 1 << 20;
    /** OpenAI's allowance of stop strings per request */
    static final int MAX_STOP = 4;

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String NODELAY = "sun.net.httpserver.nodelay", MAX_REQUEST_SECONDS = "sun.net.httpserver.maxReqTime";

    private final BatchEngine engine;
    private final Tokenizer tokenizer;
    private final ChatTemplate chat;
    private final String modelId;
    private final byte[] apiKey;  // null: no key required
    private final HttpServer http;
    private final ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
    private final long created = System.currentTimeMillis() / 1000;
    private final AtomicLong ids = new AtomicLong();
    private final Map<Integer, AtomicLong> responses = new ConcurrentHashMap<>();

    private OpenAiServer(BatchEngine engine, Tokenizer tokenizer, ChatTemplate chat, String modelId, String apiKey, InetSocketAddress address)
            throws IOException {
        this.engine = engine;
        this.tokenizer = tokenizer;
        this.chat = chat;
        this.modelId = modelId;
        this.apiKey = apiKey == null ? null : apiKey.getBytes(StandardCharsets.UTF_8);
        // small SSE writes must go out at once: without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK
        // hold each event back ~40 ms (the JDK server reads this once, when its configuration class first loads)
        if (System.getProperty(NODELAY) == null) System.setProperty(NODELAY, "true");
        // a client gets 30 s to send its request (headers and body): one that trickles bytes (slowloris) is cut off
        // instead of holding its connection for ever; responses (long streams) have no limit
        if (System.getProperty(MAX_REQUEST_SECONDS) == null) System.setProperty(MAX_REQUEST_SECONDS, "30");
        this.http = HttpServer.create(address, 128);
        http.setExecutor(executor);
        http.createContext("/", this::handle);
    }

    /**
     * serves {@code engine} as model {@code modelId} on {@code address} (port 0: any free port, see {@link #port})
     *
     * @param tokenizer required: the API speaks text
     * @param chat      the chat template, or null (chat completions then answer 400 saying so)
     * @param apiKey    the bearer token every request must carry, or null for none
     */
    public static OpenAiServer start(BatchEngine engine, Tokenizer tokenizer, ChatTemplate chat, String modelId, String apiKey,
                                     InetSocketAddress address) throws IOException {
        if (tokenizer == null) throw new IllegalArgumentException("serving needs a tokenizer: the OpenAI API speaks text");
        OpenAiServer s = new OpenAiServer(engine, tokenizer, chat, modelId, apiKey, address);
        s.http.start();
        return s;
    }

    /** the port the server listens on */
    public int port() { return http.getAddress().getPort(); }

    public String modelId() { return modelId; }

    /** stops listening, lets running exchanges end (up to 5 s), then stops their threads */
    @Override public void close() {
        http.stop(5);
        executor.shutdownNow();
    }

    // ---------------------------------------------------------------- routing

    private void handle(HttpExchange ex) {
        try {
            route(ex);
        } finally {
            ex.close();  // after any error response (a try-with-resources would close before its catch clauses run)
        }
    }

    private void route(HttpExchange ex) {
        try {
            String path = ex.getRequestURI().getPath(), method = ex.getRequestMethod();
            if (path.equals("/health")) {
                if (!method.equals("GET")) throw ApiError.method(method, path);
                send(ex, 200, "application/json", JSON.writeValueAsBytes(Map.of("status", "ok")));
                return;
            }
            if (path.equals("/metrics")) {
                if (!method.equals("GET")) throw ApiError.method(method, path);
                send(ex, 200, "text/plain; version=0.0.4; charset=utf-8", metricsText().getBytes(StandardCharsets.UTF_8));
                return;
            }
            authorize(ex);
            switch (path) {
                case "/v1/models" -> {
                    if (!method.equals("GET")) throw ApiError.method(method, path);
                    ObjectNode list = JSON.createObjectNode().put("object", "list");
                    list.putArray("data").add(model());
                    sendJson(ex, 200, list);
                }
                case "/v1/models/" -> throw ApiError.notFound("no model id in the path");
                case "/v1/completions" -> {
                    if (!method.equals("POST")) throw ApiError.method(method, path);
                    completions(ex, body(ex), false);
                }
                case "/v1/chat/completions" -> {
                    if (!method.equals("POST")) throw ApiError.method(method, path);
                    completions(ex, body(ex), true);
                }
                default -> {
                    if (path.startsWith("/v1/models/") && method.equals("GET")) {
                        String id = path.substring("/v1/models/".length());
                        if (!id.equals(modelId)) throw ApiError.modelNotFound(id);
                        sendJson(ex, 200, model());
                    } else {
                        throw ApiError.notFound("no route " + method + " " + path + " (this server has /v1/models, /v1/completions, /v1/chat/completions, /health, /metrics)");
                    }
                }
            }
        } catch (ApiError e) {
            error(ex, e);
        } catch (RejectedException e) {
            error(ex, switch (e.reason()) {
                case QUEUE_FULL -> new ApiError(429, "rate_limit_exceeded", "rate_limit_exceeded", null, e.getMessage());
                case TOO_LONG -> new ApiError(413, "invalid_request_error", "context_length_exceeded", "max_tokens", e.getMessage());
                case CLOSED -> new ApiError(503, "server_error", "unavailable", null, e.getMessage());
            });
        } catch (IOException e) {  // the client went away mid-response: nothing left to tell it
            count(499);
        } catch (RuntimeException | Error e) {
            System.err.println("dive serve: " + ex.getRequestMethod() + " " + ex.getRequestURI().getPath() + ": " + e);
            error(ex, new ApiError(500, "server_error", null, null, "internal error: " + dive.util.Messages.oneLine(String.valueOf(e.getMessage()))));
        }
    }

    private ObjectNode model() {
        return JSON.createObjectNode().put("id", modelId).put("object", "model").put("created", created).put("owned_by", "dive");
    }

    private void authorize(HttpExchange ex) {
        if (apiKey == null) return;
        String h = ex.getRequestHeaders().getFirst("Authorization");
        byte[] given = h != null && h.startsWith("Bearer ") ? h.substring(7).strip().getBytes(StandardCharsets.UTF_8) : new byte[0];
        if (!MessageDigest.isEqual(given, apiKey))
            throw new ApiError(401, "invalid_request_error", "invalid_api_key", null,
                    h == null ? "no API key: send it as 'Authorization: Bearer KEY'" : "incorrect API key");
    }

    private static JsonNode body(HttpExchange ex) throws IOException {
        String len = ex.getRequestHeaders().getFirst("Content-Length");
        if (len != null) {
            try {
                if (Long.parseLong(len.strip()) > MAX_BODY_BYTES) throw ApiError.tooLarge();
            } catch (NumberFormatException e) {
                throw ApiError.invalid(null, "Content-Length '" + len + "' is not a number");
            }
        }
        byte[] bytes;
        try (InputStream in = ex.getRequestBody()) {
            bytes = in.readNBytes(MAX_BODY_BYTES + 1);
        }
        if (bytes.length > MAX_BODY_BYTES) throw ApiError.tooLarge();
        try {
            JsonNode n = JSON.readTree(bytes);
            if (n == null || !n.isObject()) throw ApiError.invalid(null, "the request body must be a JSON object");
            return n;
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw ApiError.invalid(null, "the request body is not valid JSON: " + dive.util.Messages.oneLine(e.getOriginalMessage()));
        }
    }

    // ---------------------------------------------------------------- completions

    private void completions(HttpExchange ex, JsonNode req, boolean isChat) throws IOException {
        String model = text(req, "model", null);
        if (model == null) throw ApiError.invalid("model", "'model' is required (this server serves '" + modelId + "')");
        if (!model.equals(modelId)) throw ApiError.modelNotFound(model);
        int n = integer(req, "n", 1, 1, 1);
        if (n != 1) throw ApiError.invalid("n", "only n = 1 is supported");
        for (String unsupported : List.of("logprobs", "echo", "suffix", "tools", "functions", "logit_bias"))
            if (req.hasNonNull(unsupported) && !(req.get(unsupported).isBoolean() && !req.get(unsupported).asBoolean()))
                throw ApiError.invalid(unsupported, "'" + unsupported + "' is not supported by this server");
        int[] prompt = isChat ? chatPrompt(req) : textPrompt(req);
        int maxTokens = integer(req, isChat && req.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
                isChat ? Math.max(1, engine.model().config().maxPositionEmbeddings() - prompt.length) : 16, 1, Integer.MAX_VALUE);
        float temperature = (float) number(req, "temperature", 1.0, 0, 2);
        float topP = (float) number(req, "top_p", 1.0, Double.MIN_VALUE, 1);
        long seed = req.hasNonNull("seed") ? longValue(req, "seed") : java.util.concurrent.ThreadLocalRandom.current().nextLong();
        List<String> stop = stops(req.get("stop"));
        boolean stream = bool(req, "stream", false);
        boolean usageInStream = stream && req.path("stream_options").path("include_usage").asBoolean(false);
        CompletionRequest request;
        try {
            request = new CompletionRequest(prompt, maxTokens, temperature, topP, seed, stop, null);
        } catch (IllegalArgumentException e) {
            throw ApiError.invalid(null, e.getMessage());
        }
        Completion c;
        try {
            c = engine.submit(request);
        } catch (IllegalArgumentException e) {
            throw ApiError.invalid(null, e.getMessage());
        }
        String id = (isChat ? "chatcmpl-" : "cmpl-") + Long.toString(ids.incrementAndGet(), 36) + "-" + Long.toHexString(System.nanoTime() & 0xffffff);
        long createdAt = System.currentTimeMillis() / 1000;
        if (stream) streamResponse(ex, c, id, createdAt, isChat, usageInStream);
        else {
            Completion.Result r;
            try {
                r = c.join();
            } catch (RejectedException e) {
                throw e;
            } catch (RuntimeException e) {
                throw new ApiError(500, "server_error", null, null, "generation failed: " + dive.util.Messages.oneLine(String.valueOf(e.getMessage())));
            }
            ObjectNode o = JSON.createObjectNode().put("id", id).put("object", isChat ? "chat.completion" : "text_completion")
                    .put("created", createdAt).put("model", modelId);
            ObjectNode choice = o.putArray("choices").addObject().put("index", 0);
            if (isChat) choice.putObject("message").put("role", "assistant").put("content", r.text());
            else choice.put("text", r.text());
            choice.putNull("logprobs");
            choice.put("finish_reason", finishReason(r.finishReason()));
            o.set("usage", usage(r));
            sendJson(ex, 200, o);
        }
    }

    private void streamResponse(HttpExchange ex, Completion c, String id, long createdAt, boolean isChat, boolean usageInStream) throws IOException {
        ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        ex.sendResponseHeaders(200, 0);
        count(200);
        OutputStream out = ex.getResponseBody();
        try {
            if (isChat) event(out, chunk(id, createdAt, true, JSON.createObjectNode().put("role", "assistant").put("content", ""), null));
            for (Iterator<Completion.Delta> it = c.deltas(); it.hasNext(); ) {
                Completion.Delta d = it.next();
                if (d.text().isEmpty()) continue;
                ObjectNode piece = isChat ? JSON.createObjectNode().put("content", d.text()) : null;
                event(out, isChat ? chunk(id, createdAt, true, piece, null) : completionChunk(id, createdAt, d.text(), null));
            }
            Completion.Result r;
            try {
                r = c.join();
            } catch (RuntimeException e) {  // headers are out: OpenAI's error object as the last event
                ObjectNode err = JSON.createObjectNode();
                err.putObject("error").put("message", dive.util.Messages.oneLine(String.valueOf(e.getMessage()))).put("type", "server_error");
                event(out, err);
                return;
            }
            String reason = finishReason(r.finishReason());
            event(out, isChat ? chunk(id, createdAt, true, JSON.createObjectNode(), reason) : completionChunk(id, createdAt, "", reason));
            if (usageInStream) {
                ObjectNode u = isChat ? chunk(id, createdAt, false, null, null) : completionChunk(id, createdAt, null, null);
                u.set("usage", usage(r));
                event(out, u);
            }
            out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            c.cancel();  // the client is gone: free its place in the batch
            throw e;
        }
    }

    private ObjectNode chunk(String id, long createdAt, boolean withChoice, ObjectNode delta, String finishReason) {
        ObjectNode o = JSON.createObjectNode().put("id", id).put("object", "chat.completion.chunk").put("created", createdAt).put("model", modelId);
        ArrayNode choices = o.putArray("choices");
        if (withChoice) {
            ObjectNode ch = choices.addObject().put("index", 0);
            ch.set("delta", delta);
            ch.putNull("logprobs");
            if (finishReason == null) ch.putNull("finish_reason"); else ch.put("finish_reason", finishReason);
        }
        return o;
    }

    private ObjectNode completionChunk(String id, long createdAt, String text, String finishReason) {
        ObjectNode o = JSON.createObjectNode().put("id", id).put("object", "text_completion").put("created", createdAt).put("model", modelId);
        ArrayNode choices = o.putArray("choices");
        if (text != null) {
            ObjectNode ch = choices.addObject().put("text", text).put("index", 0);
            ch.putNull("logprobs");
            if (finishReason == null) ch.putNull("finish_reason"); else ch.put("finish_reason", finishReason);
        }
        return o;
    }

    private static void event(OutputStream out, JsonNode data) throws IOException {
        out.write(("data: " + JSON.writeValueAsString(data) + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    private static ObjectNode usage(Completion.Result r) {
        return JSON.createObjectNode().put("prompt_tokens", r.promptTokens()).put("completion_tokens", r.completionTokens())
                .put("total_tokens", r.promptTokens() + r.completionTokens());
    }

    /** OpenAI's finish_reason: stop and length as such; a cancelled or timed-out request ended early, like length */
    private static String finishReason(FinishReason r) {
        return r == FinishReason.STOP ? "stop" : "length";
    }

    private int[] textPrompt(JsonNode req) {
        JsonNode p = req.get("prompt");
        if (p == null || p.isNull()) throw ApiError.invalid("prompt", "'prompt' is required");
        if (p.isArray() && !p.isEmpty() && p.get(0).isIntegralNumber()) return tokenIds(p);  // one prompt as token ids
        if (p.isArray()) {
            if (p.size() != 1) throw ApiError.invalid("prompt", "'prompt' must be one string or one list of token ids (got a list of " + p.size() + ")");
            p = p.get(0);
            if (p.isArray()) return tokenIds(p);
        }
        if (p.isTextual()) {
            int[] ids = tokenizer.encode(p.asText());
            if (ids.length == 0) throw ApiError.invalid("prompt", "the prompt is empty and the tokenizer adds no BOS: nothing to continue");
            return ids;
        }
        throw ApiError.invalid("prompt", "'prompt' must be a string");
    }

    /** a prompt given as token ids: integers in the vocabulary (BatchEngine.submit checks the range) */
    private static int[] tokenIds(JsonNode list) {
        if (list.isEmpty()) throw ApiError.invalid("prompt", "the prompt's token list is empty");
        int[] ids = new int[list.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode t = list.get(i);
            if (!t.isIntegralNumber() || !t.canConvertToInt()) throw ApiError.invalid("prompt", "prompt token " + i + " is not an integer id: " + t);
            ids[i] = t.asInt();
        }
        return ids;
    }

    private int[] chatPrompt(JsonNode req) {
        if (chat == null)
            throw ApiError.invalid("messages", "model '" + modelId + "' has no chat template (tokenizer_config.json chat_template): use /v1/completions");
        JsonNode m = req.get("messages");
        if (m == null || !m.isArray() || m.isEmpty()) throw ApiError.invalid("messages", "'messages' must be a non-empty list");
        List<ChatTemplate.Message> messages = new ArrayList<>();
        for (int i = 0; i < m.size(); i++) {
            JsonNode msg = m.get(i);
            String role = msg.path("role").asText("");
            if (!List.of("system", "developer", "user", "assistant").contains(role))
                throw ApiError.invalid("messages[" + i + "].role", "role '" + role + "' (expected system, developer, user or assistant)");
            JsonNode content = msg.get("content");
            String text;
            if (content == null || content.isNull()) text = "";
            else if (content.isTextual()) text = content.asText();
            else if (content.isArray()) {
                StringBuilder b = new StringBuilder();
                for (JsonNode part : content) {
                    if (!"text".equals(part.path("type").asText()))
                        throw ApiError.invalid("messages[" + i + "].content", "only text content parts are supported");
                    b.append(part.path("text").asText(""));
                }
                text = b.toString();
            } else throw ApiError.invalid("messages[" + i + "].content", "content must be a string or a list of text parts");
            messages.add(new ChatTemplate.Message(role.equals("developer") ? "system" : role, text));
        }
        String rendered;
        try {
            rendered = chat.render(messages, true);
        } catch (IllegalArgumentException e) {
            throw ApiError.invalid("messages", e.getMessage());
        }
        int[] ids = tokenizer.encode(rendered, false);
        if (ids.length == 0) throw ApiError.invalid("messages", "the chat template rendered an empty prompt");
        return ids;
    }

    private static List<String> stops(JsonNode s) {
        if (s == null || s.isNull()) return List.of();
        List<String> out = new ArrayList<>();
        if (s.isTextual()) out.add(s.asText());
        else if (s.isArray()) for (JsonNode e : s) {
            if (!e.isTextual()) throw ApiError.invalid("stop", "'stop' must be a string or a list of strings");
            out.add(e.asText());
        }
        else throw ApiError.invalid("stop", "'stop' must be a string or a list of strings");
        if (out.size() > MAX_STOP) throw ApiError.invalid("stop", "at most " + MAX_STOP + " stop strings (got " + out.size() + ")");
        for (String x : out) if (x.isEmpty()) throw ApiError.invalid("stop", "a stop string is empty");
        return out;
    }

    // ---------------------------------------------------------------- fields

    private static String text(JsonNode o, String field, String dflt) {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isTextual()) throw ApiError.invalid(field, "'" + field + "' must be a string");
        return n.asText();
    }

    private static int integer(JsonNode o, String field, int dflt, int min, int max) {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isIntegralNumber() || !n.canConvertToInt() || n.asInt() < min || n.asInt() > max)
            throw ApiError.invalid(field, "'" + field + "' must be an integer in [" + min + ", " + max + "], got " + n);
        return n.asInt();
    }

    private static long longValue(JsonNode o, String field) {
        JsonNode n = o.get(field);
        if (!n.isIntegralNumber() || !n.canConvertToLong()) throw ApiError.invalid(field, "'" + field + "' must be an integer, got " + n);
        return n.asLong();
    }

    private static double number(JsonNode o, String field, double dflt, double min, double max) {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isNumber() || !(n.asDouble() >= min && n.asDouble() <= max))
            throw ApiError.invalid(field, "'" + field + "' must be a number in [" + (min == Double.MIN_VALUE ? "0 (exclusive)" : min) + ", " + max + "], got " + n);
        return n.asDouble();
    }

    private static boolean bool(JsonNode o, String field, boolean dflt) {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isBoolean()) throw ApiError.invalid(field, "'" + field + "' must be true or false, got " + n);
        return n.asBoolean();
    }

    // ---------------------------------------------------------------- responses

    private void sendJson(HttpExchange ex, int status, JsonNode body) throws IOException {
        send(ex, status, "application/json", JSON.writeValueAsBytes(body));
    }

    private void send(HttpExchange ex, int status, String type, byte[] body) throws IOException {
        ex.getResponseHeaders().set("Content-Type", type);
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        if (body.length > 0) try (OutputStream out = ex.getResponseBody()) { out.write(body); }
        count(status);
    }

    private void error(HttpExchange ex, ApiError e) {
        ObjectNode o = JSON.createObjectNode();
        ObjectNode err = o.putObject("error").put("message", e.getMessage()).put("type", e.type);
        if (e.param == null) err.putNull("param"); else err.put("param", e.param);
        if (e.code == null) err.putNull("code"); else err.put("code", e.code);
        try {
            sendJson(ex, e.status, o);
        } catch (IOException | RuntimeException ignored) {  // headers already sent or the client gone: nothing more to say
            count(e.status);
        }
    }

    private void count(int status) { responses.computeIfAbsent(status, k -> new AtomicLong()).incrementAndGet(); }

    private String metricsText() {
        StringBuilder b = new StringBuilder(engine.metrics().prometheus());
        b.append("# HELP dive_http_responses_total HTTP responses by status code.\n# TYPE dive_http_responses_total counter\n");
        new java.util.TreeMap<>(responses).forEach((k, v) -> b.append("dive_http_responses_total{code=\"").append(k).append("\"} ").append(v.get()).append('\n'));
        return b.toString();
    }

    /** an OpenAI error object with its HTTP status */
    static final class ApiError extends RuntimeException {
        final int status;
        final String type, code, param;

        ApiError(int status, String type, String code, String param, String message) {
            super(message, null, false, false);
            this.status = status;
            this.type = type;
            this.code = code;
            this.param = param;
        }

        static ApiError invalid(String param, String message) { return new ApiError(400, "invalid_request_error", null, param, message); }

        static ApiError notFound(String message) { return new ApiError(404, "invalid_request_error", "not_found", null, message); }

        static ApiError modelNotFound(String model) {
            return new ApiError(404, "invalid_request_error", "model_not_found", "model", "the model '" + model + "' does not exist on this server");
        }

        static ApiError method(String method, String path) {
            return new ApiError(405, "invalid_request_error", "method_not_allowed", null, method + " is not allowed on " + path);
        }

        static ApiError tooLarge() {
            return new ApiError(413, "invalid_request_error", "request_too_large", null, "the request body exceeds " + MAX_BODY_BYTES + " bytes");
        }
    }
}
