package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.backend.TestBackends;
import dive.data.Corpus;
import dive.model.LlamaModel;
import dive.tokenizer.Tokenizer;
import dive.train.TrainableLlama;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The conversion driver runs any {@link Method} through the shared stages; the recipe's method names are checked. */
class MethodPipelineTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final ObjectMapper JSON = new ObjectMapper();
    /** the datasets of {@link ConvertCommandTest#tinyRecipe} */
    static final List<String> TINY_DATASETS = List.of("bible-nt", "man2", "python-core");

    /** the final-evaluation windows of a run with {@link ConvertCommandTest#tinyRecipe} (seed 4, 2 windows of 32), rebuilt here */
    static List<List<int[]>> tinyFinalEvalWindows() throws java.io.IOException {
        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        List<List<int[]>> finalEval = new ArrayList<>();
        for (int i = 0; i < TINY_DATASETS.size(); i++)
            finalEval.add(DatasetWindows.of(Corpus.bundled(), TINY_DATASETS.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).finalEval());
        return finalEval;
    }

    /** a conversion request on the tiny fixture: the recipe from YAML text (relative paths from {@code base}), (E, k, r), into {@code out} */
    static DiveConversion.Request tinyRequest(String recipeYaml, int experts, int topK, double ratio, Path out, Path base) throws java.io.IOException {
        ConvertRecipe recipe = ConvertRecipe.parse(new com.fasterxml.jackson.dataformat.yaml.YAMLMapper().readTree(recipeYaml), "test recipe", base);
        return new DiveConversion.Request(MODEL, "bundled", experts, topK, ratio, recipe, out, false);
    }

    /** the perplexity of the exported model of a method's report {@code entry}, recomputed here, is the one it reports after retraining */
    static void assertReportedPerplexityIsTheExports(JsonNode entry) throws Exception {
        List<List<int[]>> finalEval = tinyFinalEvalWindows();
        try (LlamaModel after = LlamaModel.load(Path.of(entry.get("export").asText()), Backends.create("scalar"))) {
            double[] ppl = WindowPerplexity.perGroup(after, finalEval, n -> {});
            for (int i = 0; i < TINY_DATASETS.size(); i++)
                assertEquals(ppl[i], entry.get("ppl_after_retraining").get(TINY_DATASETS.get(i)).asDouble(), 1e-4 * ppl[i], TINY_DATASETS.get(i));
        }
    }
    @TempDir Path tmp;

    /** a method only this test knows: the dense model copied unchanged (no pruning), retrained and exported as a Llama */
    static final class DenseCopyMethod implements Method {
        @Override public String name() { return "dense_copy"; }
        @Override public Family family() { return Family.DENSE; }
        @Override public String variant(Context c) { return "the dense model, copied"; }
        @Override public void build(BuildContext b) throws Exception {
            try (TrainableLlama copy = TrainableLlama.copyOf(b.dense().config(), b.dense().namedWeights()::get, name(), b.context().backend())) {
                copy.saveCheckpoint(b.buildDir(), b.context().tokenizerJson(), null);
            }
        }
    }

    /**
     * A new method needs no change of the driver: the test-only dense copy runs beside DIVE through every stage and gets
     * its report entry; a rerun changes no byte, and a run stopped before its export and evaluation resumes to the same bytes.
     */
    @Test
    void aMethodTheDriverDoesNotKnowRunsThroughEveryStageAndResumes() throws Exception {
        Path out = tmp.resolve("out");
        DiveConversion.Request q = tinyRequest(ConvertCommandTest.tinyRecipe(256, 512) + "train_eval_windows: 0\n", 2, 1, 0.5, out, tmp);
        List<Method> methods = List.of(new DiveMethod(), new DenseCopyMethod());
        ConversionResult result = DiveConversion.run(q, TestBackends.backend(), methods);

        JsonNode report = JSON.readTree(out.resolve("report.json").toFile());
        assertEquals(List.of("dive", "dense_copy"), BaselineConversionTest.iterable(report.get("methods").fieldNames()));
        JsonNode copy = report.get("methods").get("dense_copy");
        assertEquals(List.of("variant", "ppl_before_retraining", "ppl_after_retraining", "params_total", "params_active", "training_tokens",
                "export", "export_format", "ppl_geomean"), BaselineConversionTest.iterable(copy.fieldNames()), "a dense method's entry");
        assertEquals("the dense model, copied", copy.get("variant").asText());
        assertEquals("llama", copy.get("export_format").asText());
        // a dense model: stage 0's 256 tokens join stage 1's 512, 6 steps of 4 × 32 tokens
        assertEquals(6 * 4 * 32, copy.get("training_tokens").asLong());
        assertFalse(Files.exists(out.resolve("dense_copy/stage0")), "no router to train");
        assertTrue(Files.isRegularFile(out.resolve("dense_copy/stage1/done")));
        // tiny_bpe by hand: 2 layers × (attention 64·64 + 2·64·32 + 64·32·2 … = 12288, FFN 3·64·48 = 9216, norms 2·64)
        // + embeddings 320·64 (lm_head tied) + final norm 64 = 63808; a copy is all active
        assertEquals(63808, copy.get("params_total").asLong());
        assertEquals(63808, copy.get("params_active").asLong());

        // before retraining the copy is the dense model; after, the export's perplexity recomputed here
        List<String> names = TINY_DATASETS;
        List<List<int[]>> finalEval = tinyFinalEvalWindows();
        Path export = Path.of(copy.get("export").asText());
        assertEquals(out.resolve("dense_copy/model").toAbsolutePath().normalize(), export);
        assertEquals("llama", JSON.readTree(export.resolve("config.json").toFile()).get("model_type").asText());
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"));
             LlamaModel after = LlamaModel.load(export, Backends.create("scalar"))) {
            double[] densePpl = WindowPerplexity.perGroup(dense, finalEval, n -> {});
            double[] afterPpl = WindowPerplexity.perGroup(after, finalEval, n -> {});
            for (int i = 0; i < 3; i++) {
                assertEquals(densePpl[i], copy.get("ppl_before_retraining").get(names.get(i)).asDouble(), 1e-4 * densePpl[i], names.get(i));
                assertEquals(afterPpl[i], copy.get("ppl_after_retraining").get(names.get(i)).asDouble(), 1e-4 * afterPpl[i], names.get(i));
            }
        }
        assertEquals(result.methods().get("dense_copy").pplAfter(), JSON.convertValue(copy.get("ppl_after_retraining"), java.util.Map.class));

        // a rerun redoes nothing and changes no byte
        byte[] reportBytes = Files.readAllBytes(out.resolve("report.json"));
        byte[] weights = Files.readAllBytes(export.resolve("model.safetensors"));
        FileTime built = Files.getLastModifiedTime(out.resolve("dense_copy/build/model.safetensors"));
        FileTime stage1 = Files.getLastModifiedTime(out.resolve("dense_copy/stage1/done"));
        Thread.sleep(20);
        DiveConversion.run(q, TestBackends.backend(), methods);
        assertArrayEquals(reportBytes, Files.readAllBytes(out.resolve("report.json")));
        assertEquals(built, Files.getLastModifiedTime(out.resolve("dense_copy/build/model.safetensors")));
        assertEquals(stage1, Files.getLastModifiedTime(out.resolve("dense_copy/stage1/done")));

        // stopped before its export and evaluation: the rerun redoes only those, to the same bytes
        Files.delete(out.resolve("report.json"));
        Files.delete(out.resolve("dense_copy/eval/after.json"));
        ConvertCommandTest.deleteTree(export);
        DiveConversion.run(q, TestBackends.backend(), methods);
        assertArrayEquals(reportBytes, Files.readAllBytes(out.resolve("report.json")));
        assertArrayEquals(weights, Files.readAllBytes(export.resolve("model.safetensors")));
        assertEquals(stage1, Files.getLastModifiedTime(out.resolve("dense_copy/stage1/done")));
    }

    @Test
    void unknownMethodNamesAreRefusedNamingTheFieldAndTheKnownNames() throws Exception {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Methods.byName("upcycling", "plan.yaml: methods"));
        assertEquals("plan.yaml: methods: unknown method 'upcycling' (expected dive or one of [flap, llm_pruner, llama_moe_random, "
                + "llama_moe_kmeans, dive_random_groups, dive_shared, cmoe])", e.getMessage());
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, "methods: [dive, flap, dense_copy]\n");
        e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(recipe));
        assertEquals(recipe + ": methods: unknown method 'dense_copy' (expected dive or one of [flap, llm_pruner, llama_moe_random, "
                + "llama_moe_kmeans, dive_random_groups, dive_shared, cmoe])", e.getMessage());
        // the driver needs DIVE first (the conversion itself; the others run beside it)
        DiveConversion.Request q = new DiveConversion.Request(MODEL, "bundled", 2, 1, 0.5, ConvertRecipe.defaults(), tmp.resolve("x"), false);
        e = assertThrows(IllegalArgumentException.class, () -> DiveConversion.run(q, TestBackends.backend(), List.of(new FlapMethod())));
        assertTrue(e.getMessage().contains("[flap]") && e.getMessage().contains("dive"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> DiveConversion.run(q, TestBackends.backend(),
                List.of(new DiveMethod(), new FlapMethod(), new FlapMethod())));
        assertTrue(e.getMessage().contains("[dive, flap, flap]") && e.getMessage().contains("named twice"), e.getMessage());
        assertFalse(Files.exists(tmp.resolve("x")), "nothing written");
    }

    /** the names of DIVE-METHOD.md's methods (and the README's recipe line) map to classes answering to the same name */
    @Test
    void everyRecipeNameMapsToItsClass() {
        List<String> names = List.of("dive", "flap", "llm_pruner", "llama_moe_random", "llama_moe_kmeans", "dive_random_groups", "dive_shared", "cmoe");
        assertEquals(names, Methods.NAMES);
        for (String n : names) assertEquals(n, Methods.byName(n, "methods").name());
        assertInstanceOf(DiveMethod.class, Methods.byName("dive", "methods"));
        assertInstanceOf(FlapMethod.class, Methods.byName("flap", "methods"));
        assertInstanceOf(LlmPrunerMethod.class, Methods.byName("llm_pruner", "methods"));
        assertInstanceOf(DiveRandomGroupsMethod.class, Methods.byName("dive_random_groups", "methods"));
        assertInstanceOf(DiveSharedMethod.class, Methods.byName("dive_shared", "methods"));
        assertInstanceOf(CmoeMethod.class, Methods.byName("cmoe", "methods"));
        assertEquals(Method.Family.DENSE, Methods.byName("llm_pruner", "methods").family());
        assertEquals(Method.Family.MOE, Methods.byName("llama_moe_kmeans", "methods").family());
    }

    /** a dense method has no router: stage 0's tokens join stage 1 (same total budget); an MoE method keeps the three stages */
    @Test
    void denseMethodsMoveStageZerosTokensToStageOne() {
        ConvertRecipe r = ConvertRecipe.defaults();  // stage 0: 100000 tokens, stage 1: 200000, stage 2: 0
        List<ConvertRecipe.Stage> dense = Method.Family.DENSE.stages(r), moe = Method.Family.MOE.stages(r);
        assertNull(dense.get(0));
        assertEquals(300_000, dense.get(1).tokens());
        assertEquals(r.stage1().lr(), dense.get(1).lr());
        assertEquals(List.of(r.stage0(), r.stage1(), r.stage2()), moe);
    }

    @Test
    void aFinishedMethodsIntermediateWeightsAreRemovedUnlessKeptAndItsResultsAreTheSame() throws Exception {
        String recipe = ConvertCommandTest.tinyRecipe(128, 128).replace("keep_intermediate: true\n", "") + "train_eval_windows: 0\nmethods: [dive, flap]\n";
        Path pruned = tmp.resolve("pruned"), kept = tmp.resolve("kept");
        for (Path out : List.of(pruned, kept)) {
            String text = out == kept ? recipe + "keep_intermediate: true\n" : recipe;
            DiveConversion.run(tinyRequest(text, 2, 1, 0.5, out, tmp), TestBackends.backend());
        }
        // DIVE (experts/, two stages) and FLAP (build/, one stage): weights gone, config and a note left; the exports whole
        for (String folder : List.of("experts", "stage0/final", "stage1/final", "flap/build", "flap/stage1/final")) {
            assertTrue(Files.isRegularFile(kept.resolve(folder).resolve("model.safetensors")), "kept: " + folder);
            assertFalse(Files.exists(pruned.resolve(folder).resolve("model.safetensors")), "removed: " + folder);
            assertTrue(Files.isRegularFile(pruned.resolve(folder).resolve("config.json")), folder);
            assertTrue(Files.isRegularFile(pruned.resolve(folder).resolve(DiveConversion.WEIGHTS_REMOVED_FILE)), folder);
        }
        for (String export : List.of("model", "flap/model")) assertTrue(Files.isRegularFile(pruned.resolve(export).resolve("model.safetensors")), export);
        // the same results either way (keep_intermediate is not a setting of them)
        JsonNode a = JSON.readTree(pruned.resolve("report.json").toFile()).get("methods"), b = JSON.readTree(kept.resolve("report.json").toFile()).get("methods");
        for (String m : List.of("dive", "flap"))
            for (String key : List.of("ppl_before_retraining", "ppl_after_retraining", "params_total", "params_active", "training_tokens"))
                assertEquals(b.get(m).get(key), a.get(m).get(key), m + " " + key);
        // a rerun of the pruned conversion resumes as finished: nothing rebuilt, the same report
        String report = Files.readString(pruned.resolve("report.json"));
        DiveConversion.run(tinyRequest(recipe, 2, 1, 0.5, pruned, tmp), TestBackends.backend());
        assertEquals(report, Files.readString(pruned.resolve("report.json")));
        assertFalse(Files.exists(pruned.resolve("experts/model.safetensors")), "rebuilt on the rerun");
    }
}
