package dive.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenizerTest {
    static final Path FIXTURES = TokenizerGoldenTest.FIXTURES;

    static Tokenizer load(String kind) throws Exception {
        return Tokenizer.load(FIXTURES.resolve(kind).resolve("tokenizer.json"));
    }

    /** Expected strings from the Unicode "maximal subpart" rule, the same that Python's errors='replace' gives. */
    @Test
    void lossyUtf8ReplacesEachMaximalIllFormedSubsequenceOnce() {
        assertEquals("a\uFFFDb", Utf8.decodeLossy(bytes(0x61, 0xE2, 0x82, 0x62)));   // truncated 3-byte form
        assertEquals("\uFFFD", Utf8.decodeLossy(bytes(0xF0, 0x9F, 0x98)));           // truncated 4-byte form
        assertEquals("\uFFFD\uFFFD", Utf8.decodeLossy(bytes(0xC0, 0xAF)));           // overlong: C0 never valid
        assertEquals("\uFFFD\uFFFD\uFFFD", Utf8.decodeLossy(bytes(0xED, 0xA0, 0x80))); // encoded surrogate
        assertEquals("\uFFFD".repeat(4), Utf8.decodeLossy(bytes(0xF4, 0x90, 0x80, 0x80))); // above U+10FFFF
        assertEquals("€", Utf8.decodeLossy(bytes(0xE2, 0x82, 0xAC)));
        assertEquals("😀\uFFFD", Utf8.decodeLossy(bytes(0xF0, 0x9F, 0x98, 0x80, 0xFF)));
    }

    @Test
    void invalidUtf8BytesEncodeLikeTheReplacementCharacterText() throws Exception {
        for (String kind : TokenizerGoldenTest.KINDS) {
            Tokenizer t = load(kind);
            byte[] raw = bytes(0x61, 0xE2, 0x82, 0x20, 0x62, 0xFF);
            assertArrayEquals(t.encode("a\uFFFD b\uFFFD", true), t.encode(raw, true), kind);
            // an unpaired surrogate has no UTF-8 form: encoded as U+FFFD
            assertArrayEquals(t.encode("x\uFFFDy", false), t.encode("x\uD83Dy", false), kind);
        }
    }

    @Test
    void specialTokenIdsComeFromTheTemplateOrTheAddedTokens() throws Exception {
        Tokenizer llama3 = load("llama3");
        assertEquals(llama3.id("<|begin_of_text|>"), llama3.bosId());
        assertEquals(llama3.id("<|end_of_text|>"), llama3.eosId());
        Tokenizer llama2 = load("llama2");
        assertEquals(1, llama2.bosId().getAsInt());
        assertEquals(2, llama2.eosId().getAsInt());
        assertEquals("<s>", llama2.token(1));
        assertEquals("<0x0A>", llama2.token(llama2.id("<0x0A>").getAsInt()));
        assertTrue(llama2.isSpecial(1));
        assertTrue(llama2.id("no such token").isEmpty());
        Tokenizer gpt2 = load("gpt2");
        assertTrue(gpt2.bosId().isEmpty());
        assertEquals(gpt2.id("<|endoftext|>"), gpt2.eosId());
    }

    @Test
    void decodeRejectsIdsOutsideTheVocabulary() throws Exception {
        Tokenizer t = load("llama2");
        var e = assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {1, t.vocabSize()}));
        assertTrue(e.getMessage().contains("token id " + t.vocabSize() + " is outside the vocabulary"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {-1}));
        assertThrows(IllegalArgumentException.class, () -> t.token(t.vocabSize()));
    }

    @Test
    void unsupportedOrMalformedFilesNameTheFileAndTheField(@TempDir Path dir) throws Exception {
        expectError(dir, n -> ((ObjectNode) n.get("model")).put("type", "Unigram"),
                "tokenizer.json: model.type 'Unigram' is not supported (expected BPE)");
        expectError(dir, n -> ((ObjectNode) n.get("model")).put("type", "WordPiece"),
                "model.type 'WordPiece' is not supported (expected BPE)");
        expectError(dir, n -> n.putObject("normalizer").put("type", "BertNormalizer"),
                "normalizer.type 'BertNormalizer' is not supported");
        expectError(dir, n -> ((ObjectNode) n.get("pre_tokenizer")).put("type", "Whitespace"),
                "pre_tokenizer.type 'Whitespace' is not supported");
        expectError(dir, n -> n.putObject("decoder").put("type", "WordPiece"), "decoder.type 'WordPiece' is not supported");
        expectError(dir, n -> n.putObject("post_processor").put("type", "BertProcessing"),
                "post_processor.type 'BertProcessing' is not supported");
        expectError(dir, n -> ((ObjectNode) n.get("model")).putArray("merges").add("a"),
                "model.merges[0] must be two tokens separated by one space");
        expectError(dir, n -> ((ObjectNode) n.get("model")).putArray("merges").addArray().add("zz").add("q"),
                "model.merges[0] names a token not in model.vocab");
        expectError(dir, n -> ((ObjectNode) n.get("model")).put("unk_token", "<nope>"),
                "model.unk_token '<nope>' is not in model.vocab");
        expectError(dir, n -> n.remove("model"), "model is missing");
        expectError(dir, n -> ((ObjectNode) n.get("added_tokens").get(0)).put("content", 5),
                "added_tokens[0].content must be a string");
        expectError(dir, n -> {
            ObjectNode template = n.putObject("post_processor").put("type", "TemplateProcessing");
            template.putArray("single").addObject().putObject("SpecialToken").put("id", "<bos>");
            template.putObject("special_tokens").putObject("<bos>").putArray("ids").add(99999);
        }, "post_processor adds token id 99999, which is not in the vocabulary");
        expectError(dir, n -> n.putObject("pre_tokenizer").put("type", "Split").put("behavior", "Isolated")
                .putObject("pattern").put("Regex", "(unclosed"), "pre_tokenizer.pattern.Regex is not a regular expression");

        Path bad = dir.resolve("broken.json");
        Files.writeString(bad, "{\"model\": ");
        var e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(bad));
        assertTrue(e.getMessage().startsWith(bad + ": not valid JSON"), e.getMessage());
    }

    private static void expectError(Path dir, Consumer<ObjectNode> change, String expected) throws Exception {
        ObjectMapper json = new ObjectMapper();
        ObjectNode tree = (ObjectNode) json.readTree(FIXTURES.resolve("gpt2/tokenizer.json").toFile());
        change.accept(tree);
        Path file = dir.resolve("tokenizer.json");
        json.writeValue(file.toFile(), tree);
        var e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(file));
        assertTrue(e.getMessage().startsWith(file.toString() + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), "expected '" + expected + "' in: " + e.getMessage());
    }

    /** A ~1 MB text: the same ids from 4 threads at once (shared cache) as from one thread with a fresh tokenizer. */
    @Test
    void concurrentEncodingOfAMegabyteGivesTheSingleThreadedIds() throws Exception {
        String text = megabyteText();
        for (String kind : List.of("llama3", "llama2")) {
            long startNanos = System.nanoTime();
            int[] expected = load(kind).encode(text);
            long millis = (System.nanoTime() - startNanos) / 1_000_000;
            System.out.printf("tokenizer %s: %d chars -> %d tokens in %d ms (cold cache, one thread)%n",
                    kind, text.length(), expected.length, millis);
            Tokenizer shared = load(kind);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<int[]>> results = new ArrayList<>();
                for (int i = 0; i < 4; i++) results.add(pool.submit(() -> shared.encode(text)));
                for (Future<int[]> r : results) assertArrayEquals(expected, r.get(), kind);
            } finally {
                pool.shutdown();
            }
            assertEquals(text, shared.decode(expected, true), kind + " round trip");
        }
    }

    static String megabyteText() throws Exception {
        StringBuilder sb = new StringBuilder();
        List<String> lines = Files.readAllLines(FIXTURES.resolve("trainer/corpus.txt"), StandardCharsets.UTF_8);
        int i = 0;
        while (sb.length() < 1_000_000) sb.append(lines.get(i++ % lines.size())).append(i % 7 == 0 ? "\n\n" : " ").append(i).append(' ');
        return sb.toString();
    }

    static byte[] bytes(int... values) {
        byte[] out = new byte[values.length];
        for (int i = 0; i < values.length; i++) out[i] = (byte) values[i];
        return out;
    }
}
