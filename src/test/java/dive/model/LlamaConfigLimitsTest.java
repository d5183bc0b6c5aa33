package dive.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/** Every count and size of config.json is bounded when parsed, so nothing derived from it can overflow an array. */
class LlamaConfigLimitsTest {
    @TempDir Path tmp;

    private ConfigException rejected(String field, String fragment, Consumer<ObjectNode> edit) throws IOException {
        ObjectNode o = (ObjectNode) Fixtures.JSON.readTree(Fixtures.dir("gqa").resolve("config.json").toFile());
        edit.accept(o);
        Files.writeString(tmp.resolve("config.json"), o.toPrettyString());
        ConfigException e = assertThrows(ConfigException.class, () -> LlamaConfig.load(tmp), field);
        assertEquals(field, e.field(), e.getMessage());
        assertTrue(e.getMessage().startsWith(tmp.resolve("config.json") + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(fragment), "'" + fragment + "' in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        return e;
    }

    @Test
    void hugeLayerCountIsRefusedWhenParsed() throws IOException {
        // was: accepted by inspect, then OutOfMemoryError "Requested array size exceeds VM limit" in LlamaModel.fromWeights
        rejected("num_hidden_layers", "2147483647: expected 1 ≤ n ≤ " + LlamaConfig.MAX_LAYERS,
                o -> o.put("num_hidden_layers", Integer.MAX_VALUE));
    }

    @Test
    void everySizeHasAnUpperBound() throws IOException {
        rejected("hidden_size", "65537: expected 1 ≤ n ≤ 65536", o -> { o.put("hidden_size", 65537); o.remove("head_dim"); });
        rejected("intermediate_size", "2147483647: expected 1 ≤ n ≤ " + LlamaConfig.MAX_INTERMEDIATE_SIZE,
                o -> o.put("intermediate_size", Integer.MAX_VALUE));
        rejected("num_attention_heads", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_HEADS, o -> o.put("num_attention_heads", 1 << 20));
        rejected("num_key_value_heads", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_HEADS, o -> o.put("num_key_value_heads", 1 << 20));
        rejected("head_dim", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_HEAD_DIM, o -> o.put("head_dim", 1 << 30));
        rejected("vocab_size", "2000000000: expected 1 ≤ n ≤ " + LlamaConfig.MAX_VOCAB_SIZE, o -> o.put("vocab_size", 2_000_000_000));
        rejected("max_position_embeddings", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_POSITIONS,
                o -> o.put("max_position_embeddings", Integer.MAX_VALUE));
        rejected("num_local_experts", "expected 1 ≤ n ≤ " + LlamaConfig.MAX_EXPERTS,
                o -> o.put("model_type", "mixtral").put("num_local_experts", 1_000_000));
        rejected("bos_token_id", "-1: expected 0 ≤ id < " + LlamaConfig.MAX_VOCAB_SIZE, o -> o.put("bos_token_id", -1));
        rejected("eos_token_id", "element 1 is 2147483647: expected 0 ≤ id < " + LlamaConfig.MAX_VOCAB_SIZE,
                o -> o.putArray("eos_token_id").add(2).add(Integer.MAX_VALUE));
        rejected("eos_token_id", "4294967296: expected 0 ≤ id < " + LlamaConfig.MAX_VOCAB_SIZE, o -> o.put("eos_token_id", 1L << 32));
        // still worded as before for the non-positive values
        rejected("num_hidden_layers", "positive", o -> o.put("num_hidden_layers", 0));
    }

    @Test
    void productsThatMakeAWeightMatrixTooLargeAreRefused() throws IOException {
        // each factor in range, the matrix over 2^31 - 1 elements
        rejected("vocab_size", "vocab_size · hidden_size = 16777216 · 65536", o -> {
            o.put("vocab_size", LlamaConfig.MAX_VOCAB_SIZE).put("hidden_size", 65536).put("num_attention_heads", 512);
            o.remove("head_dim");
        });
        rejected("intermediate_size", "intermediate_size · hidden_size", o -> {
            o.put("intermediate_size", LlamaConfig.MAX_INTERMEDIATE_SIZE).put("hidden_size", 65536).put("num_attention_heads", 512);
            o.remove("head_dim");
        });
        rejected("head_dim", "num_attention_heads · head_dim · hidden_size", o -> {
            o.put("hidden_size", 65536).put("num_attention_heads", 1024).put("head_dim", 4096).put("num_key_value_heads", 1);
        });
    }

    @Test
    void realSizesStillPass() throws IOException {
        // Llama 3.1 405B: the largest Llama published
        ObjectNode o = (ObjectNode) Fixtures.JSON.readTree(Fixtures.dir("gqa").resolve("config.json").toFile());
        o.put("hidden_size", 16384).put("intermediate_size", 53248).put("num_hidden_layers", 126).put("num_attention_heads", 128)
                .put("num_key_value_heads", 8).put("vocab_size", 128256).put("max_position_embeddings", 131072)
                .put("head_dim", 128).put("bos_token_id", 128000).putArray("eos_token_id").add(128001).add(128008).add(128009);
        Files.writeString(tmp.resolve("config.json"), o.toPrettyString());
        LlamaConfig c = LlamaConfig.load(tmp);
        assertEquals(126, c.numHiddenLayers());
    }
}
