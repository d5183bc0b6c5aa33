package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.Backends;
import dive.backend.TestBackends;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The routing diagnostics of docs/routing-investigation.md on a tiny top-1 conversion: the windows rebuilt from the run
 * give the perplexities the run reported, and "expert g everywhere" equals a dense Llama whose MLP is expert g (with
 * one expert per token, Mixtral's routing weight is 1), computed independently by {@link WindowPerplexity}.
 */
class RoutingDiagnosticsTest {
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path tmp;

    @Test
    void forcedExpertsEqualDenseModelsAndWindowsAreTheRunsOwn() throws Exception {
        Path recipe = tmp.resolve("recipe.yaml"), out = tmp.resolve("out");
        Files.writeString(recipe, ConvertCommandTest.tinyRecipe(128, 128));
        assertEquals(0, TestBackends.runCli("convert", ConvertCommandTest.MODEL.toString(), "--data", "bundled", "--experts", "2", "--top-k", "1",
                "--ratio", "0.5", "--out", out.toString(), "--recipe", recipe.toString(), "-q"));
        JsonNode method = JSON.readTree(out.resolve("report.json").toFile()).get("methods").get("dive");
        Path export = Path.of(method.get("export").asText());

        RoutingDiagnostics.Windows windows = RoutingDiagnostics.Windows.of(out, "final");
        assertEquals(List.of("bible-nt", "man2", "python-core"), windows.datasets());
        RoutingDiagnostics.Report r = RoutingDiagnostics.analyse(export, windows, Backends.create("scalar"));
        for (int j = 0; j < 3; j++) {
            double reported = method.get("ppl_after_retraining").get(windows.datasets().get(j)).asDouble();
            assertEquals(reported, r.learned()[j], 1e-4 * reported, "learned routing, " + windows.datasets().get(j));
            assertTrue(r.ownShare()[j] >= 0 && r.ownShare()[j] <= 1);
        }
        assertEquals(2, r.forced().length);
        for (int g = 0; g < 2; g++) {
            try (LlamaModel dense = denseWithExpert(export, g)) {
                double[] want = WindowPerplexity.perGroup(dense, windows.windows(), n -> {});
                for (int j = 0; j < 3; j++)
                    assertEquals(want[j], r.forced()[g][j], 1e-5 * want[j], "expert " + g + " everywhere, dataset " + j);
            }
        }
        assertNotEquals(r.forced()[0][0], r.forced()[1][0], "the two experts differ");
    }

    /** the Mixtral folder as a dense Llama whose MLP in every layer is expert g (w1 → gate, w3 → up, w2 → down) */
    static LlamaModel denseWithExpert(Path mixtral, int g) throws Exception {
        ObjectNode c = (ObjectNode) JSON.readTree(mixtral.resolve("config.json").toFile());
        LlamaModel moe = LlamaModel.load(mixtral, Backends.create("scalar"));
        Map<String, Tensor> weights = moe.namedWeights();
        int width = (int) weights.get("model.layers.0.block_sparse_moe.experts." + g + ".w1.weight").shape()[0];
        c.put("model_type", "llama").put("intermediate_size", width);
        for (String key : List.of("num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "output_router_logits", "router_jitter_noise"))
            c.remove(key);
        LlamaConfig config = LlamaConfig.parse(c, "expert " + g + " as a dense MLP");
        return LlamaModel.fromWeights(config, name -> {
            String n = name.replace("mlp.gate_proj", "block_sparse_moe.experts." + g + ".w1")
                    .replace("mlp.up_proj", "block_sparse_moe.experts." + g + ".w3")
                    .replace("mlp.down_proj", "block_sparse_moe.experts." + g + ".w2");
            Tensor t = weights.get(n);
            return t == null ? null : new Tensor(name, t.dtype(), t.shape(), t.data());
        }, "expert " + g, Backends.create("scalar"), moe);
    }
}
