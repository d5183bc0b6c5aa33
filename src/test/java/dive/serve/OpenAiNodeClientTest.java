package dive.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dive.backend.VectorBackend;
import dive.model.GenerateOptions;
import dive.model.Generator;
import dive.model.LlamaModel;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static dive.serve.OpenAiServerTest.CHATML;
import static dive.serve.OpenAiServerTest.DEFAULT;
import static dive.serve.OpenAiServerTest.JSON;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The server driven by the official openai npm client (src/test/node/openai-client-check.mjs, the version pinned in its
 * package-lock.json): completions and chat, plain and streamed, concurrent clients, a stream the client aborts (counted
 * as cancelled in /metrics), and the client's errors for an unknown model (404) and a bad temperature (400). The texts
 * the client received are checked against the engine's own greedy generation. Runs where {@code DIVE_NODE} names a
 * node and the client is installed in {@code DIVE_NODE_DIR} (default src/test/node; {@code ./dive test} sets both up
 * with src/test/node/setup.sh); skipped with that reason otherwise.
 */
@Tag("node")
class OpenAiNodeClientTest {
    @TempDir Path tmp;

    @Test
    void theOpenAiClientGetsTheEnginesGreedyTexts() throws Exception {
        String node = System.getenv("DIVE_NODE");
        assumeTrue(node != null && !node.isBlank(), "DIVE_NODE is not set (a node with the openai client installed by src/test/node/setup.sh); skipping the openai client check");
        Path dir = Path.of(System.getenv().getOrDefault("DIVE_NODE_DIR", "src/test/node"));
        assumeTrue(Files.exists(dir.resolve("node_modules/openai/package.json")),
                "the openai client is not installed in " + dir + " (run src/test/node/setup.sh); skipping the openai client check");

        try (LlamaModel model = LlamaModel.load(DEFAULT, new VectorBackend(2))) {
            Tokenizer tokenizer = Tokenizer.load(DEFAULT.resolve("tokenizer.json"));
            JsonNode got;
            try (BatchEngine engine = BatchEngine.start(model, tokenizer, tokenizer.decodableIds(), new ServeOptions(8, 32, 64L << 20, 64));
                 OpenAiServer server = OpenAiServer.start(engine, tokenizer, ChatTemplate.of(CHATML, "<|begin_of_text|>", "<|end_of_text|>"),
                         "default", null, new InetSocketAddress("127.0.0.1", 0))) {
                got = JSON.readTree(runClient(node, dir, "http://127.0.0.1:" + server.port()));
            }
            assertTrue(got.path("ok").asBoolean(), got.toString());

            JsonNode completion = got.get("completion");
            int[] ids = tokenizer.encode(completion.get("prompt").asText());
            assertEquals(greedy(model, tokenizer, ids, completion.get("max_tokens").asInt()), completion.get("text").asText());
            assertEquals(ids.length, completion.get("usage").get("prompt_tokens").asInt());

            JsonNode chat = got.get("chat");
            StringBuilder rendered = new StringBuilder();
            for (JsonNode m : chat.get("messages"))
                rendered.append("<|im_start|>").append(m.get("role").asText()).append('\n').append(m.get("content").asText()).append("<|im_end|>\n");
            int[] chatIds = tokenizer.encode(rendered.append("<|im_start|>assistant\n").toString(), false);
            assertEquals(greedy(model, tokenizer, chatIds, chat.get("max_tokens").asInt()), chat.get("text").asText());
            assertEquals(chatIds.length, chat.get("usage").get("prompt_tokens").asInt());

            assertEquals(6, got.get("concurrent").size());
            for (JsonNode c : got.get("concurrent"))
                assertEquals(greedy(model, tokenizer, tokenizer.encode(c.get("prompt").asText()), c.get("max_tokens").asInt()), c.get("text").asText(),
                        "concurrent client with prompt " + c.get("prompt"));

            assertTrue(got.get("cancelled").get("after").asLong() > got.get("cancelled").get("before").asLong(), got.get("cancelled").toString());
            assertEquals(404, got.get("errors").get("unknownModel").get("status").asInt());
            assertEquals(400, got.get("errors").get("badTemperature").get("status").asInt());
        }
    }

    /** runs the client check against the server at url; asserts it exits 0 within 120 s and returns its JSON line */
    private String runClient(String node, Path dir, String url) throws Exception {
        Path out = tmp.resolve("stdout"), err = tmp.resolve("stderr");
        Process p = new ProcessBuilder(node, dir.resolve("openai-client-check.mjs").toString(), url, "default")
                .redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
            fail("the openai client check did not finish in 120 s: " + Files.readString(err).strip());
        }
        String output = Files.readString(out).strip();
        System.out.println("openai-client-check.mjs: " + output);
        assertEquals(0, p.exitValue(), "the openai client check failed: " + Files.readString(err).strip() + "\n" + output);
        return output;
    }

    private static String greedy(LlamaModel model, Tokenizer tokenizer, int[] prompt, int n) {
        return tokenizer.decode(Generator.generate(model, prompt, GenerateOptions.greedy(n), tokenizer.decodableIds(), id -> {}), true);
    }
}
