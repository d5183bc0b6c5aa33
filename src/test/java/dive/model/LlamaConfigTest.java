package dive.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/** config.json parsing: values the fixture script set, both transformers spellings, and every rejection. */
class LlamaConfigTest {
    @TempDir Path tmp;

    @Test
    void readsTransformers5ConfigAsTheScriptWroteIt() throws IOException {
        // gqa: hidden 48, intermediate 80, 2 layers, 4 heads over 2 KV heads, vocab 300, theta 1e4, untied, bos 1, eos 2
        LlamaConfig c = LlamaConfig.load(Fixtures.dir("gqa"));
        assertEquals("llama", c.modelType());
        assertEquals(48, c.hiddenSize());
        assertEquals(80, c.intermediateSize());
        assertEquals(2, c.numHiddenLayers());
        assertEquals(4, c.numAttentionHeads());
        assertEquals(2, c.numKeyValueHeads());
        assertEquals(12, c.headDim());
        assertEquals(1e-5, c.rmsNormEps());
        assertEquals(new LlamaConfig.Rope("default", 10000.0, 1, 0, 0, 256), c.rope());
        assertEquals(256, c.maxPositionEmbeddings());
        assertFalse(c.tieWordEmbeddings());
        assertEquals(300, c.vocabSize());
        assertEquals(1, c.bosTokenId());
        assertArrayEquals(new int[] {2}, c.eosTokenIds());
        assertEquals("float32", c.dtype());
        assertFalse(c.mlpBias());
        assertNull(c.moe());
    }

    @Test
    void readsMlpBias() throws IOException {
        assertTrue(LlamaConfig.load(Fixtures.dir("mlp_bias")).mlpBias());  // the fixture script set mlp_bias=True
        assertFalse(parse(o -> o.remove("mlp_bias")).mlpBias());         // transformers' default
        assertTrue(parse(o -> o.put("mlp_bias", true)).mlpBias());
    }

    @Test
    void readsLlama3RopeParametersAndHeadDim() throws IOException {
        LlamaConfig c = LlamaConfig.load(Fixtures.dir("rope_llama3"));
        assertEquals(new LlamaConfig.Rope("llama3", 10000.0, 8.0, 1.0, 4.0, 32), c.rope());
        LlamaConfig h = LlamaConfig.load(Fixtures.dir("head_dim16"));
        assertEquals(16, h.headDim());  // explicit head_dim, not 48 / 4
        assertEquals(64, h.queryDim());
        assertEquals(32, h.kvDim());
        assertTrue(h.tieWordEmbeddings());
        assertEquals("bfloat16", LlamaConfig.load(Fixtures.dir("bf16")).dtype());
    }

    @Test
    void readsTransformers4Form() throws IOException {
        // rope_theta + rope_scaling {type: linear}, torch_dtype, no head_dim (→ 48 / 4)
        LlamaConfig c = LlamaConfig.load(Fixtures.dir("rope_linear_v4"));
        assertEquals(new LlamaConfig.Rope("linear", 10000.0, 4.0, 0, 0, 256), c.rope());
        assertEquals(12, c.headDim());
        assertEquals(4, c.numKeyValueHeads());
        assertEquals("float32", c.dtype());
    }

    @Test
    void transformers4Llama3AndEosListAndDefaults() throws IOException {
        // a Llama-3.1-style transformers-4 config: rope_scaling with rope_type, eos list, no num_key_value_heads
        LlamaConfig c = parse(o -> {
            o.remove("rope_parameters");
            o.remove("num_key_value_heads");
            o.put("rope_theta", 500000.0);
            o.putObject("rope_scaling").put("rope_type", "llama3").put("factor", 8.0).put("low_freq_factor", 1.0)
                    .put("high_freq_factor", 4.0).put("original_max_position_embeddings", 8192);
            o.putArray("eos_token_id").add(128001).add(128008).add(128009);
            o.put("pretraining_tp", 1).put("unknown_future_key", "x");
        });
        assertEquals(new LlamaConfig.Rope("llama3", 500000.0, 8.0, 1.0, 4.0, 8192), c.rope());
        assertArrayEquals(new int[] {128001, 128008, 128009}, c.eosTokenIds());
        assertTrue(c.isEos(128008));
        assertEquals(4, c.numKeyValueHeads());  // defaults to num_attention_heads
    }

