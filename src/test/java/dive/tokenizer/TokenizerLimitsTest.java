package dive.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Ids and counts of a tokenizer.json are bounded before anything is allocated from them; decode names unknown ids. */
class TokenizerLimitsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path dir;

    private Path write(Consumer<ObjectNode> change) throws Exception {
        ObjectNode tree = (ObjectNode) JSON.readTree(TokenizerTest.FIXTURES.resolve("gpt2/tokenizer.json").toFile());
        change.accept(tree);
        Path file = dir.resolve("tokenizer.json");
        JSON.writeValue(file.toFile(), tree);
        return file;
    }

    private void expectError(Consumer<ObjectNode> change, String expected) throws Exception {
        Path file = write(change);
        var e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(file));
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), "expected '" + expected + "' in: " + e.getMessage());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
    }

    private static ObjectNode vocab(ObjectNode tree) {
        return (ObjectNode) tree.get("model").get("vocab");
    }

    @Test
    void aHugeVocabIdIsRefusedBeforeAllocating() throws Exception {
        // was: OutOfMemoryError while allocating the id table
        expectError(t -> vocab(t).put("§", 2_000_000_000),
                "model.vocab[\"§\"] 2000000000: expected 0 ≤ id < " + Tokenizer.MAX_VOCAB_SIZE);
    }

    @Test
    void theLargestIntIdIsRefusedNamingTheField() throws Exception {
        // was: "Index 2147483647 out of bounds for length 704", naming no file or field
        expectError(t -> vocab(t).put("§", Integer.MAX_VALUE),
                "model.vocab[\"§\"] 2147483647: expected 0 ≤ id < " + Tokenizer.MAX_VOCAB_SIZE);
        expectError(t -> ((ObjectNode) t.get("added_tokens").get(0)).put("id", Integer.MAX_VALUE),
                "added_tokens[0].id 2147483647: expected 0 ≤ id < " + Tokenizer.MAX_VOCAB_SIZE);
    }

    @Test
    void twoVocabTokensWithOneIdAreRefused() throws Exception {
        // decode of that id would give one of the two tokens, silently
        expectError(t -> vocab(t).put("§", 0), "has id 0, which model.vocab[\"");
    }

    @Test
    void decodeOfAnIdInAGapNamesTheIdAndTheFile() throws Exception {
        Path file = write(t -> vocab(t).put("§", 1000)); // moves "§" from id 100 to 1000: ids 100 and 704..999 have no token
        Tokenizer tok = Tokenizer.load(file);
        assertEquals(1001, tok.vocabSize());
        for (int id : new int[] {100, 800}) {
            IllegalArgumentException e = assertThrows(UnknownTokenIdException.class, () -> tok.decode(new int[] {99, id, 101}));
            assertEquals(file + ": token id " + id + " has no token (no entry of model.vocab or added_tokens has this id)",
                    e.getMessage());
            assertThrows(UnknownTokenIdException.class, () -> tok.decode(new int[] {id}, true));
        }
        var e = assertThrows(UnknownTokenIdException.class, () -> tok.decode(new int[] {1001}));
        assertEquals(file + ": token id 1001 is outside the vocabulary (expected 0 ≤ id < 1001)", e.getMessage());
        assertEquals(1001, ((UnknownTokenIdException) e).id());
    }
}
