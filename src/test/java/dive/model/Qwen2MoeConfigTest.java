package dive.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.ScalarBackend;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/**
 * config.json of {@code qwen2_moe}: the transformers-written fixture's fields are read, and every setting the engine
 * does not implement is refused in one line naming the file, the field and the expected value; counts and sizes are
 * range-checked like the other models'.
 */
class Qwen2MoeConfigTest {
    @TempDir Path tmp;

    private ObjectNode fixture() throws IOException {
        return (ObjectNode) Fixtures.JSON.readTree(Qwen2MoeFixtureTest.dir("k2").resolve("config.json").toFile());
    }

    private LlamaConfig parse(Consumer<ObjectNode> edit) throws IOException {
        ObjectNode o = fixture();
        edit.accept(o);
        Files.writeString(tmp.resolve("config.json"), o.toPrettyString());
        return LlamaConfig.load(tmp);
    }

    private void rejected(String field, String fragment, Consumer<ObjectNode> edit) {
        ConfigException e = assertThrows(ConfigException.class, () -> parse(edit), field);
        assertEquals(field, e.field(), e.getMessage());
        assertTrue(e.getMessage().startsWith(tmp.resolve("config.json") + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(fragment), "'" + fragment + "' in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void transformersFieldsAreRead() throws IOException {
        LlamaConfig c = parse(o -> {});
        assertTrue(c.isQwen2Moe());
        assertEquals("qwen2_moe", c.modelType());
        assertEquals(16, c.intermediateSize(), "the routed experts' width (moe_intermediate_size)");
        assertEquals(new LlamaConfig.Moe(4, 2, 0.001, false, false, 24), c.moe());
        assertTrue(c.moe().hasSharedExpert());
        assertEquals(0, c.slidingWindow());
        assertEquals(10000.0, c.rope().theta());
        // the dense intermediate_size is only range-checked
        assertEquals(16, parse(o -> o.put("intermediate_size", 5632)).intermediateSize());
        assertEquals(new LlamaConfig.Moe(4, 1, 0.5, true, false, 24),
                parse(o -> o.put("num_experts_per_tok", 1).put("router_aux_loss_coef", 0.5).put("output_router_logits", true)).moe());
        // a window that use_sliding_window leaves off is ignored, as transformers does
        assertEquals(0, parse(o -> o.put("sliding_window", 4096)).slidingWindow());
    }

    @Test
    void whatTheEngineDoesNotImplementIsRefused() {
        rejected("norm_topk_prob", "false is not supported (expected true", o -> o.put("norm_topk_prob", false));
        rejected("norm_topk_prob", "missing (transformers' default false)", o -> o.remove("norm_topk_prob"));
        rejected("qkv_bias", "true is not supported (expected false", o -> o.put("qkv_bias", true));
        rejected("qkv_bias", "missing (transformers' default true)", o -> o.remove("qkv_bias"));
        rejected("decoder_sparse_step", "2 is not supported (expected 1", o -> o.put("decoder_sparse_step", 2));
        rejected("mlp_only_layers", "[1] is not supported (expected []", o -> o.putArray("mlp_only_layers").add(1));
        rejected("use_sliding_window", "expected false", o -> o.put("use_sliding_window", true));
        rejected("layer_types", "element 1 is \"sliding_attention\"",
                o -> o.putArray("layer_types").add("full_attention").add("sliding_attention"));
        rejected("layer_types", "num_hidden_layers 2", o -> o.putArray("layer_types").add("full_attention"));
        rejected("dive_expert_bias", "not supported for qwen2_moe", o -> o.put("dive_expert_bias", true));
        rejected("mlp_bias", "not supported for qwen2_moe", o -> o.put("mlp_bias", true));
        rejected("attention_bias", "expected false", o -> o.put("attention_bias", true));
    }

    @Test
    void countsAndSizesAreRangeChecked() {
        rejected("num_experts", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_EXPERTS, o -> o.put("num_experts", 1_000_000));
        rejected("num_experts", "missing", o -> o.remove("num_experts"));
        rejected("num_experts_per_tok", "5 exceeds num_experts 4", o -> o.put("num_experts_per_tok", 5));
        rejected("num_experts_per_tok", "positive", o -> o.put("num_experts_per_tok", 0));
        rejected("moe_intermediate_size", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_INTERMEDIATE_SIZE, o -> o.put("moe_intermediate_size", Integer.MAX_VALUE));
        rejected("shared_expert_intermediate_size", "positive", o -> o.put("shared_expert_intermediate_size", 0));
        rejected("shared_expert_intermediate_size", "shared_expert_intermediate_size · hidden_size", o -> {
            o.put("shared_expert_intermediate_size", LlamaConfig.MAX_INTERMEDIATE_SIZE).put("hidden_size", 32768)
                    .put("num_attention_heads", 256).put("num_key_value_heads", 256).remove("head_dim");
        });
        rejected("intermediate_size", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_INTERMEDIATE_SIZE, o -> o.put("intermediate_size", Integer.MAX_VALUE));
    }

    @Test
    void aCheckpointWithMoreExpertsThanTheConfigIsRefused() throws Exception {
        try (LlamaModel model = LlamaModel.load(Qwen2MoeFixtureTest.dir("k2"), new ScalarBackend())) {
            Map<String, Tensor> weights = new LinkedHashMap<>(model.namedWeights());
            Tensor extra = weights.get("model.layers.1.mlp.experts.3.up_proj.weight");
            weights.put("model.layers.1.mlp.experts.4.up_proj.weight", new Tensor("model.layers.1.mlp.experts.4.up_proj.weight",
                    extra.dtype(), extra.shape(), extra.data()));
            Path dir = tmp.resolve("five");
            Files.createDirectories(dir);
            Fixtures.writeSafetensors(dir.resolve("model.safetensors"), weights);
            Files.copy(Qwen2MoeFixtureTest.dir("k2").resolve("config.json"), dir.resolve("config.json"));
            var e = assertThrows(ModelException.class, () -> LlamaModel.load(dir, new ScalarBackend()));
            assertTrue(e.getMessage().contains("'model.layers.1.mlp.experts.4.up_proj.weight'") && e.getMessage().contains("num_local_experts 4"),
                    e.getMessage());
            var m = assertThrows(ModelException.class,
                    () -> LlamaModel.fromWeights(model.config().toQwen2Moe(16, 20, 4, 2), model.namedWeights()::get, "w", new ScalarBackend(), null));
            assertTrue(m.getMessage().contains("shared_expert.gate_proj.weight") && m.getMessage().contains("[20, 32]"), m.getMessage());
        }
    }
}
