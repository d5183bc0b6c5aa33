package dive.api;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.ScalarBackend;
import dive.model.GenerateOptions;
import dive.model.Generator;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** A tokenizer with fewer ids than config.json's vocab_size: generation only ever picks ids it can decode. */
class DecodableIdsTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final ObjectMapper JSON = new ObjectMapper();
    static final int KEPT = 200;  // of 320

    /** tiny_bpe with its tokenizer cut to ids below {@link #KEPT} (and the merges that make them) */
    static Path truncated(Path dir) throws Exception {
        Files.copy(MODEL.resolve("config.json"), dir.resolve("config.json"));
        Files.copy(MODEL.resolve("model.safetensors"), dir.resolve("model.safetensors"));
        ObjectNode tok = (ObjectNode) JSON.readTree(MODEL.resolve("tokenizer.json").toFile());
        ObjectNode vocab = (ObjectNode) tok.get("model").get("vocab");
        for (Iterator<Map.Entry<String, com.fasterxml.jackson.databind.JsonNode>> it = vocab.properties().iterator(); it.hasNext(); )
            if (it.next().getValue().asInt() >= KEPT) it.remove();
        ArrayNode merges = (ArrayNode) tok.get("model").get("merges"), kept = JSON.createArrayNode();
        for (var m : merges) if (vocab.has(m.get(0).asText() + m.get(1).asText())) kept.add(m);
        ((ObjectNode) tok.get("model")).set("merges", kept);
        Files.writeString(dir.resolve("tokenizer.json"), tok.toPrettyString());
        return dir;
    }

    @Test
    void samplingNeverPicksAnIdTheTokenizerCannotDecode(@TempDir Path tmp) throws Exception {
        try (Engine engine = Engine.load(truncated(tmp), new ScalarBackend())) {
            Tokenizer tok = engine.requireTokenizer();
            assertEquals(KEPT, tok.vocabSize());
            assertTrue(tok.hasToken(KEPT - 1) && !tok.hasToken(KEPT) && !tok.hasToken(-1));
            int[] prompt = tok.encode("the cat");
            for (long seed = 0; seed < 4; seed++) {
                // hot sampling spreads over the whole vocabulary: without the mask ids ≥ 200 come up within a few tokens
                int[] ids = Generator.generate(engine.model(), prompt, GenerateOptions.sampling(48, 4f, 1f, seed).withEos(), engine.decodableIds(), id -> {});
                for (int id : ids) assertTrue(id < KEPT, "id " + id + " has no token");
                assertDoesNotThrow(() -> engine.generate("the cat", GenerateOptions.sampling(48, 4f, 0.95f, 3).withEos()));
            }
            assertDoesNotThrow(() -> engine.generate("the cat", GenerateOptions.greedy(40).withEos()));
        }
    }
}
