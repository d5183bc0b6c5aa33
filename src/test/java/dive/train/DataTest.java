package dive.train;

import dive.tokenizer.BpeTrainer;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Token shards and their cache, and the seeded data loader. */
class DataTest {
    @TempDir Path tmp;

    static byte[] jsonl(String... texts) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < texts.length; i++) sb.append("{\"id\": \"d").append(i).append("\", \"text\": \"").append(texts[i]).append("\"}\n");
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    static Tokenizer tokenizer() {
        return BpeTrainer.train(List.of("the cat sat on the mat", "a dog and a cat"), 280, 1, List.of("<s>", "</s>"), "<s>");
    }

    @Test
    void shardIsDocumentsJoinedByEosAndCachedByHash() throws Exception {
        Tokenizer tok = tokenizer();
        int eos = tok.id("</s>").getAsInt();
        assertEquals(eos, TokenShard.separatorId(tok));
        byte[] source = jsonl("the cat sat", "a dog");
        TokenShard s = TokenShard.loadOrBuild(tmp, "wiki.train", source, "wiki/train.jsonl", tok, "tokhash");
        List<Integer> expected = new ArrayList<>();
        for (String text : List.of("the cat sat", "a dog")) {
            for (int id : tok.encode(text, false)) expected.add(id);
            expected.add(eos);
        }
        assertEquals(expected, java.util.Arrays.stream(s.tokens()).boxed().toList());
        assertEquals(2, s.documents());
        assertEquals(4L * expected.size(), Files.size(tmp.resolve("wiki.train.tokens")));

        // cached: a tampered token file of the right size is read back as is (proof the cache is used) …
        byte[] tampered = Files.readAllBytes(tmp.resolve("wiki.train.tokens"));
        tampered[0] = 99; tampered[1] = 0; tampered[2] = 0; tampered[3] = 0;
        Files.write(tmp.resolve("wiki.train.tokens"), tampered);
        assertEquals(99, TokenShard.loadOrBuild(tmp, "wiki.train", source, "x", tok, "tokhash").tokens()[0]);
        // … and rebuilt when the tokenizer or the source changes
        assertEquals(expected.getFirst(), TokenShard.loadOrBuild(tmp, "wiki.train", source, "x", tok, "otherhash").tokens()[0]);
        Files.write(tmp.resolve("wiki.train.tokens"), tampered);
        TokenShard changed = TokenShard.loadOrBuild(tmp, "wiki.train", jsonl("the cat sat", "a dog", "a cat"), "x", tok, "otherhash");
        assertEquals(expected.getFirst(), changed.tokens()[0]);
        assertEquals(3, changed.documents());
    }

    @Test
    void loaderIsSeededMixesByWeightAndResumes() {
        int[] a = new int[100], b = new int[50], c = new int[40];
        for (int i = 0; i < a.length; i++) a[i] = i;          // dataset a: tokens 0…99
        for (int i = 0; i < b.length; i++) b[i] = 1000 + i;   // dataset b: tokens 1000…1049
        for (int i = 0; i < c.length; i++) c[i] = 5000 + i;
        List<TokenShard> data = List.of(new TokenShard("a", a, 1), new TokenShard("b", b, 1), new TokenShard("c", c, 1));
        DataLoader loader = new DataLoader(data, new double[] {3, 1, 0}, 4, 9, 77);
        int fromA = 0, fromB = 0, minOffset = Integer.MAX_VALUE, maxOffsetA = 0;
        for (int n = 0; n < 2000; n++) {
            for (int[] row : loader.nextBatch()) {
                assertEquals(10, row.length);
                for (int t = 1; t < 10; t++) assertEquals(row[0] + t, row[t]); // a contiguous window
                assertTrue(row[0] < 5000, "dataset c has weight 0");
                if (row[0] < 1000) { fromA++; maxOffsetA = Math.max(maxOffsetA, row[0]); } else fromB++;
                minOffset = Math.min(minOffset, row[0] % 1000);
            }
        }
        assertEquals(0.75, fromA / 8000.0, 0.02);  // 3 : 1 mix; sd of the share is ~0.005
        assertEquals(0, minOffset);
        assertEquals(90, maxOffsetA);              // last window of a starts at 100 − 10

        DataLoader x = new DataLoader(data, new double[] {1, 1, 1}, 2, 5, 3), y = new DataLoader(data, new double[] {1, 1, 1}, 2, 5, 3);
        for (int i = 0; i < 5; i++) x.nextBatch();
        DataLoader.State mid = x.state();
        assertEquals(5, mid.batchesDrawn());
        int[][] next = x.nextBatch();
        y.restore(mid);
        assertArrayEquals(next, y.nextBatch());

        var e = assertThrows(IllegalArgumentException.class, () -> new DataLoader(data, new double[] {1, 1, 1}, 2, 40, 1));
        assertTrue(e.getMessage().contains("dataset 'c' has 40 tokens, fewer than one window of seq_len + 1 = 41"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new DataLoader(data, new double[] {1, 1, 1}, 0, 4, 1));
    }

    @Test
    void splitMixMatchesItsReferenceSequence() {
        // SplitMix64 from seed 0: first outputs as published with the algorithm (Vigna's splitmix64.c)
        SplitMix64 r = new SplitMix64(0);
        assertEquals(0xE220A8397B1DCDAFL, r.nextLong());
        assertEquals(0x6E789E6AA1B965F4L, r.nextLong());
        assertEquals(0x06C45D188009454FL, r.nextLong());
    }
}
