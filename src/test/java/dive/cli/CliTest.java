package dive.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The command line end to end on the tiny_bpe fixture, against the values HF transformers computed
 * for it (src/test/python/make_llama_fixtures.py → expected.json, logits.npy).
 */
class CliTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final ObjectMapper JSON = new ObjectMapper();

    record Run(int code, String out, String err) {}

    static synchronized Run run(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        var out = new ByteArrayOutputStream();
        var err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int code = Main.run(dive.backend.TestBackends.cli(args));
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    static JsonNode expected() throws Exception { return JSON.readTree(MODEL.resolve("expected.json").toFile()); }

    @Test
    void pplJsonMatchesTransformers() throws Exception {
        JsonNode exp = expected();
        Run r = run("ppl", MODEL.toString(), "--text", MODEL.resolve("eval.txt").toString(),
                "--window", exp.get("eval_text_window").asText(), "--json", "-q");
        assertEquals(0, r.code, r.err);
        JsonNode got = JSON.readTree(r.out);
        double want = exp.get("eval_text_perplexity").asDouble();
        assertEquals(want, got.get("ppl").asDouble(), 1e-4 * want);
        assertEquals(exp.get("eval_text_predicted_tokens").asInt(), got.get("tokens").asInt());
    }

    @Test
    void tokenizeJsonMatchesHfTokenizers() throws Exception {
        Run r = run("tokenize", MODEL.toString(), "--text", MODEL.resolve("eval.txt").toString(), "--json");
        assertEquals(0, r.code, r.err);
        assertEquals(expected().get("eval_text_ids"), JSON.readTree(r.out).get("ids"));
    }

    @Test
    void logitsNpyMatchesTransformers(@TempDir Path tmp) throws Exception {
        JsonNode exp = expected();
        StringBuilder ids = new StringBuilder();
        for (JsonNode id : exp.get("input_ids")) ids.append(ids.isEmpty() ? "" : ",").append(id.asInt());
        Path out = tmp.resolve("logits.npy");
        Run r = run("logits", MODEL.toString(), "--ids", ids.toString(), "--out", out.toString(), "-q");
        assertEquals(0, r.code, r.err);
        float[] got = readNpyF32(out), want = readNpyF32(MODEL.resolve("logits.npy"));
        assertEquals(want.length, got.length);
        double maxAbsRef = 0, maxDiff = 0;
        for (int i = 0; i < want.length; i++) {
            maxAbsRef = Math.max(maxAbsRef, Math.abs(want[i]));
            maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
        }
        assertTrue(maxDiff / maxAbsRef <= 1e-4, "relative error " + maxDiff / maxAbsRef);
    }

    @Test
    void generateGreedyIsTransformersContinuation() throws Exception {
        JsonNode exp = expected();
        Tokenizer tok = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        int[] newIds = JSON.convertValue(exp.get("greedy_new_ids"), int[].class);
        String prompt = exp.get("prompt_text").asText();
        Run r = run("generate", MODEL.toString(), "--prompt", prompt, "--max-tokens", Integer.toString(newIds.length), "-q");
        assertEquals(0, r.code, r.err);
        assertEquals(prompt + tok.decode(newIds, true) + System.lineSeparator(), r.out);
    }

    @Test
    void benchJsonReportsPositiveRates() throws Exception {
        Run r = run("bench", MODEL.toString(), "--prompt-len", "16", "--gen", "4", "--repeats", "1", "--json", "-q");
        assertEquals(0, r.code, r.err);
        JsonNode got = JSON.readTree(r.out);
        assertTrue(got.get("prefillTokensPerSecond").asDouble() > 0);
        assertTrue(got.get("decodeTokensPerSecond").asDouble() > 0);
    }

    @ParameterizedTest
    @ValueSource(strings = {"inspect", "tokenize", "generate", "ppl", "logits", "eval", "bench", "demo", "train", "corpus", "affinity", "convert"})
    void everyCommandHasHelp(String command) {
        Run r = run(command, "--help");
        assertEquals(0, r.code);
        assertTrue(r.out.contains("Usage: dive " + command), r.out);
    }

    // ---- bad input: a one-line error naming what is wrong, exit code 1, no output file

    @Test
    void missingModelFolderIsNamed(@TempDir Path tmp) {
        Path missing = tmp.resolve("no-such-model");
        Run r = run("ppl", missing.toString(), "--text", MODEL.resolve("eval.txt").toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains(missing.toString()), r.err);
        assertEquals(1, r.err.strip().lines().count(), r.err);
    }

    @Test
    void idOutsideVocabularyWritesNothing(@TempDir Path tmp) {
        Path out = tmp.resolve("x.npy");
        Run r = run("logits", MODEL.toString(), "--ids", "1,2,320", "--out", out.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("320") && r.err.contains("vocabulary"), r.err);
        assertFalse(Files.exists(out));
        assertEquals(0, tmp.toFile().list().length, "no temp files left");
    }

    @Test
    void emptyTextIsRefused(@TempDir Path tmp) throws Exception {
        Path empty = Files.createFile(tmp.resolve("empty.txt"));
        Run r = run("ppl", MODEL.toString(), "--text", empty.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("empty") && r.err.contains("empty.txt"), r.err);
    }

    @Test
    void malformedConfigIsNamed(@TempDir Path tmp) throws Exception {
        for (String f : new String[] {"model.safetensors", "tokenizer.json"}) Files.copy(MODEL.resolve(f), tmp.resolve(f));
        Files.writeString(tmp.resolve("config.json"), "{\"model_type\": \"llama\", \"hidden_size\": ");
        Run r = run("ppl", tmp.toString(), "--text", MODEL.resolve("eval.txt").toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("config.json"), r.err);
    }

    @Test
    void badFlagValuesAreNamed() {
        Run r = run("ppl", MODEL.toString(), "--text", MODEL.resolve("eval.txt").toString(), "--window", "1");
        assertEquals(1, r.code);
        assertTrue(r.err.contains("--window"), r.err);
        Run g = run("generate", MODEL.toString(), "--prompt", "x", "--top-p", "1.5");
        assertEquals(1, g.code);
        assertTrue(g.err.contains("--top-p"), g.err);
        Run b = run("ppl", MODEL.toString(), "--text", MODEL.resolve("eval.txt").toString(), "--backend", "gpu9");
        assertEquals(1, b.code);
        assertTrue(b.err.contains("gpu9"), b.err);
    }

    /** reads a little-endian F32 .npy (format 1.0) the way the NumPy format spec lays it out */
    static float[] readNpyF32(Path file) throws Exception {
        byte[] all = Files.readAllBytes(file);
        ByteBuffer bb = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals((byte) 0x93, all[0]);
        assertEquals("NUMPY", new String(all, 1, 5, StandardCharsets.US_ASCII));
        int headerLen = Short.toUnsignedInt(bb.getShort(8));
        String header = new String(all, 10, headerLen, StandardCharsets.US_ASCII);
        assertTrue(header.contains("'descr': '<f4'"), header);
        int start = 10 + headerLen;
        float[] out = new float[(all.length - start) / 4];
        for (int i = 0; i < out.length; i++) out[i] = bb.getFloat(start + 4 * i);
        return out;
    }
}
