package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.io.Checkpoint;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static dive.model.LlamaFixtureTest.relativeError;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Qwen2MoeExport and SharedExpertMoeFfn.fromChannels: a dense Llama turned into a Qwen2-MoE whose shared expert is the
 * whole dense FFN (zero gate, down ×2) and whose routed experts add nothing gives the dense model's logits bit for bit;
 * the transformers-saved fixtures round-trip through the export bit for bit with transformers' names and config fields;
 * a wrong config, a stray tensor or a used folder is refused.
 */
class Qwen2MoeExportTest {
    @TempDir Path tmp;

    @Test
    void denseFfnAsUngatedSharedExpertGivesTheDenseLogitsExactly() throws Exception {
        int[] ids = Fixtures.ints(Fixtures.expected("gqa").get("input_ids"));
        for (var backend : new dive.backend.Backend[] {new ScalarBackend(), new VectorBackend(2)}) {
            try (LlamaModel dense = LlamaModel.load(Fixtures.dir("gqa"), backend); TensorArena arena = TensorArena.shared()) {
                float[] expected = dense.logits(ids);
                int f = dense.config().intermediateSize();
                Qwen2MoeBuild.Built exact = Qwen2MoeBuild.fromDense(dense, f, 4, 24, 2, true, false, 7, arena);
                try (LlamaModel moe = LlamaModel.fromWeights(exact.config(), exact.weights()::get, "exact", backend, null)) {
                    assertInstanceOf(SharedExpertMoeFfn.class, moe.feedForward(0));
                    assertArrayEquals(expected, moe.logits(ids), backend.name() + ": σ(0)·(2·down) + 0 = down, bit for bit");
                }
                // the same with the routed experts' down projections left in: they change the output (the check can fail)
                Qwen2MoeBuild.Built routed = Qwen2MoeBuild.fromDense(dense, f, 4, 24, 2, false, false, 7, arena);
                try (LlamaModel moe = LlamaModel.fromWeights(routed.config(), routed.weights()::get, "routed", backend, null)) {
                    assertTrue(relativeError(moe.logits(ids), expected, 0, expected.length) > 1e-3);
                }
            }
        }
    }

    @Test
    void transformersFixturesRoundTripBitForBit() throws Exception {
        for (String name : new String[] {"k2", "bf16_k2"}) {
            Path out = tmp.resolve(name);
            int[] ids = Fixtures.ints(Qwen2MoeFixtureTest.expected(name).get("input_ids"));
            try (LlamaModel original = LlamaModel.load(Qwen2MoeFixtureTest.dir(name), new ScalarBackend())) {
                Qwen2MoeExport.write(out, original, Qwen2MoeExport.Options.defaults().withTokenizerFrom(Fixtures.dir("tiny_bpe")));
                try (LlamaModel again = LlamaModel.load(out, new ScalarBackend()); Checkpoint a = Checkpoint.open(Qwen2MoeFixtureTest.dir(name));
                     Checkpoint b = Checkpoint.open(out)) {
                    assertArrayEquals(original.logits(ids), again.logits(ids), name);
                    assertEquals(new java.util.TreeSet<>(a.names()), new java.util.TreeSet<>(b.names()), name + ": transformers' tensor names");
                }
            }
            JsonNode c = Fixtures.JSON.readTree(out.resolve("config.json").toFile());
            JsonNode ref = Fixtures.JSON.readTree(Qwen2MoeFixtureTest.dir(name).resolve("config.json").toFile());
            for (String key : new String[] {"model_type", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                    "shared_expert_intermediate_size", "norm_topk_prob", "qkv_bias", "decoder_sparse_step", "mlp_only_layers",
                    "use_sliding_window", "hidden_size", "num_hidden_layers", "tie_word_embeddings", "dtype", "rope_parameters", "layer_types"})
                assertEquals(ref.get(key), c.get(key), name + ": " + key);
            assertTrue(Files.exists(out.resolve("tokenizer.json")));
        }
    }

    @Test
    void wrongConfigsStrayTensorsAndUsedFoldersAreRefused() throws Exception {
        try (LlamaModel model = LlamaModel.load(Qwen2MoeFixtureTest.dir("k2"), new ScalarBackend())) {
            Map<String, Tensor> weights = new LinkedHashMap<>(model.namedWeights());
            LlamaConfig mixtral = model.config().toMixtral(16, new LlamaConfig.Moe(4, 2, 0.001, false));
            var e = assertThrows(IllegalArgumentException.class, () -> Qwen2MoeExport.write(tmp.resolve("a"), mixtral, weights, Qwen2MoeExport.Options.defaults()));
            assertTrue(e.getMessage().contains("qwen2_moe"), e.getMessage());
            Map<String, Tensor> stray = new LinkedHashMap<>(weights);
            stray.put("model.layers.0.mlp.shared_expert_gate.bias", Tensor.ofFloats("b", new float[1], 1));
            e = assertThrows(IllegalArgumentException.class, () -> Qwen2MoeExport.write(tmp.resolve("b"), model.config(), stray, Qwen2MoeExport.Options.defaults()));
            assertTrue(e.getMessage().contains("shared_expert_gate.bias"), e.getMessage());
            Map<String, Tensor> missing = new LinkedHashMap<>(weights);
            missing.remove("model.layers.1.mlp.shared_expert_gate.weight");
            var m = assertThrows(ModelException.class, () -> Qwen2MoeExport.write(tmp.resolve("c"), model.config(), missing, Qwen2MoeExport.Options.defaults()));
            assertTrue(m.getMessage().contains("model.layers.1.mlp.shared_expert_gate.weight"), m.getMessage());
            Files.createDirectories(tmp.resolve("used"));
            Files.writeString(tmp.resolve("used/x"), "x");
            var io = assertThrows(java.io.IOException.class, () -> Qwen2MoeExport.write(tmp.resolve("used"), model, Qwen2MoeExport.Options.defaults()));
            assertTrue(io.getMessage().contains("not an empty folder"), io.getMessage());
            assertFalse(Files.exists(tmp.resolve("a")) || Files.exists(tmp.resolve("b")) || Files.exists(tmp.resolve("c")));
        }
    }

    @Test
    void bf16ExportConvertsEveryWeight() throws Exception {
        Path out = tmp.resolve("bf16");
        try (LlamaModel model = LlamaModel.load(Qwen2MoeFixtureTest.dir("k2"), new ScalarBackend())) {
            Qwen2MoeExport.write(out, model, Qwen2MoeExport.Options.defaults().withDtype(DType.BF16));
        }
        try (LlamaModel again = LlamaModel.load(out, new ScalarBackend())) {
            for (Tensor t : again.namedWeights().values()) assertEquals(DType.BF16, t.dtype(), t.name());
        }
        assertTrue(Files.readString(out.resolve("config.json")).contains("\"bfloat16\""));
    }
}
