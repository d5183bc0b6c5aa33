package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.backend.TestBackends;
import dive.model.LlamaModel;
import dive.model.MoeFfn;
import dive.data.Corpus;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** {@code ./dive convert} end to end on the tiny_bpe fixture with three bundled datasets and tiny budgets. */
class ConvertCommandTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path tmp;

    /**
     * three bundled datasets, tiny windows and budgets (stage tokens in batches of 4 × 32), seed 4; the intermediate
     * models kept (the tests look into builds and stages)
     */
    static String tinyRecipe(int stage0Tokens, int stage1Tokens) {
        return """
                keep_intermediate: true
                datasets: [bible-nt, man2, python-core]
                calibration_windows: 3
                eval_windows: 2
                final_eval_windows: 2
                seqlen: 32
                seed: 4
                stage0: {tokens: %d, batch_size: 4, seq_len: 32, lr: 1.0e-3}
                stage1: {tokens: %d, batch_size: 4, seq_len: 32, lr: 1.0e-3}
                """.formatted(stage0Tokens, stage1Tokens);
    }

    static final String RECIPE = tinyRecipe(256, 512) + """
            bias_compensation: true
            checkpoint_every: 1
            train_eval_windows: 2
            """;

    int convert(Path recipe, Path out, String... extra) {
        List<String> args = new ArrayList<>(List.of("convert", MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "1",
                "--ratio", "0.5", "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        args.addAll(List.of(extra));
        return TestBackends.runCli(args.toArray(String[]::new));
    }

    @Test
    void outputScaleIsFoldedIntoEachExpertsDownProjectionAndRecorded() throws Exception {
        Path plain = tmp.resolve("plain.yaml"), scaled = tmp.resolve("scaled.yaml");
        Files.writeString(plain, tinyRecipe(0, 0));
        Files.writeString(scaled, tinyRecipe(0, 0) + "output_scale: true\n");
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        assertEquals(0, convert(plain, a));
        assertEquals(0, convert(scaled, b));
        assertFalse(Files.exists(a.resolve("output_scales.json")));
        assertFalse(JSON.readTree(a.resolve("convert.json").toFile()).get("recipe").has("output_scale"));
        assertTrue(JSON.readTree(b.resolve("convert.json").toFile()).get("recipe").get("output_scale").asBoolean());
        assertTrue(JSON.readTree(b.resolve("report.json").toFile()).get("methods").get("dive").has("output_scale"));
        JsonNode scales = JSON.readTree(b.resolve("output_scales.json").toFile()).get("scale_of_expert_and_layer");
        try (LlamaModel unscaled = LlamaModel.load(a.resolve("experts"), Backends.create("scalar"));
             LlamaModel withScale = LlamaModel.load(b.resolve("experts"), Backends.create("scalar"))) {
            var u = unscaled.namedWeights();
            var w = withScale.namedWeights();
            assertEquals(u.keySet(), w.keySet());
            for (String name : u.keySet()) {
                float[] x = u.get(name).toFloatArray(), y = w.get(name).toFloatArray();
                java.util.regex.Matcher m = java.util.regex.Pattern.compile("model\\.layers\\.(\\d+)\\.block_sparse_moe\\.experts\\.(\\d+)\\.w2\\.weight").matcher(name);
                double c = m.matches() ? scales.get(Integer.parseInt(m.group(2))).get(Integer.parseInt(m.group(1))).asDouble() : 1;
                for (int i = 0; i < x.length; i++) assertEquals((float) (x[i] * c), y[i], name + "[" + i + "]");  // experts are stored in F32
            }
        }
        for (JsonNode e : scales) for (JsonNode c : e) assertTrue(c.asDouble() > 0, "scales " + scales);
    }

    @Test
    void convertsReportsExportsAndResumes() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, RECIPE);
        Path out = tmp.resolve("out");
        assertEquals(0, convert(recipe, out));

        JsonNode report = JSON.readTree(out.resolve("report.json").toFile());
        for (String key : List.of("model", "data", "datasets", "experts", "top_k", "ratio", "expert_width", "dense", "methods"))
            assertTrue(report.has(key), "report has " + key);
        assertEquals(24, report.get("expert_width").asInt());
        JsonNode method = report.get("methods").get("dive");
        for (String key : List.of("groups", "ppl_before_retraining", "ppl_after_retraining", "params_total", "params_active",
                "training_tokens", "routing_share", "export"))
            assertTrue(method.has(key), "method has " + key);
        // training tokens: stage 0 = 2 steps and stage 1 = 4 steps of 4 × 32 tokens
        assertEquals(6 * 4 * 32, method.get("training_tokens").asLong());
        // the groups come from affinity mining: two non-empty groups of the three datasets
        assertEquals(2, method.get("groups").size());
        assertEquals(3, method.get("groups").get(0).size() + method.get("groups").get(1).size());
        JsonNode affinity = JSON.readTree(out.resolve("affinity/affinity.json").toFile());
        assertEquals(affinity.get("groups"), method.get("groups"));

        // the export loads as a Mixtral; its perplexity recomputed here by WindowPerplexity equals the report's
        Path export = Path.of(method.get("export").asText());
        assertTrue(Files.isRegularFile(export.resolve("tokenizer.json")));
        JsonNode config = JSON.readTree(export.resolve("config.json").toFile());
        assertEquals("mixtral", config.get("model_type").asText());
        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        List<DatasetWindows> windows = new ArrayList<>();
        List<String> names = List.of("bible-nt", "man2", "python-core");
        for (int i = 0; i < 3; i++) windows.add(DatasetWindows.of(Corpus.bundled(), names.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)));
        try (LlamaModel moe = LlamaModel.load(export, Backends.create("scalar"));
             LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"))) {
            assertTrue(moe.isMoe());
            assertEquals(2, ((MoeFfn) moe.feedForward(0)).numExperts());
            assertEquals(24, ((MoeFfn) moe.feedForward(0)).expertIntermediateSize());
            double[] after = WindowPerplexity.perGroup(moe, windows.stream().map(DatasetWindows::finalEval).toList(), n -> {});
            double[] base = WindowPerplexity.perGroup(dense, windows.stream().map(DatasetWindows::finalEval).toList(), n -> {});
            for (int i = 0; i < 3; i++) {
                assertEquals(after[i], method.get("ppl_after_retraining").get(names.get(i)).asDouble(), 1e-4 * after[i]);
                assertEquals(base[i], report.get("dense").get("ppl").get(names.get(i)).asDouble(), 1e-4 * base[i]);
                JsonNode share = method.get("routing_share").get(names.get(i));
                assertEquals(1.0, share.get(0).asDouble() + share.get(1).asDouble(), 1e-9, "routing shares of a dataset sum to 1");
            }
            assertEquals(ExpertReconstruction.parameterCounts(moe)[0], method.get("params_total").asLong());
            assertTrue(method.get("params_active").asLong() < method.get("params_total").asLong());
        }
        for (String png : List.of("ppl.png", "routing.png", "affinity/affinity.png", "stage0/loss.png", "stage1/loss.png"))
            assertNotNull(ImageIO.read(out.resolve(png).toFile()), png);
        assertTrue(Files.isRegularFile(out.resolve("stage0/done")) && Files.isRegularFile(out.resolve("stage1/done")));
        // the training log's evals carry each dataset's expert load (2 experts, shares summing to 1)
        List<String> log = Files.readAllLines(out.resolve("stage1/train-log.jsonl"));
        JsonNode lastEval = JSON.readTree(log.getLast()).get("eval");
        for (String name : names) {
            JsonNode load = lastEval.get(name).get("expert_load");
            assertEquals(2, load.size(), name);
            assertEquals(1.0, load.get(0).asDouble() + load.get(1).asDouble(), 1e-5, name);
        }

        // a rerun redoes nothing and changes no byte
        byte[] modelBytes = Files.readAllBytes(export.resolve("model.safetensors")), reportBytes = Files.readAllBytes(out.resolve("report.json"));
        FileTime stage0 = Files.getLastModifiedTime(out.resolve("stage0/done")), experts = Files.getLastModifiedTime(out.resolve("experts/model.safetensors"));
        FileTime stage1Final = Files.getLastModifiedTime(out.resolve("stage1/final/model.safetensors"));
        Thread.sleep(20);
        assertEquals(0, convert(recipe, out));
        assertEquals(stage0, Files.getLastModifiedTime(out.resolve("stage0/done")));
        assertEquals(experts, Files.getLastModifiedTime(out.resolve("experts/model.safetensors")));
        assertEquals(stage1Final, Files.getLastModifiedTime(out.resolve("stage1/final/model.safetensors")));
        assertArrayEquals(modelBytes, Files.readAllBytes(export.resolve("model.safetensors")));
        assertArrayEquals(reportBytes, Files.readAllBytes(out.resolve("report.json")));

        // stopped after stage 1's last checkpoint, before its done marker and the export: the rerun resumes stage 1
        // from its checkpoint (stage 0 untouched) and ends with the same bytes
        for (String p : List.of("stage1/done", "report.json", "eval/after.json")) Files.delete(out.resolve(p));
        deleteTree(out.resolve("stage1/final"));
        deleteTree(export);
        assertEquals(0, convert(recipe, out));
        assertEquals(stage0, Files.getLastModifiedTime(out.resolve("stage0/done")));
        assertArrayEquals(modelBytes, Files.readAllBytes(export.resolve("model.safetensors")));
        assertArrayEquals(reportBytes, Files.readAllBytes(out.resolve("report.json")));

        // the same folder with other settings is refused, naming what differs
        assertEquals(1, TestBackends.runCli("convert", MODEL.toString(), "--experts", "2", "--top-k", "2", "--ratio", "0.5", "--out", out.toString(),
                "--recipe", recipe.toString(), "-q"));
    }

    @Test
    void badInputIsRefusedBeforeAnyWork() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, RECIPE);
        Path out = tmp.resolve("bad");
        assertEquals(1, TestBackends.runCli("convert", MODEL.toString(), "--experts", "2", "--top-k", "3", "--ratio", "0.5", "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        assertEquals(1, TestBackends.runCli("convert", MODEL.toString(), "--experts", "4", "--top-k", "1", "--ratio", "0.5", "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        assertEquals(1, TestBackends.runCli("convert", MODEL.toString(), "--experts", "2", "--top-k", "1", "--ratio", "1.2", "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        // a Llama with MLP biases cannot become Mixtral experts: refused, naming mlp_bias
        IllegalArgumentException biased = assertThrows(IllegalArgumentException.class, () -> DiveConversion.run(new DiveConversion.Request(
                Path.of("src/test/resources/llama/mlp_bias"), "bundled", 2, 1, 0.5, ConvertRecipe.load(recipe), out, false), TestBackends.backend()));
        assertTrue(biased.getMessage().contains("mlp_bias"), biased.getMessage());
        assertFalse(Files.exists(out), "nothing written");
        Files.createDirectories(out);
        Files.writeString(out.resolve("other.txt"), "keep me");
        assertEquals(1, convert(recipe, out));
        assertEquals("keep me", Files.readString(out.resolve("other.txt")));
        assertEquals(1, Files.list(out).count());

        Path unknown = tmp.resolve("unknown.yaml");
        Files.writeString(unknown, "stage1: {tokens: 10, learning_rate: 1}\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(unknown));
        assertTrue(e.getMessage().contains("stage1.learning_rate") && e.getMessage().contains("unknown key"), e.getMessage());
        Files.writeString(unknown, "grouping: file\n");
        e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(unknown));
        assertTrue(e.getMessage().contains("groups_file"), e.getMessage());
        Files.writeString(unknown, "stage1: {temperature: 0.5}\n");
        e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(unknown));
        assertTrue(e.getMessage().contains("stage1.temperature"), e.getMessage());
    }

    static void deleteTree(Path dir) throws Exception {
        try (var s = Files.walk(dir)) { s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete()); }
    }
}
