package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.ScalarBackend;
import dive.backend.TestBackends;
import dive.data.Corpus;
import dive.io.NpyWriter;
import dive.model.LlamaModel;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Interop with transformers of the shared-expert methods as {@code ./dive convert} writes them: dive_shared and cmoe,
 * built, retrained (LoRA merged) and exported by the driver, load in a stock {@code Qwen2MoeForCausalLM} with no missing
 * or unexpected weights and give the engine's logits within 1e-4 relative (src/test/python/check_mixtral_export.py).
 * Runs only where {@code DIVE_PYTHON} names a python with torch and transformers; skipped with that reason otherwise.
 */
@Tag("python")
class SharedExpertExportPythonTest {
    @TempDir Path tmp;

    @Test
    void retrainedSharedExpertExportsLoadInTransformersWithTheEnginesLogits() throws Exception {
        dive.model.ReferencePython.interpreter();
        Path out = tmp.resolve("out");
        ConvertRecipe recipe = ConvertRecipe.parse(new com.fasterxml.jackson.dataformat.yaml.YAMLMapper().readTree(
                ConvertCommandTest.tinyRecipe(256, 256) + "train_eval_windows: 0\nmethods: [dive, dive_shared, cmoe]\n"), "test recipe", tmp);
        // E = 3, k = 2, r = 0.625 on I = 48: cmoe needs E > k and a shared expert
        DiveConversion.run(new DiveConversion.Request(MethodPipelineTest.MODEL, "bundled", 3, 2, 0.625, recipe, out, false), TestBackends.backend());
        JsonNode methods = new ObjectMapper().readTree(out.resolve("report.json").toFile()).get("methods");
        Tokenizer tokenizer = Tokenizer.load(MethodPipelineTest.MODEL.resolve("tokenizer.json"));
        int[] ids = DatasetWindows.of(Corpus.bundled(), "man2", tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, 1)).finalEval().getFirst();
        for (String method : List.of("dive_shared", "cmoe")) {
            Path export = Path.of(methods.get(method).get("export").asText());
            Path logits = tmp.resolve(method + "_logits.npy");
            try (LlamaModel m = LlamaModel.load(export, new ScalarBackend())) {
                assertTrue(m.config().isQwen2Moe(), method);
                NpyWriter.writeF32(logits, m.logits(ids), ids.length, m.config().vocabSize());
            }
            String output = dive.model.ReferencePython.run("check_mixtral_export.py", export.toString(), logits.toString(),
                    Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(",")));
            assertTrue(output.contains("ok: relative error") && output.contains("Qwen2MoeForCausalLM"), method + ": " + output);
        }
    }
}
