package dive.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BpeTrainerTest {
    static final Path TRAINER_FIXTURE = Path.of("src/test/resources/tokenizer/trainer");

    /** The trainer corpus and settings whose output is committed and was checked with HF tokenizers. */
    static Tokenizer trainOnFixtureCorpus() throws Exception {
        List<String> lines = Files.readAllLines(TRAINER_FIXTURE.resolve("corpus.txt"));
        return BpeTrainer.train(lines, 400, 2, List.of("<|endoftext|>", "<s>"), "<s>");
    }

    static List<String> repeat(String word, int times) {
        return Collections.nCopies(times, word);
    }

    /**
     * Hand count: hug x10, pug x5, pun x12, bun x4, hugs x5 (one word per text, so no 'Ġ').
     * Pairs: u g = 10+5+5 = 20, p u = 17, u n = 12+4 = 16, h u = 15, g s = 5, b u = 4: first merge "u g".
     * Then h ug = 15, p ug = 5, ug s = 5, p u = 12, u n = 16: second merge "u n". Then p un = 12, h ug = 15:
     * third merge "h ug".
     */
    @Test
    void mergesFollowHandCountedPairFrequencies() {
        List<String> texts = new ArrayList<>();
        texts.addAll(repeat("hug", 10));
        texts.addAll(repeat("pug", 5));
        texts.addAll(repeat("pun", 12));
        texts.addAll(repeat("bun", 4));
        texts.addAll(repeat("hugs", 5));
        Tokenizer t = BpeTrainer.train(texts, 256 + 3, 1, List.of());
        assertEquals(259, t.vocabSize());
        assertEquals("ug", t.token(256));
        assertEquals("un", t.token(257));
        assertEquals("hug", t.token(258));
        assertArrayEquals(new int[] {258, t.id("s").getAsInt()}, t.encode("hugs"));
        assertArrayEquals(new int[] {t.id("p").getAsInt(), 257}, t.encode("pun"));

        // min frequency 16: "u g" (20) and "u n" (16) are merged, "h ug" (15) is not, whatever the vocab size
        Tokenizer limited = BpeTrainer.train(texts, 1000, 16, List.of());
        assertEquals(258, limited.vocabSize());
        assertEquals("un", limited.token(257));
    }

    @Test
    void vocabularyHasRequestedSizeWithSpecialTokensFirst() throws Exception {
        Tokenizer t = trainOnFixtureCorpus();
        assertEquals(400, t.vocabSize());
        assertEquals(0, t.id("<|endoftext|>").getAsInt());
        assertEquals(1, t.id("<s>").getAsInt());
        assertEquals(1, t.bosId().getAsInt());
        assertEquals(0, t.eosId().getAsInt());
        int[] ids = t.encode("hello");
        assertEquals(1, ids[0], "BOS first");
        assertArrayEquals(t.encode("hello", false), java.util.Arrays.copyOfRange(ids, 1, ids.length));
        assertArrayEquals(new int[] {0}, t.encode("<|endoftext|>", false), "special token split out of text");
    }

    @Test
    void decodeOfEncodeGivesTheTextBackForArbitraryText() throws Exception {
        Tokenizer t = trainOnFixtureCorpus();
        Random random = new Random(7);
        int[][] ranges = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x17F}, {0x4E00, 0x4FFF}, {0x1F300, 0x1F64F},
                {0x200D, 0x200D}, {0xFE0F, 0xFE0F}, {0x0400, 0x04FF}, {0xFFFD, 0xFFFD}, {0x10000, 0x10FFFF}};
        for (int n = 0; n < 300; n++) {
            StringBuilder text = new StringBuilder();
            int length = random.nextInt(40);
            for (int i = 0; i < length; i++) {
                int[] range = ranges[random.nextInt(ranges.length)];
                int cp = range[0] + random.nextInt(range[1] - range[0] + 1);
                if (Character.getType(cp) == Character.SURROGATE) continue;
                text.appendCodePoint(cp);
            }
            String s = text.toString();
            assertEquals(s, t.decode(t.encode(s, false)), "round trip of " + s);
            assertEquals(s, t.decode(t.encode(s), true), "round trip skipping BOS of " + s);
        }
    }

    @Test
    void trainingIsDeterministicAndMatchesTheCommittedHfCheckedFile(@TempDir Path dir) throws Exception {
        Tokenizer t = trainOnFixtureCorpus();
        Path out = dir.resolve("tokenizer.json");
        BpeTrainer.save(t, out);
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(out), files.toList(), "only tokenizer.json, no temp file left");
        }
        Path target = Path.of("target/trained-tokenizer.json");
        Files.createDirectories(target.getParent());
        Files.copy(out, target, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        ObjectMapper json = new ObjectMapper();
        // the committed file was made by this trainer and checked with HF tokenizers (check_trained_tokenizer.py),
        // whose ids for the golden texts TokenizerGoldenTest compares
        assertEquals(json.readTree(TRAINER_FIXTURE.resolve("tokenizer.json").toFile()), json.readTree(out.toFile()));
        Tokenizer reloaded = Tokenizer.load(out);
        assertArrayEquals(t.encode("Tokenization of 12345 👍"), reloaded.encode("Tokenization of 12345 👍"));
    }

    @Test
    void rejectsImpossibleSettings() {
        var e = assertThrows(IllegalArgumentException.class, () -> BpeTrainer.train(List.of("a"), 100, 1, List.of()));
        assertTrue(e.getMessage().contains("vocabSize 100"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> BpeTrainer.train(List.of("a"), 300, 0, List.of()));
        assertThrows(IllegalArgumentException.class, () -> BpeTrainer.train(List.of("a"), 300, 1, List.of("<s>"), "</s>"));
    }
}
