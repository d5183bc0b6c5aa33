package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.cli.Main;
import dive.data.Corpus;
import dive.model.DenseFfn;
import dive.model.LlamaModel;
import dive.model.MoeFfn;
import dive.tokenizer.Tokenizer;
import dive.train.SplitMix64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.*;

/** The baselines of {@code ./dive convert}: channel choices against independent recomputations, and a multi-method run. */
class BaselineConversionTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path tmp;

    @Test
    void kmeansFindsObviousClusters() {
        // rows 0, 2, 5, 7 near (10, 0); rows 1, 3, 4, 6 near (0, 10); row 4 = (2, 8) is the B row nearest to A
        float[] gate = {10, 0, 0, 10, 11, 1, 1, 11, 2, 8, 9, -1, -1, 9, 10, 1};
        Set<Set<Integer>> expected = Set.of(Set.of(0, 2, 5, 7), Set.of(1, 3, 4, 6));
        for (long seed = 0; seed < 5; seed++) {
            int[][] kept = BaselineConversion.kmeansExperts(gate, 8, 2, 2, 4, seed);
            Set<Set<Integer>> found = new HashSet<>();
            for (int[] k : kept) found.add(set(k));
            assertEquals(expected, found, "seed " + seed);
        }
        // width 5 > I/E: the cluster A expert takes row 4 (squared distance to A's centroid (10, 0.25): 64 + 60.06, the least of B's rows)
        int[][] kept = BaselineConversion.kmeansExperts(gate, 8, 2, 2, 5, 0);
        Set<Integer> a = set(kept[0]).contains(0) ? set(kept[0]) : set(kept[1]);
        assertEquals(Set.of(0, 2, 5, 7, 4), a);
    }

    @Test
    void randomSubsetsFollowTheDocumentedSeeds() {
        int intermediate = 48, width = 24, experts = 3, layers = 2;
        long seed = 7;
        int[][][] kept = BaselineConversion.randomSubsets(intermediate, width, experts, layers, seed);
        for (int e = 0; e < experts; e++)
            for (int l = 0; l < layers; l++) {
                // independent: draw without replacement by rejection-free partial shuffle written out here on a list
                List<Integer> pool = new ArrayList<>();
                for (int i = 0; i < intermediate; i++) pool.add(i);
                SplitMix64 random = new SplitMix64(seed + (long) e * layers + l);
                TreeSet<Integer> chosen = new TreeSet<>();
                for (int i = 0; i < width; i++) {
                    int j = i + (int) random.nextLong(intermediate - i);
                    Integer t = pool.get(i); pool.set(i, pool.get(j)); pool.set(j, t);
                    chosen.add(pool.get(i));
                }
                assertArrayEquals(chosen.stream().mapToInt(Integer::intValue).toArray(), kept[e][l], "expert " + e + " layer " + l);
            }
        assertFalse(Arrays.equals(kept[0][0], kept[1][0]), "experts draw independently");
    }

    @Test
    void multiMethodRunBuildsEachBaselineWithEqualBudgets() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, ConvertCommandTest.RECIPE.replace("bias_compensation: true", "bias_compensation: false")
                + "methods: [dive, flap, llm_pruner, llama_moe_random, llama_moe_kmeans, dive_random_groups]\n");
        Path out = tmp.resolve("out");
        assertEquals(0, Main.run("convert", MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "1", "--ratio", "0.5",
                "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        JsonNode report = JSON.readTree(out.resolve("report.json").toFile());
        JsonNode methods = report.get("methods");
        List<String> all = List.of("dive", "flap", "llm_pruner", "llama_moe_random", "llama_moe_kmeans", "dive_random_groups");
        assertEquals(all, iterable(methods.fieldNames()));
        List<String> names = List.of("bible-nt", "man2", "python-core");
        long router = 0;
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"))) {
            int layers = dense.config().numHiddenLayers(), d = dense.config().hiddenSize();
            router = (long) layers * 2 * d;  // (E, d) per layer
            long tokens = methods.get("dive").get("training_tokens").asLong();
            long diveActive = methods.get("dive").get("params_active").asLong();
            for (String m : all) {
                JsonNode e = methods.get(m);
                assertEquals(6 * 4 * 32, e.get("training_tokens").asLong(), m + " training tokens");
                assertEquals(tokens, e.get("training_tokens").asLong());
                for (String n : names) assertTrue(e.get("ppl_after_retraining").get(n).asDouble() > 1, m + " " + n);
                assertTrue(Files.isRegularFile(Path.of(e.get("export").asText()).resolve("config.json")), m);
                boolean denseMethod = m.equals("flap") || m.equals("llm_pruner");
                assertEquals(diveActive, e.get("params_active").asLong() + (denseMethod ? router : 0), m + " active params (dense: no router)");
            }

            // the windows as convert draws them
            Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
            List<int[]> pooled = new ArrayList<>();
            for (int i = 0; i < 3; i++)
                pooled.addAll(DatasetWindows.of(Corpus.bundled(), names.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).calibration());
            // flap: the pruned gate rows are the dense rows at topChannels of pooled WIFV, width k·round(I/2) = 24
            CalibrationStatistics stats = CalibrationStatistics.collect(dense, pooled);
            ChannelScore wifv = ChannelScore.parse("wifv", "test");
            try (LlamaModel flap = LlamaModel.load(out.resolve("flap/build"), Backends.create("scalar"))) {
                for (int l = 0; l < layers; l++) {
                    DenseFfn ffn = (DenseFfn) dense.feedForward(l);
                    int[] kept = Pruning.topChannels(wifv.score(l, stats.layers()[l], ffn.down()), 24);
                    assertRows(ffn.gate().toFloatArray(), kept, ((DenseFfn) flap.feedForward(l)).gate().toFloatArray(), d, "flap layer " + l);
                }
            }
            // llama_moe_random: expert e of layer l = the dense gate rows of the documented random subset (checked above)
            int[][][] random = BaselineConversion.randomSubsets(48, 24, 2, layers, 4);
            try (LlamaModel moe = LlamaModel.load(out.resolve("llama_moe_random/build"), Backends.create("scalar"))) {
                for (int l = 0; l < layers; l++)
                    for (int e = 0; e < 2; e++)
                        assertRows(((DenseFfn) dense.feedForward(l)).gate().toFloatArray(), random[e][l],
                                ((MoeFfn) moe.feedForward(l)).w1()[e].toFloatArray(), d, "random expert " + e + " layer " + l);
            }
        }
        assertTrue(Files.isRegularFile(out.resolve("dive_random_groups/report.json")));
        assertEquals("random", JSON.readTree(out.resolve("dive_random_groups/groups.json").toFile()).get("grouping").asText());
        assertEquals("llama", JSON.readTree(out.resolve("flap/model/config.json").toFile()).get("model_type").asText());
    }

    @Test
    void denseBaselinesRefuseBiasCompensation() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, ConvertCommandTest.RECIPE + "methods: [dive, flap]\n");
        Path out = tmp.resolve("bad");
        assertEquals(1, Main.run("convert", MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "1", "--ratio", "0.5",
                "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        assertFalse(Files.exists(out));
        Files.writeString(recipe, "methods: [flap]\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(recipe));
        assertTrue(e.getMessage().contains("methods"), e.getMessage());
        Files.writeString(recipe, "methods: [dive, moe]\n");
        e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(recipe));
        assertTrue(e.getMessage().contains("'moe'"), e.getMessage());
    }

    static void assertRows(float[] dense, int[] kept, float[] got, int d, String what) {
        assertEquals(kept.length * d, got.length, what);
        for (int r = 0; r < kept.length; r++)
            for (int k = 0; k < d; k++) assertEquals(dense[kept[r] * d + k], got[r * d + k], 0f, what + " row " + r);
    }

    static Set<Integer> set(int[] a) { Set<Integer> s = new HashSet<>(); for (int x : a) s.add(x); return s; }

    static List<String> iterable(java.util.Iterator<String> it) { List<String> l = new ArrayList<>(); it.forEachRemaining(l::add); return l; }
}
