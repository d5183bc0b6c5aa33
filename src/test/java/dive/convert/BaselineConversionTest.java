package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.backend.TestBackends;
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
            int[][] kept = LlamaMoeMethod.kmeansExperts(gate, 8, 2, 2, 4, seed);
            Set<Set<Integer>> found = new HashSet<>();
            for (int[] k : kept) found.add(set(k));
            assertEquals(expected, found, "seed " + seed);
        }
        // width 5 > I/E: the cluster A expert takes row 4 (squared distance to A's centroid (10, 0.25): 64 + 60.06, the least of B's rows)
        int[][] kept = LlamaMoeMethod.kmeansExperts(gate, 8, 2, 2, 5, 0);
        Set<Integer> a = set(kept[0]).contains(0) ? set(kept[0]) : set(kept[1]);
        assertEquals(Set.of(0, 2, 5, 7, 4), a);
    }

    @Test
    void randomSubsetsFollowTheDocumentedSeeds() {
        int intermediate = 48, width = 24, experts = 3, layers = 2;
        long seed = 7;
        int[][][] kept = LlamaMoeMethod.randomSubsets(intermediate, width, experts, layers, seed);
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
        assertEquals(0, TestBackends.runCli("convert", MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "1", "--ratio", "0.5",
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
            int[][][] random = LlamaMoeMethod.randomSubsets(48, 24, 2, layers, 4);
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

    /**
     * FLAP with bias compensation (DIVE-METHOD.md section 2): b = W_down[:, removed]·mean(h_removed) makes the pruned FFN
     * match the dense one in expectation. Layer 0 sees the same input in both models, so over the calibration tokens the
     * compensated layer-0 output's mean must equal the dense FFN's mean output (linear in h), computed here in double
     * from h observed in the dense model. The result is held as a Llama with mlp_bias (down_proj.bias = b, gate/up biases
     * zero), written by TrainableLlama and read back by LlamaModel: the logits of the dense model pruned to the same
     * channels with b added after down_proj (Pruning.prunedModel, independent of the mlp_bias path).
     */
    @Test
    void compensatedFlapMatchesTheDenseFfnInExpectation() throws Exception {
        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        List<int[]> pooled = new ArrayList<>();
        List<String> names = List.of("bible-nt", "man2", "python-core");
        for (int i = 0; i < 3; i++)
            pooled.addAll(DatasetWindows.of(Corpus.bundled(), names.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).calibration());
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"))) {
            int d = dense.config().hiddenSize(), width = dense.config().intermediateSize();
            CalibrationStatistics stats = CalibrationStatistics.collect(dense, pooled);
            int[][] kept = new FlapMethod().keptChannels(dense, pooled, stats, 24);
            dive.model.LlamaConfig config = DensePruningMethod.prunedConfig(dense.config(), 24, true);
            java.util.Map<String, dive.tensor.Tensor> weights = DensePruningMethod.prunedWeights(dense, kept, stats);
            assertTrue(config.mlpBias());
            assertNull(config.moe());
            for (int l = 0; l < kept.length; l++)
                for (String b : new String[] {"gate_proj", "up_proj"}) {
                    float[] zero = weights.get("model.layers." + l + ".mlp." + b + ".bias").toFloatArray();
                    assertArrayEquals(new float[24], zero, "layer " + l + " " + b + " bias");
                }

            // layer 0 sees the same input in both models: mean over all calibration tokens of h (observed), then
            // dense mean output = W_down · mean(h) and compensated mean output = w2 · mean(h[kept]) + b
            double[] meanH = new double[width];
            long[] tokens = {0};
            dive.model.RoutingObserver observer = new dive.model.RoutingObserver() {
                @Override public void onRouting(int layer, int n, float[] logits, int[] ids, float[] weights) {}
                @Override public void onDenseIntermediate(int layer, int n, int w, float[] h) {
                    if (layer != 0) return;
                    for (int t = 0; t < n; t++) for (int j = 0; j < w; j++) meanH[j] += h[t * w + j];
                    tokens[0] += n;
                }
            };
            for (int[] w : pooled) dense.forward(w, dense.newCache(w.length), observer);
            for (int j = 0; j < width; j++) meanH[j] /= tokens[0];
            float[] down = ((DenseFfn) dense.feedForward(0)).down().toFloatArray();  // (d, I)
            float[] w2 = weights.get("model.layers.0.mlp.down_proj.weight").toFloatArray();  // (d, 24)
            float[] bias = weights.get("model.layers.0.mlp.down_proj.bias").toFloatArray();
            double biasNorm = 0;
            for (int i = 0; i < d; i++) {
                double denseMean = 0, compensatedMean = bias[i], uncompensatedMean = 0;
                for (int j = 0; j < width; j++) denseMean += down[i * width + j] * meanH[j];
                for (int c = 0; c < 24; c++) compensatedMean += w2[i * 24 + c] * meanH[kept[0][c]];
                for (int c = 0; c < 24; c++) uncompensatedMean += w2[i * 24 + c] * meanH[kept[0][c]];
                assertEquals(denseMean, compensatedMean, 1e-4 * (1 + Math.abs(denseMean)), "mean output " + i);
                biasNorm += Math.abs(denseMean - uncompensatedMean);
            }
            assertTrue(biasNorm > 1e-3, "the removed channels' mean contribution is not negligible (" + biasNorm + "): the case tests something");

            // the mlp_bias Llama is the dense model pruned to kept with that bias: same logits
            Path folder = tmp.resolve("flap-bias");
            dive.train.TrainableLlama.copyOf(config, weights::get, "flap", Backends.create("scalar")).saveCheckpoint(folder, null, dive.tensor.DType.F32);
            assertTrue(JSON.readTree(folder.resolve("config.json").toFile()).get("mlp_bias").asBoolean());
            float[][] biases = new float[kept.length][];
            for (int l = 0; l < kept.length; l++)
                biases[l] = Pruning.biasCompensation(((DenseFfn) dense.feedForward(l)).down(), kept[l], stats.layers()[l].mean());
            try (LlamaModel biased = LlamaModel.load(folder, Backends.create("scalar"));
                 LlamaModel reference = Pruning.prunedModel(dense, kept, biases, "reference")) {
                int[] ids = pooled.getFirst();
                float[] a = biased.forward(ids, biased.newCache(ids.length)), b = reference.forward(ids, reference.newCache(ids.length));
                for (int i = 0; i < a.length; i++) assertEquals(b[i], a[i], 1e-4 * (1 + Math.abs(b[i])), "logit " + i);
            }
        }
    }

    /**
     * A stopped baseline conversion resumes and ends with the same bytes: flap with bias compensation (a Llama with
     * mlp_bias) beside DIVE; then (1) flap stopped after its stage-1 checkpoint, before its done marker, export and
     * evaluation; (2) flap stopped before stage 1 wrote anything. Each rerun redoes only what is missing, and report.json
     * and the exported weights equal the first run's, byte for byte.
     */
    @Test
    void stoppedBaselineConversionResumesToTheSameBytes() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, ConvertCommandTest.RECIPE + "methods: [dive, flap]\n");
        Path out = tmp.resolve("out");
        String[] args = {"convert", MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "1", "--ratio", "0.5",
                "--out", out.toString(), "--recipe", recipe.toString(), "-q"};
        assertEquals(0, TestBackends.runCli(args));
        JsonNode flap = JSON.readTree(out.resolve("report.json").toFile()).get("methods").get("flap");
        assertTrue(flap.get("export_format").asText().startsWith("llama with mlp_bias"), flap.get("export_format").asText());
        JsonNode config = JSON.readTree(out.resolve("flap/model/config.json").toFile());
        assertEquals("llama", config.get("model_type").asText());
        assertEquals("LlamaForCausalLM", config.get("architectures").get(0).asText());
        assertTrue(config.get("mlp_bias").asBoolean());
        assertFalse(config.has("dive_expert_bias"));
        byte[] report = Files.readAllBytes(out.resolve("report.json")), weights = Files.readAllBytes(out.resolve("flap/model/model.safetensors"));
        java.nio.file.attribute.FileTime diveStage1 = Files.getLastModifiedTime(out.resolve("stage1/done"));

        for (boolean wholeStage : new boolean[] {false, true}) {
            Files.delete(out.resolve("report.json"));
            Files.delete(out.resolve("flap/eval/after.json"));
            ConvertCommandTest.deleteTree(out.resolve("flap/model"));
            if (wholeStage) ConvertCommandTest.deleteTree(out.resolve("flap/stage1"));
            else {
                Files.delete(out.resolve("flap/stage1/done"));
                ConvertCommandTest.deleteTree(out.resolve("flap/stage1/final"));
                assertTrue(Files.isDirectory(out.resolve("flap/stage1/checkpoints")), "the checkpoint the rerun resumes from");
            }
            assertEquals(0, TestBackends.runCli(args));
            assertArrayEquals(report, Files.readAllBytes(out.resolve("report.json")), "report.json after resuming (whole stage: " + wholeStage + ")");
            assertArrayEquals(weights, Files.readAllBytes(out.resolve("flap/model/model.safetensors")), "flap weights (whole stage: " + wholeStage + ")");
            assertEquals(diveStage1, Files.getLastModifiedTime(out.resolve("stage1/done")), "DIVE's finished stage is not redone");
        }
    }

    @Test
    void recipeMethodsAreChecked() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
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

    @Test
    void outputScaleIsFittedOnThePooledWindowsForEveryBaseline() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, ConvertCommandTest.tinyRecipe(0, 0) + "output_scale: true\nmethods: [dive, flap, llama_moe_random]\n");
        Path out = tmp.resolve("out");
        assertEquals(0, TestBackends.runCli("convert", MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "2", "--ratio", "0.75",
                "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        JsonNode methods = JSON.readTree(out.resolve("report.json").toFile()).get("methods");
        for (String m : List.of("flap", "llama_moe_random")) assertTrue(methods.get(m).get("variant").asText().contains("output scale"), m);
        List<String> names = List.of("bible-nt", "man2", "python-core");
        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        List<int[]> pooled = new ArrayList<>();
        for (int i = 0; i < 3; i++)
            pooled.addAll(DatasetWindows.of(Corpus.bundled(), names.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).calibration());
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"))) {
            int layers = dense.config().numHiddenLayers(), d = dense.config().hiddenSize(), f = 48;
            List<List<double[]>> h = ExpertReconstructionTest.intermediates(dense, pooled);
            for (String m : List.of("flap", "llama_moe_random")) {
                JsonNode kept = JSON.readTree(out.resolve(m + "/kept_channels.json").toFile()).get("kept_channels");
                JsonNode scales = JSON.readTree(out.resolve(m + "/" + OutputScale.FILE).toFile()).get("scale_of_expert_and_layer");
                assertEquals(kept.size(), scales.size(), m);
                try (LlamaModel built = LlamaModel.load(out.resolve(m + "/build"), Backends.create("scalar"))) {
                    for (int e = 0; e < kept.size(); e++)
                        for (int l = 0; l < layers; l++) {
                            int[] k = new int[kept.get(e).get(l).size()];
                            for (int c = 0; c < k.length; c++) k[c] = kept.get(e).get(l).get(c).asInt();
                            float[] down = ((DenseFfn) dense.feedForward(l)).down().toFloatArray();
                            double c = scales.get(e).get(l).asDouble();
                            assertEquals(ExpertReconstructionTest.leastSquaresScale(h.get(l), down, d, k, null), c, 1e-4 * c, m + " expert " + e + " layer " + l);
                            float[] got = m.equals("flap") ? ((DenseFfn) built.feedForward(l)).down().toFloatArray()
                                    : built.namedWeights().get("model.layers." + l + ".block_sparse_moe.experts." + e + ".w2.weight").toFloatArray();
                            for (int i = 0; i < d; i++)
                                for (int col = 0; col < k.length; col++)
                                    assertEquals((float) (down[i * f + k[col]] * c), got[i * k.length + col], m + " layer " + l + " [" + i + "," + col + "]");
                        }
                }
            }
        }
    }
}