    @Test
    void readsMixtralFields() throws IOException {
        LlamaConfig c = parse(o -> o.put("model_type", "mixtral").put("num_local_experts", 4).put("num_experts_per_tok", 2)
                .put("router_aux_loss_coef", 0.02).put("output_router_logits", true).put("sliding_window", 4096));
        assertEquals(new LlamaConfig.Moe(4, 2, 0.02, true), c.moe());
        assertEquals(4096, c.slidingWindow());
        ConfigException e = assertThrows(ConfigException.class,
                () -> parse(o -> o.put("model_type", "mixtral").put("num_local_experts", 2).put("num_experts_per_tok", 3)));
        assertEquals("num_experts_per_tok", e.field());
    }

    @Test
    void rejectionsNameTheFileAndField() {
        assertRejected("hidden_size", "missing", o -> o.remove("hidden_size"));
        assertRejected("rms_norm_eps", "missing", o -> o.remove("rms_norm_eps"));
        assertRejected("model_type", "'gpt2' is not supported", o -> o.put("model_type", "gpt2"));
        assertRejected("model_type", "missing", o -> o.remove("model_type"));
        assertRejected("intermediate_size", "positive", o -> o.put("intermediate_size", 0));
        assertRejected("num_hidden_layers", "positive", o -> o.put("num_hidden_layers", -2));
        assertRejected("hidden_size", "integer", o -> o.put("hidden_size", 48.5));
        assertRejected("num_attention_heads", "does not divide hidden_size 50", o -> { o.put("hidden_size", 50); o.remove("head_dim"); });
        assertRejected("num_key_value_heads", "3 does not divide num_attention_heads 4", o -> o.put("num_key_value_heads", 3));
        assertRejected("rope_parameters.rope_type", "'yarn' is not supported", o -> ((ObjectNode) o.get("rope_parameters")).put("rope_type", "yarn"));
        assertRejected("rope_parameters.factor", "missing", o -> ((ObjectNode) o.get("rope_parameters")).put("rope_type", "linear"));
        assertRejected("rope_scaling.type", "'dynamic' is not supported", o -> {
            o.remove("rope_parameters");
            o.put("rope_theta", 10000.0);
            o.putObject("rope_scaling").put("type", "dynamic").put("factor", 2.0);
        });
        assertRejected("attention_bias", "true is not supported", o -> o.put("attention_bias", true));
        assertRejected("mlp_bias", "true is not supported for mixtral",
                o -> o.put("model_type", "mixtral").put("num_local_experts", 4).put("num_experts_per_tok", 2).put("mlp_bias", true));
        assertRejected("mlp_bias", "expected true or false", o -> o.put("mlp_bias", "yes"));
        assertRejected("hidden_act", "'gelu' is not supported", o -> o.put("hidden_act", "gelu"));
        assertRejected("partial_rotary_factor", "expected 1.0", o -> o.put("partial_rotary_factor", 0.5));
        assertRejected("quantization_config", "quantized", o -> o.putObject("quantization_config").put("quant_method", "gptq"));
        assertRejected("eos_token_id", "non-negative", o -> o.put("eos_token_id", "</s>"));
    }

    @Test
    void missingOrBrokenFileIsNamed() throws IOException {
        ConfigException e = assertThrows(ConfigException.class, () -> LlamaConfig.load(tmp));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("not found"), e.getMessage());
        Files.writeString(tmp.resolve("config.json"), "{\"hidden_size\": 4,");
        e = assertThrows(ConfigException.class, () -> LlamaConfig.load(tmp));
        assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    private void assertRejected(String field, String fragment, Consumer<ObjectNode> edit) {
        ConfigException e = assertThrows(ConfigException.class, () -> parse(edit), field);
        assertEquals(field, e.field(), e.getMessage());
        assertTrue(e.getMessage().contains(tmp.resolve("config.json").toString()), e.getMessage());
        assertTrue(e.getMessage().contains(fragment), e.getMessage());
    }

    /** the gqa fixture's config.json, edited, written to the temp folder and parsed from there */
    private LlamaConfig parse(Consumer<ObjectNode> edit) throws IOException {
        ObjectNode o = (ObjectNode) Fixtures.JSON.readTree(Fixtures.dir("gqa").resolve("config.json").toFile());
        edit.accept(o);
        Files.writeString(tmp.resolve("config.json"), o.toPrettyString());
        return LlamaConfig.load(tmp);
    }
}
