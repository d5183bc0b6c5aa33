package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.backend.TestBackends;
import dive.data.Corpus;
import dive.data.Split;
import dive.model.LlamaModel;
import dive.model.Perplexity;
import dive.tokenizer.Tokenizer;
import dive.train.TokenShard;
import dive.util.Progress;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Windows, the affinity run and its outputs on the tiny_bpe fixture model with three bundled datasets. */
class AffinityMiningTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final List<String> DATASETS = List.of("bible-nt", "man2", "python-core");
    static LlamaModel model;
    static Tokenizer tokenizer;
    static Corpus corpus = Corpus.bundled();
    @TempDir Path tmp;

    @BeforeAll
    static void load() throws Exception {
        model = LlamaModel.load(MODEL, Backends.create("vector"));
        tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
    }

    @AfterAll
    static void close() throws Exception { model.close(); }

    static AffinityMining.Options options(int experts) {
        return new AffinityMining.Options(DATASETS, 0.5, "wifv", 3, 2, 32, 7, Clustering.Linkage.AVERAGE, experts, false);
    }

    @Test
    void windowsComeFromDisjointSourcesAndAreSeeded() throws Exception {
        DatasetWindows w = DatasetWindows.of(corpus, "man2", tokenizer, 5, 3, 32, 11);
        // the token streams, built here from the tokenizer directly: each document then the separator
        int separator = TokenShard.separatorId(tokenizer);
        List<Integer> calib = new ArrayList<>(), eval = new ArrayList<>();
        for (String doc : corpus.texts("man2", Split.CALIB)) { for (int id : tokenizer.encode(doc, false)) calib.add(id); calib.add(separator); }
        for (String doc : corpus.texts("man2", Split.EVAL)) { for (int id : tokenizer.encode(doc, false)) eval.add(id); eval.add(separator); }
        assertEquals(calib.size(), w.calibTokens());
        assertEquals(eval.size(), w.evalTokens());
        for (int i = 0; i < 5; i++) {
            int off = w.calibrationOffsets()[i];
            assertTrue(off >= 0 && off + 32 <= calib.size());
            for (int t = 0; t < 32; t++) assertEquals((int) calib.get(off + t), w.calibration().get(i)[t]);
        }
        int half = eval.size() / 2;
        for (int i = 0; i < 3; i++)
            for (int t = 0; t < 32; t++) {
                assertEquals((int) eval.get(i * 32 + t), w.affinityEval().get(i)[t], "affinity window " + i);
                assertEquals((int) eval.get(half + i * 32 + t), w.finalEval().get(i)[t], "final window " + i);
            }
        assertTrue(3 * 32 <= half, "affinity windows stay in the first half");
        DatasetWindows again = DatasetWindows.of(corpus, "man2", tokenizer, 5, 3, 32, 11);
        assertArrayEquals(w.calibrationOffsets(), again.calibrationOffsets());
        DatasetWindows other = DatasetWindows.of(corpus, "man2", tokenizer, 5, 3, 32, 12);
        assertFalse(Arrays.equals(w.calibrationOffsets(), other.calibrationOffsets()));
        var tooLong = assertThrows(IllegalArgumentException.class, () -> DatasetWindows.of("x", new int[10], new int[100], 1, 1, 32, 0));
        assertTrue(tooLong.getMessage().contains("dataset 'x' split calib"), tooLong.getMessage());
    }

    @Test
    void affinityRunMatchesPerModelPerplexitiesAndWritesItsOutputs() throws Exception {
        AffinityMining.AffinityResult r;
        try (Progress bar = new Progress("t", 100, "windows", false)) {
            r = AffinityMining.run(model, tokenizer, corpus, options(2), tmp, bar);
        }
        assertEquals(DATASETS, r.datasets());
        // P[i][j] again, one model at a time with dive.model.Perplexity on dataset j's windows alone
        for (int i = 0; i < 3; i++) {
            CalibrationStatistics s = CalibrationStatistics.collect(model, r.windows().get(i).calibration());
            LlamaModel pruned = Pruning.prunedModel(model, s, ChannelScore.Statistic.WIFV, 0.5, false, "p" + i);
            for (int j = 0; j < 3; j++) {
                int[] ids = r.windows().get(j).affinityEval().stream().flatMapToInt(Arrays::stream).toArray();
                double want = Perplexity.compute(pruned, ids, 32).perplexity();
                assertEquals(want, r.perplexity()[i][j], 1e-6 * want, "P[" + i + "][" + j + "]");
            }
        }
        // A column-normalised (a 1 in every column), groups = the dendrogram cut
        for (int j = 0; j < 3; j++) {
            double max = 0;
            for (int i = 0; i < 3; i++) max = Math.max(max, r.normalizedAffinity()[i][j]);
            assertEquals(1.0, max, 0);
        }
        assertArrayEquals(r.dendrogram().cut(2), r.groups());
        JsonNode json = new ObjectMapper().readTree(tmp.resolve("affinity.json").toFile());
        assertEquals(r.perplexity()[1][2], json.get("perplexity").get(1).get(2).asDouble());
        assertEquals(2, json.get("groups").size());
        assertEquals(2, json.get("dendrogram").get("merges").size());
        assertEquals(AffinityMining.datasetSeed(7, 1), json.get("windows").get(1).get("calibration_seed").asLong());
        assertNotNull(ImageIO.read(tmp.resolve("affinity.png").toFile()));
        try (var files = Files.list(tmp)) { assertEquals(2, files.count(), "no temp files left"); }
    }

    @Test
    void moreExpertsThanDatasetsIsRefusedBeforeAnyWork() {
        var e = assertThrows(IllegalArgumentException.class, () -> AffinityMining.run(model, tokenizer, corpus, options(4), tmp, null));
        assertTrue(e.getMessage().contains("4 expert groups from 3 datasets"), e.getMessage());
        var bad = assertThrows(IllegalArgumentException.class, () -> new AffinityMining.Options(DATASETS, 0.5, "nope", 3, 2, 32, 7, Clustering.Linkage.AVERAGE, 2, false));
        assertTrue(bad.getMessage().contains("score"), bad.getMessage());
        var unknown = assertThrows(IllegalArgumentException.class, () -> AffinityMining.datasetNames(corpus,
                new AffinityMining.Options(List.of("nope"), 0.5, "wifv", 3, 2, 32, 7, Clustering.Linkage.AVERAGE, 1, false)));
        assertTrue(unknown.getMessage().contains("'nope'"), unknown.getMessage());
    }

    @Test
    void commandLine() throws Exception {
        Path out = tmp.resolve("run");
        int code = TestBackends.runCli("affinity", MODEL.toString(), "--data", "bundled", "--datasets", String.join(",", DATASETS), "--experts", "2",
                "--windows", "2", "--eval-windows", "1", "--seqlen", "32", "--linkage", "complete", "--score", "wanda", "--out", out.toString(), "-q");
        assertEquals(0, code);
        JsonNode json = new ObjectMapper().readTree(out.resolve("affinity.json").toFile());
        assertEquals("complete", json.get("options").get("linkage").asText());
        assertEquals("wanda", json.get("options").get("score").asText());
        assertEquals(3, json.get("perplexity").size());
        assertEquals(1, TestBackends.runCli("affinity", MODEL.toString(), "--datasets", String.join(",", DATASETS), "--experts", "5", "--out", out.toString(), "-q"));
        assertEquals(1, TestBackends.runCli("affinity", MODEL.toString(), "--experts", "2", "--ratio", "1.5", "--out", out.toString(), "-q"));
    }
}
