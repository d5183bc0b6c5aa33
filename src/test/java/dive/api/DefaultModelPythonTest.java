package dive.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.model.Perplexity;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The embedded default model loads in transformers and gives the same perplexity there as in the engine, on the same
 * ids (src/test/python/check_llama_ppl.py tokenizes with the HF tokenizers library; the ids must hash equal).
 * Runs where {@code DIVE_PYTHON} names a python with torch + transformers (./dive test sets it up when it can).
 */
@Tag("python")
class DefaultModelPythonTest {
    static final int WINDOW = 128;

    @Test
    void transformersGivesTheEnginesPerplexity() throws Exception {
        dive.model.ReferencePython.interpreter();
        Path dir = DefaultModel.extract();
        Path text = dir.resolve(DefaultModel.SAMPLE_TEXT);
        Perplexity.Result ours;
        int[] ids;
        try (Engine engine = Engine.load(dir, Backends.create("vector"))) {
            ids = engine.encode(Files.readString(text));
            ours = Perplexity.compute(engine.model(), ids, WINDOW);
        }
        String out = dive.model.ReferencePython.run("check_llama_ppl.py", dir.toString(), text.toString(), Integer.toString(WINDOW));
        JsonNode hf = new ObjectMapper().readTree(out.substring(out.lastIndexOf('\n') + 1));
        ByteBuffer bytes = ByteBuffer.allocate(ids.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (int id : ids) bytes.putInt(id);
        assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes.array())), hf.get("ids_sha256").asText(),
                "token ids differ between dive's tokenizer and HF tokenizers");
        assertEquals(ours.predictedTokens(), hf.get("tokens").asInt());
        double want = hf.get("ppl").asDouble();
        assertEquals(want, ours.perplexity(), 1e-4 * want, "perplexity: dive " + ours.perplexity() + ", transformers " + want);
    }
}
