package dive.api;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.model.GenerateOptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.*;

import static org.junit.jupiter.api.Assertions.*;

/** The library API: load once, call from many threads; values held to the transformers fixture. */
class EngineTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");

    @Test
    void manyThreadsShareOneEngine() throws Exception {
        var exp = new ObjectMapper().readTree(MODEL.resolve("expected.json").toFile());
        String text = Files.readString(MODEL.resolve("eval.txt"));
        int window = exp.get("eval_text_window").asInt();
        double wantPpl = exp.get("eval_text_perplexity").asDouble();
        try (Engine engine = Engine.load(MODEL, Backends.create("vector"))) {
            String prompt = exp.get("prompt_text").asText();
            String single = engine.generate(prompt, GenerateOptions.greedy(12));
            ExecutorService pool = Executors.newFixedThreadPool(6);
            try {
                List<Future<String>> gens = new ArrayList<>();
                List<Future<Double>> ppls = new ArrayList<>();
                for (int i = 0; i < 12; i++) {
                    gens.add(pool.submit(() -> engine.generate(prompt, GenerateOptions.greedy(12))));
                    ppls.add(pool.submit(() -> engine.perplexity(text, window).perplexity()));
                }
                for (Future<String> g : gens) assertEquals(single, g.get(60, TimeUnit.SECONDS));
                for (Future<Double> p : ppls) assertEquals(wantPpl, p.get(60, TimeUnit.SECONDS), 1e-4 * wantPpl);
            } finally {
                pool.shutdownNow();
            }
        }
    }

    @Test
    void aFolderWithoutTokenizerRunsIdsButNotText(@TempDir Path tmp) throws Exception {
        Files.copy(MODEL.resolve("config.json"), tmp.resolve("config.json"));
        Files.copy(MODEL.resolve("model.safetensors"), tmp.resolve("model.safetensors"));
        try (Engine engine = Engine.load(tmp, Backends.create("scalar"))) {
            assertEquals(3 * engine.config().vocabSize(), engine.logits(new int[] {1, 2, 3}).length);
            var e = assertThrows(IllegalStateException.class, () -> engine.encode("hello"));
            assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
        }
    }

    @Test
    void missingFolderIsNamed(@TempDir Path tmp) {
        Path missing = tmp.resolve("nope");
        var e = assertThrows(java.io.IOException.class, () -> Engine.load(missing));
        assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());
    }
}
