package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.backend.TestBackends;
import dive.data.Corpus;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** dive_shared through the conversion driver on the tiny fixture: its channels, its Qwen2-MoE build and export, its counts. */
class DiveSharedMethodTest {
    static final Path MODEL = MethodPipelineTest.MODEL;
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path tmp;

    @Test
    void sharedAndRoutedChannelsBuildAQwen2MoeThatIsRetrainedAndExported() throws Exception {
        Path out = tmp.resolve("out");
        // tiny_bpe: I = 48; E = 2, k = 1, r = 0.5 → A = 24 active channels, S = 12 shared, R = 12 per routed expert
        DiveConversion.Request q = MethodPipelineTest.tinyRequest(
                ConvertCommandTest.tinyRecipe(256, 256) + "train_eval_windows: 0\nmethods: [dive, dive_shared]\n", 2, 1, 0.5, out, tmp);
        DiveConversion.run(q, TestBackends.backend());

        JsonNode entry = JSON.readTree(out.resolve("report.json").toFile()).get("methods").get("dive_shared");
        assertEquals("stock Qwen2-MoE (shared expert + sigmoid gate)", entry.get("export_format").asText());
        assertTrue(entry.get("variant").asText().startsWith("a shared expert of 12 channels"), entry.get("variant").asText());
        // by hand: dense 63808 − 2 layers × FFN 3·64·48 = 45376 outside the FFNs; per layer router 2·64, shared expert
        // 3·64·12, its gate 64, two routed experts 2·3·64·12 → 7104; one routed expert (2304) idle per token and layer
        assertEquals(45376 + 2 * 7104, entry.get("params_total").asLong());
        assertEquals(45376 + 2 * 7104 - 2 * 2304, entry.get("params_active").asLong());
        assertEquals(256 + 256, entry.get("training_tokens").asLong());
        assertQwen2MoeRun(out, "dive_shared", entry, 12, 12);
        // DIVE's groups, mined once: the same groups.json, no second affinity mining
        assertEquals(Files.readString(out.resolve("groups.json")), Files.readString(out.resolve("dive_shared/groups.json")));
        assertFalse(Files.exists(out.resolve("dive_shared/affinity")), "affinity mining ran again for dive_shared");

        // the channels: shared = the 12 of highest WIFV (Var(h_j)·‖W_down[:, j]‖², by hand here) over every calibration window,
        // routed expert g = the 12 highest of group g's own windows among the rest; and the build holds exactly those slices
        JsonNode channels = JSON.readTree(out.resolve("dive_shared/" + DiveSharedMethod.CHANNELS_FILE).toFile());
        int[] groupOf = JSON.convertValue(JSON.readTree(out.resolve("groups.json").toFile()).get("group_of_dataset"), int[].class);
        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        List<String> names = MethodPipelineTest.TINY_DATASETS;
        List<int[]> all = new ArrayList<>();
        List<List<int[]>> ofGroup = List.of(new ArrayList<>(), new ArrayList<>());
        for (int i = 0; i < 3; i++) {
            List<int[]> calibration = DatasetWindows.of(Corpus.bundled(), names.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).calibration();
            all.addAll(calibration);
            ofGroup.get(groupOf[i]).addAll(calibration);
        }
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"));
             LlamaModel built = LlamaModel.load(out.resolve("dive_shared/build"), Backends.create("scalar"))) {
            CalibrationStatistics pooled = CalibrationStatistics.collect(dense, all);
            for (int l = 0; l < 2; l++) {
                Tensor down = dense.namedWeights().get("model.layers." + l + ".mlp.down_proj.weight");
                int[] shared = JSON.convertValue(channels.get("layers").get(l).get("shared"), int[].class);
                assertArrayEquals(top(wifv(pooled.layers()[l], down), 12, new int[0]), shared, "layer " + l + " shared");
                for (int g = 0; g < 2; g++) {
                    int[] routed = JSON.convertValue(channels.get("layers").get(l).get("routed").get(g), int[].class);
                    CalibrationStatistics mine = CalibrationStatistics.collect(dense, ofGroup.get(g));
                    assertArrayEquals(top(wifv(mine.layers()[l], down), 12, shared), routed, "layer " + l + " expert " + g);
                    assertSlices(dense, built, l, "experts." + g, routed, 1f);
                }
                assertSlices(dense, built, l, "shared_expert", shared, 2f);
                Tensor gate = built.namedWeights().get("model.layers." + l + ".mlp.shared_expert_gate.weight");
                for (int j = 0; j < 64; j++) assertEquals(0f, gate.getFloat(j), "the shared expert starts ungated");
            }
        }
    }

    @Test
    void atTopTwoTheRoutedDownProjectionsAreTimesK() throws Exception {
        Path out = tmp.resolve("out");
        // I = 48; E = 2, k = 2, r = 0.75 → A = 2 · round(48 · 0.25) = 24 active channels, S = 12 shared, R = 6 per routed expert
        DiveConversion.Request q = MethodPipelineTest.tinyRequest(
                ConvertCommandTest.tinyRecipe(128, 128) + "train_eval_windows: 0\nmethods: [dive, dive_shared]\n", 2, 2, 0.75, out, tmp);
        DiveConversion.run(q, TestBackends.backend());
        JsonNode channels = JSON.readTree(out.resolve("dive_shared/" + DiveSharedMethod.CHANNELS_FILE).toFile());
        assertEquals(2, channels.get("routed_down_factor").asInt());
        assertEquals(6, channels.get("routed_width").asInt());
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"));
             LlamaModel built = LlamaModel.load(out.resolve("dive_shared/build"), Backends.create("scalar"))) {
            for (int l = 0; l < 2; l++) {
                // the two renormalised routing weights sum to 1: × 2 makes equal weights give the sum of both partial FFNs
                for (int g = 0; g < 2; g++)
                    assertSlices(dense, built, l, "experts." + g,
                            JSON.convertValue(channels.get("layers").get(l).get("routed").get(g), int[].class), 2f);
                assertSlices(dense, built, l, "shared_expert", JSON.convertValue(channels.get("layers").get(l).get("shared"), int[].class), 2f);
            }
        }
    }

    @Test
    void biasCompensationIsRefusedBeforeAnyWork() throws Exception {
        Path out = tmp.resolve("out");
        DiveConversion.Request q = MethodPipelineTest.tinyRequest(
                ConvertCommandTest.tinyRecipe(256, 256) + "bias_compensation: true\nmethods: [dive, dive_shared]\n", 2, 1, 0.5, out, tmp);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DiveConversion.run(q, TestBackends.backend()));
        assertTrue(e.getMessage().startsWith("recipe bias_compensation: true: dive_shared"), e.getMessage());
        assertFalse(Files.exists(out), "nothing written");
    }

    /**
     * A Qwen2-MoE method's run: stage 0 trained the routers and the shared experts' gates, nothing else; the export is a
     * qwen2_moe of these widths whose perplexity, recomputed here on the final-evaluation windows, is the one reported
     * after retraining. Returns the export's config.json.
     */
    static JsonNode assertQwen2MoeRun(Path out, String method, JsonNode entry, int sharedWidth, int routedWidth) throws Exception {
        assertTrue(Files.isRegularFile(out.resolve(method + "/stage0/done")) && Files.isRegularFile(out.resolve(method + "/stage1/done")));
        JsonNode stage0 = JSON.readTree(out.resolve(method + "/stage0/recipe.json").toFile());
        assertEquals(List.of("*.mlp.gate.weight", "*.mlp.shared_expert_gate.weight"), JSON.convertValue(stage0.get("train"), List.class));
        Path export = Path.of(entry.get("export").asText());
        JsonNode config = JSON.readTree(export.resolve("config.json").toFile());
        assertEquals("qwen2_moe", config.get("model_type").asText());
        assertEquals(sharedWidth, config.get("shared_expert_intermediate_size").asInt());
        assertEquals(routedWidth, config.get("moe_intermediate_size").asInt());
        MethodPipelineTest.assertReportedPerplexityIsTheExports(entry);
        return config;
    }

    /** the built layer's expert {@code name}: gate/up rows and down columns (× factor) of the dense FFN at {@code channels} */
    static void assertSlices(LlamaModel dense, LlamaModel built, int l, String name, int[] channels, float factor) {
        Map<String, Tensor> d = dense.namedWeights(), b = built.namedWeights();
        String p = "model.layers." + l + ".mlp.";
        Tensor gate = d.get(p + "gate_proj.weight"), up = d.get(p + "up_proj.weight"), down = d.get(p + "down_proj.weight");
        Tensor bg = b.get(p + name + ".gate_proj.weight"), bu = b.get(p + name + ".up_proj.weight"), bd = b.get(p + name + ".down_proj.weight");
        int hidden = gate.cols(), width = down.cols();
        for (int i = 0; i < channels.length; i++)
            for (int x = 0; x < hidden; x++) {
                assertEquals(gate.getFloat((long) channels[i] * hidden + x), bg.getFloat((long) i * hidden + x), name + " gate");
                assertEquals(up.getFloat((long) channels[i] * hidden + x), bu.getFloat((long) i * hidden + x), name + " up");
                assertEquals(factor * down.getFloat((long) x * width + channels[i]), bd.getFloat((long) x * channels.length + i), name + " down");
            }
    }

    /** WIFV by its definition: unbiased Var_n(h_j) · Σ_i W_down[i, j]² */
    private static double[] wifv(ChannelStatistics stats, Tensor down) {
        double[] variance = stats.variance(), score = new double[down.cols()];
        for (int j = 0; j < score.length; j++) {
            double norm = 0;
            for (int i = 0; i < down.rows(); i++) norm += Math.pow(down.getFloat((long) i * down.cols() + j), 2);
            score[j] = variance[j] * norm;
        }
        return score;
    }

    /** the {@code count} highest-scoring channels not in {@code excluded}, ascending (ties: lower index) */
    private static int[] top(double[] score, int count, int[] excluded) {
        List<Integer> order = new ArrayList<>();
        for (int j = 0; j < score.length; j++) order.add(j);
        order.removeIf(j -> Arrays.stream(excluded).anyMatch(x -> x == j));
        order.sort((a, b) -> score[a] != score[b] ? Double.compare(score[b], score[a]) : Integer.compare(a, b));
        return order.subList(0, count).stream().mapToInt(Integer::intValue).sorted().toArray();
    }
}
