package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * The hyper-parameters of a Llama (or Mixtral) checkpoint, read from Hugging Face's {@code config.json}.
 *
 * <p>Both spellings transformers has written are read: transformers 4 ({@code rope_theta},
 * {@code rope_scaling: {rope_type|type, ...}}, {@code torch_dtype}) and transformers 5
 * ({@code rope_parameters: {rope_type, rope_theta, ...}}, {@code dtype}).
 *
 * <p>Keys that change the math are understood or rejected: {@code attention_bias} must be false; {@code mlp_bias}
 * (Llama only; default false) gives gate_proj, up_proj and down_proj a bias each, as transformers' LlamaMLP has;
 * {@code hidden_act} must be {@code silu}; the rope type must be default, linear or llama3;
 * {@code partial_rotary_factor} (top level or in the rope parameters) must be 1; {@code quantization_config}
 * is rejected (the weights would not be plain F32/BF16/F16). {@code sliding_window} is recorded for Mixtral
 * and ignored for Llama (transformers' Llama has no sliding window either); a Mixtral forward that reaches past the
 * window is refused. {@code dive_expert_bias} (this engine's extension, Mixtral only) declares per-expert output biases.
 * <p>{@code qwen2_moe} (transformers' Qwen2MoeForCausalLM: routed experts plus a sigmoid-gated shared expert in every
 * layer) is read with {@code num_experts}, {@code num_experts_per_tok}, {@code moe_intermediate_size} (the routed
 * experts' width, this record's {@code intermediateSize}), {@code shared_expert_intermediate_size},
 * {@code router_aux_loss_coef} and {@code output_router_logits}; what the engine does not implement is refused:
 * {@code norm_topk_prob} must be true (transformers' default is false), {@code qkv_bias} false (default true),
 * {@code decoder_sparse_step} 1, {@code mlp_only_layers} empty, {@code use_sliding_window} false and every
 * {@code layer_types} entry {@code full_attention}. Its {@code intermediate_size} (the width of dense layers, which this
 * engine's qwen2_moe never has) is range-checked and otherwise unused. Every other key
 * ({@code transformers_version}, {@code pretraining_tp} — a sliced matmul with the same result,
 * {@code initializer_range}, {@code use_cache}, {@code attention_dropout}, {@code pad_token_id},
 * {@code architectures}, ...) is ignored.
 *
 * @param modelType        "llama", "mixtral" or "qwen2_moe"
 * @param headDim          per-head width; {@code head_dim} or hidden_size / num_attention_heads
 * @param rope             rotary embedding parameters
 * @param bosTokenId       beginning-of-sequence id, or -1 when the config has none
 * @param eosTokenIds      end-of-sequence ids (the config may give one id or a list; empty when none)
 * @param dtype            the checkpoint's declared dtype ("float32", "bfloat16", ...) or null
 * @param slidingWindow    Mixtral's attention window, or 0 for none
 * @param mlpBias          transformers' {@code mlp_bias}: {@code model.layers.{l}.mlp.{gate,up,down}_proj.bias} exist
 *                         (intermediate_size, intermediate_size, hidden_size); Llama only
 * @param moe              the expert fields (Mixtral or Qwen2-MoE), or null for a dense model
 */
public record LlamaConfig(String modelType, int hiddenSize, int intermediateSize, int numHiddenLayers,
                          int numAttentionHeads, int numKeyValueHeads, int headDim, double rmsNormEps,
                          Rope rope, int maxPositionEmbeddings, boolean tieWordEmbeddings, int vocabSize,
                          int bosTokenId, int[] eosTokenIds, String dtype, int slidingWindow, boolean mlpBias, Moe moe) {

    /** Rotary embedding: type "default", "linear" (frequencies / factor) or "llama3" (wavelength bands). */
    public record Rope(String type, double theta, double factor, double lowFreqFactor, double highFreqFactor,
                       int originalMaxPositionEmbeddings) {}

    /**
     * Mixtral's sparse-MoE fields (transformers' defaults 8, 2, 0.001, false).
     *
     * @param expertBias this engine's extension {@code "dive_expert_bias": true}: every expert has an output bias
     *                   {@code model.layers.{l}.block_sparse_moe.experts.{e}.bias} (hidden_size), added before the
     *                   routing weight (DIVE's bias compensation). Absent in stock Mixtral; transformers ignores it.
     */
    public record Moe(int numLocalExperts, int numExpertsPerTok, double routerAuxLossCoef, boolean outputRouterLogits,
                      boolean expertBias, int sharedExpertIntermediateSize) {
        public Moe(int numLocalExperts, int numExpertsPerTok, double routerAuxLossCoef, boolean outputRouterLogits) {
            this(numLocalExperts, numExpertsPerTok, routerAuxLossCoef, outputRouterLogits, false);
        }

        public Moe(int numLocalExperts, int numExpertsPerTok, double routerAuxLossCoef, boolean outputRouterLogits, boolean expertBias) {
            this(numLocalExperts, numExpertsPerTok, routerAuxLossCoef, outputRouterLogits, expertBias, 0);
        }

        /** true for Qwen2-MoE's fields: every layer also has a shared expert of {@link #sharedExpertIntermediateSize} */
        public boolean hasSharedExpert() { return sharedExpertIntermediateSize > 0; }
    }

    /** true for a Qwen2-MoE config (routed experts plus a gated shared expert per layer) */
    public boolean isQwen2Moe() { return modelType.equals("qwen2_moe"); }

    /**
     * This dense config as a Qwen2-MoE one: {@code experts} routed experts of width {@code expertIntermediateSize},
     * top-{@code topK} (renormalised), and a shared expert of width {@code sharedIntermediateSize} in every layer
     * (attention, norms, rope, vocabulary and special tokens unchanged; no sliding window, no q/k/v biases).
     */
    public LlamaConfig toQwen2Moe(int expertIntermediateSize, int sharedIntermediateSize, int experts, int topK) {
        if (mlpBias) throw new IllegalArgumentException("mlp_bias: true: Qwen2-MoE experts have no gate/up/down biases (expected a bias-free Llama MLP)");
        if (expertIntermediateSize <= 0 || sharedIntermediateSize <= 0)
            throw new IllegalArgumentException("expert / shared expert intermediate size " + expertIntermediateSize + " / "
                    + sharedIntermediateSize + ", expected both > 0");
        if (topK < 1 || topK > experts)
            throw new IllegalArgumentException("top-k " + topK + " of " + experts + " experts: expected 1 ≤ num_experts_per_tok ≤ num_experts");
        return new LlamaConfig("qwen2_moe", hiddenSize, expertIntermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads,
                headDim, rmsNormEps, rope, maxPositionEmbeddings, tieWordEmbeddings, vocabSize, bosTokenId, eosTokenIds, dtype, 0, false,
                new Moe(experts, topK, 0.001, false, false, sharedIntermediateSize));
    }

    /**
     * This dense config as a Mixtral one with {@code moe.numLocalExperts()} experts of width {@code expertIntermediateSize}
     * (attention, norms, rope, vocabulary and special tokens unchanged; no sliding window).
     */
    public LlamaConfig toMixtral(int expertIntermediateSize, Moe moe) {
        if (mlpBias) throw new IllegalArgumentException("mlp_bias: true: Mixtral experts have no gate/up/down biases (expected a bias-free Llama MLP)");
        if (expertIntermediateSize <= 0) throw new IllegalArgumentException("expert intermediate size " + expertIntermediateSize + ", expected > 0");
        if (moe == null || moe.numExpertsPerTok() < 1 || moe.numExpertsPerTok() > moe.numLocalExperts())
            throw new IllegalArgumentException("MoE fields " + moe + ": expected 1 ≤ num_experts_per_tok ≤ num_local_experts");
        return new LlamaConfig("mixtral", hiddenSize, expertIntermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads,
                headDim, rmsNormEps, rope, maxPositionEmbeddings, tieWordEmbeddings, vocabSize, bosTokenId, eosTokenIds, dtype, 0, false, moe);
    }

    /** this config with {@code intermediate_size} = {@code intermediateSize} (everything else equal) */
    public LlamaConfig withIntermediateSize(int intermediateSize) {
        return new LlamaConfig(modelType, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim,
                rmsNormEps, rope, maxPositionEmbeddings, tieWordEmbeddings, vocabSize, bosTokenId, eosTokenIds, dtype, slidingWindow, mlpBias, moe);
    }

    /** this Llama config with {@code mlp_bias} = {@code mlpBias} (everything else equal) */
    public LlamaConfig withMlpBias(boolean mlpBias) {
        if (mlpBias && moe != null) throw new IllegalArgumentException("mlp_bias: true is for Llama models, not Mixtral");
        return new LlamaConfig(modelType, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim,
                rmsNormEps, rope, maxPositionEmbeddings, tieWordEmbeddings, vocabSize, bosTokenId, eosTokenIds, dtype, slidingWindow, mlpBias, moe);
    }

    /** this config with the Mixtral fields {@code moe} (a Mixtral config; everything else equal) */
    public LlamaConfig withMoe(Moe moe) {
        return new LlamaConfig(modelType, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim,
                rmsNormEps, rope, maxPositionEmbeddings, tieWordEmbeddings, vocabSize, bosTokenId, eosTokenIds, dtype, slidingWindow, mlpBias, moe);
    }

    private static final List<String> MODEL_TYPES = List.of("llama", "mixtral", "qwen2_moe");
    private static final ObjectMapper JSON = new ObjectMapper();

    /*
     * Upper bounds of the sizes and counts, checked when config.json is parsed so that nothing derived from them (the
     * per-layer array, a weight matrix's element count, head widths) can overflow an int or ask for an impossible
     * allocation. Each is several times the largest published Llama or Mixtral (Llama 3.1 405B: hidden 16384,
     * intermediate 53248, 126 layers, 128 heads, vocabulary 128256, 131072 positions). Besides, every weight matrix
     * must hold at most 2^31 - 1 elements (vocab_size · hidden_size, intermediate_size · hidden_size,
     * num_attention_heads · head_dim · hidden_size): the engine indexes a matrix with an int.
     */
    /** largest hidden_size accepted */
    public static final int MAX_HIDDEN_SIZE = 1 << 16;
    /** largest intermediate_size accepted */
    public static final int MAX_INTERMEDIATE_SIZE = 1 << 18;
    /** largest num_hidden_layers accepted */
    public static final int MAX_LAYERS = 1024;
    /** largest num_attention_heads and num_key_value_heads accepted */
    public static final int MAX_HEADS = 1024;
    /** largest head_dim accepted */
    public static final int MAX_HEAD_DIM = 1 << 14;
    /** largest vocab_size accepted (the tokenizer's bound too) */
    public static final int MAX_VOCAB_SIZE = 1 << 24;
    /** largest max_position_embeddings (and rope original_max_position_embeddings) accepted */
    public static final int MAX_POSITIONS = 1 << 24;
    /** largest num_local_experts accepted */
    public static final int MAX_EXPERTS = 1024;
    /** the most elements one weight matrix may hold */
    public static final long MAX_MATRIX_ELEMENTS = Integer.MAX_VALUE;

    /** reads {@code dir/config.json} */
    public static LlamaConfig load(Path dir) throws IOException {
        Path file = Files.isDirectory(dir) ? dir.resolve("config.json") : dir;
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (NoSuchFileException | java.io.FileNotFoundException e) {
            throw new ConfigException(file.toString(), null, "file not found");
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new ConfigException(file.toString(), null, "not valid JSON: " + e.getOriginalMessage());
        }
        return parse(root, file.toString());
    }

    /** parses a config.json tree; {@code source} names the file in error messages */
    public static LlamaConfig parse(JsonNode root, String source) {
        if (root == null || !root.isObject()) throw new ConfigException(source, null, "expected a JSON object");
        Reader r = new Reader(root, source);

        String modelType = r.string("model_type", null);
        if (modelType == null) throw new ConfigException(source, "model_type", "missing (expected one of " + MODEL_TYPES + ")");
        if (!MODEL_TYPES.contains(modelType))
            throw new ConfigException(source, "model_type", "'" + modelType + "' is not supported (expected one of " + MODEL_TYPES + ")");
        boolean mixtral = modelType.equals("mixtral"), qwen2Moe = modelType.equals("qwen2_moe");

        int hidden = r.positiveInt("hidden_size", MAX_HIDDEN_SIZE);
        int intermediate = r.positiveInt("intermediate_size", MAX_INTERMEDIATE_SIZE);
        int layers = r.positiveInt("num_hidden_layers", MAX_LAYERS);
        int heads = r.positiveInt("num_attention_heads", MAX_HEADS);
        int kvHeads = root.has("num_key_value_heads") && !root.get("num_key_value_heads").isNull()
                ? r.positiveInt("num_key_value_heads", MAX_HEADS) : heads;
        int vocab = r.positiveInt("vocab_size", MAX_VOCAB_SIZE);
        if (heads % kvHeads != 0)
            throw new ConfigException(source, "num_key_value_heads", kvHeads + " does not divide num_attention_heads " + heads);
        int headDim;
        if (root.has("head_dim") && !root.get("head_dim").isNull()) {
            headDim = r.positiveInt("head_dim", MAX_HEAD_DIM);
        } else {
            if (hidden % heads != 0)
                throw new ConfigException(source, "num_attention_heads", heads + " does not divide hidden_size " + hidden + " (and no head_dim is given)");
            headDim = hidden / heads;
        }
        if (headDim % 2 != 0) throw new ConfigException(source, "head_dim", headDim + " is odd; rotary embedding needs an even head_dim");
        checkMatrix(source, "vocab_size", "vocab_size · hidden_size", vocab, hidden);
        checkMatrix(source, "intermediate_size", "intermediate_size · hidden_size", intermediate, hidden);
        checkMatrix(source, root.has("head_dim") && !root.get("head_dim").isNull() ? "head_dim" : "num_attention_heads",
                "num_attention_heads · head_dim · hidden_size", heads, headDim, hidden);
        double eps = r.positiveDouble("rms_norm_eps", Double.NaN);
        int maxPos = root.has("max_position_embeddings") && !root.get("max_position_embeddings").isNull()
                ? r.positiveInt("max_position_embeddings", MAX_POSITIONS) : 2048;

        if (r.bool("attention_bias", false)) throw new ConfigException(source, "attention_bias", "true is not supported (expected false: no q/k/v/o biases)");
        boolean mlpBias = r.bool("mlp_bias", false);
        if (mlpBias && (mixtral || qwen2Moe))
            throw new ConfigException(source, "mlp_bias", "true is not supported for " + modelType + " (its experts have no biases; expected false)");
        String act = r.string("hidden_act", "silu");
        if (!act.equals("silu")) throw new ConfigException(source, "hidden_act", "'" + act + "' is not supported (expected silu)");
        if (root.has("quantization_config") && !root.get("quantization_config").isNull())
            throw new ConfigException(source, "quantization_config", "quantized checkpoints are not supported (expected plain F32, BF16 or F16 weights)");
        checkPartialRotary(root, source, "partial_rotary_factor");

        Rope rope = parseRope(root, r, source, mixtral ? 1e6 : 10000.0, maxPos);

        boolean tied = r.bool("tie_word_embeddings", false);
        int bos = root.has("bos_token_id") && !root.get("bos_token_id").isNull() ? r.tokenId("bos_token_id") : -1;
        int[] eos = parseEos(root.get("eos_token_id"), source);
        String dtype = root.has("dtype") && !root.get("dtype").isNull() ? r.string("dtype", null) : r.string("torch_dtype", null);

        int slidingWindow = 0;
        Moe moe = null;
        if (mixtral) {
            // the window is only compared with positions, never allocated: any positive int
            if (root.has("sliding_window") && !root.get("sliding_window").isNull())
                slidingWindow = r.positiveInt("sliding_window", Integer.MAX_VALUE);
            int experts = root.has("num_local_experts") && !root.get("num_local_experts").isNull()
                    ? r.positiveInt("num_local_experts", MAX_EXPERTS) : 8;
            int perTok = root.has("num_experts_per_tok") && !root.get("num_experts_per_tok").isNull()
                    ? r.positiveInt("num_experts_per_tok", MAX_EXPERTS) : 2;
            if (perTok > experts)
                throw new ConfigException(source, "num_experts_per_tok", perTok + " exceeds num_local_experts " + experts);
            double aux = root.has("router_aux_loss_coef") && !root.get("router_aux_loss_coef").isNull()
                    ? r.nonNegativeDouble("router_aux_loss_coef") : 0.001;
            moe = new Moe(experts, perTok, aux, r.bool("output_router_logits", false), r.bool("dive_expert_bias", false));
        }
        if (qwen2Moe) {
            moe = qwen2Moe(root, r, source, hidden, layers);
            intermediate = r.positiveInt("moe_intermediate_size", MAX_INTERMEDIATE_SIZE);
        }
        return new LlamaConfig(modelType, hidden, intermediate, layers, heads, kvHeads, headDim, eps, rope, maxPos,
                tied, vocab, bos, eos, dtype, slidingWindow, mlpBias, moe);
    }

    /** Qwen2-MoE's expert fields; refuses what the engine does not implement (see the class comment) */
    private static Moe qwen2Moe(JsonNode root, Reader r, String source, int hidden, int layers) {
        int experts = r.positiveInt("num_experts", MAX_EXPERTS);
        int perTok = r.positiveInt("num_experts_per_tok", MAX_EXPERTS);
        if (perTok > experts) throw new ConfigException(source, "num_experts_per_tok", perTok + " exceeds num_experts " + experts);
        int expertWidth = r.positiveInt("moe_intermediate_size", MAX_INTERMEDIATE_SIZE);
        int sharedWidth = r.positiveInt("shared_expert_intermediate_size", MAX_INTERMEDIATE_SIZE);
        checkMatrix(source, "moe_intermediate_size", "moe_intermediate_size · hidden_size", expertWidth, hidden);
        checkMatrix(source, "shared_expert_intermediate_size", "shared_expert_intermediate_size · hidden_size", sharedWidth, hidden);
        if (!r.bool("norm_topk_prob", false))
            throw new ConfigException(source, "norm_topk_prob", (root.has("norm_topk_prob") ? "false" : "missing (transformers' default false)")
                    + " is not supported (expected true: the top-k routing weights renormalised to sum 1)");
        if (r.bool("qkv_bias", true))
            throw new ConfigException(source, "qkv_bias", (root.has("qkv_bias") ? "true" : "missing (transformers' default true)")
                    + " is not supported (expected false: no q/k/v biases)");
        if (r.bool("use_sliding_window", false))
            throw new ConfigException(source, "use_sliding_window", "true is not supported (expected false: full attention in every layer)");
        JsonNode step = root.get("decoder_sparse_step");
        if (step != null && !step.isNull() && (!step.isIntegralNumber() || step.asLong() != 1))
            throw new ConfigException(source, "decoder_sparse_step", step + " is not supported (expected 1: every layer sparse)");
        JsonNode mlpOnly = root.get("mlp_only_layers");
        if (mlpOnly != null && !mlpOnly.isNull() && (!mlpOnly.isArray() || !mlpOnly.isEmpty()))
            throw new ConfigException(source, "mlp_only_layers", mlpOnly + " is not supported (expected []: no dense layers)");
        JsonNode types = root.get("layer_types");
        if (types != null && !types.isNull()) {
            if (!types.isArray() || types.size() != layers)
                throw new ConfigException(source, "layer_types", "expected a list of num_hidden_layers " + layers + " entries");
            for (int i = 0; i < types.size(); i++)
                if (!"full_attention".equals(types.get(i).asText(null)))
                    throw new ConfigException(source, "layer_types", "element " + i + " is " + types.get(i)
                            + ", not supported (expected \"full_attention\")");
        }
        if (r.bool("dive_expert_bias", false))
            throw new ConfigException(source, "dive_expert_bias", "true is not supported for qwen2_moe (expected false or absent)");
        double aux = root.has("router_aux_loss_coef") && !root.get("router_aux_loss_coef").isNull()
                ? r.nonNegativeDouble("router_aux_loss_coef") : 0.001;
        return new Moe(experts, perTok, aux, r.bool("output_router_logits", false), false, sharedWidth);
    }

    private static Rope parseRope(JsonNode root, Reader r, String source, double defaultTheta, int maxPos) {
        JsonNode params = root.get("rope_parameters");
        String prefix;
        JsonNode scaling;
        double theta;
        if (params != null && !params.isNull()) {
            // transformers 5: everything in one object
            if (!params.isObject()) throw new ConfigException(source, "rope_parameters", "expected an object");
            if (!params.has("rope_type") && !params.has("rope_theta"))
                throw new ConfigException(source, "rope_parameters", "expected rope_type and rope_theta (per-layer rope parameters are not supported)");
            prefix = "rope_parameters.";
            scaling = params;
            Reader p = new Reader(params, source, prefix);
            theta = params.has("rope_theta") ? p.positiveDouble("rope_theta", defaultTheta)
                    : root.has("rope_theta") ? r.positiveDouble("rope_theta", defaultTheta) : defaultTheta;
        } else {
            // transformers 4: rope_theta at the top, optional rope_scaling object
            theta = root.has("rope_theta") ? r.positiveDouble("rope_theta", defaultTheta) : defaultTheta;
            scaling = root.get("rope_scaling");
            prefix = "rope_scaling.";
            if (scaling == null || scaling.isNull()) return new Rope("default", theta, 1, 0, 0, maxPos);
            if (!scaling.isObject()) throw new ConfigException(source, "rope_scaling", "expected an object or null");
        }
        Reader s = new Reader(scaling, source, prefix);
        String typeKey = scaling.has("rope_type") ? "rope_type" : "type";
        String type = s.string(typeKey, "default");
        checkPartialRotary(scaling, source, prefix + "partial_rotary_factor");
        return switch (type) {
            case "default" -> new Rope("default", theta, 1, 0, 0, maxPos);
            case "linear" -> new Rope("linear", theta, s.positiveDouble("factor", Double.NaN), 0, 0, maxPos);
            case "llama3" -> {
                double factor = s.positiveDouble("factor", Double.NaN);
                double low = s.positiveDouble("low_freq_factor", Double.NaN);
                double high = s.positiveDouble("high_freq_factor", Double.NaN);
                if (!(high > low))
                    throw new ConfigException(source, prefix + "high_freq_factor", high + " must exceed low_freq_factor " + low);
                int original = scaling.has("original_max_position_embeddings")
                        ? s.positiveInt("original_max_position_embeddings", MAX_POSITIONS) : maxPos;
                yield new Rope("llama3", theta, factor, low, high, original);
            }
            default -> throw new ConfigException(source, prefix + typeKey,
                    "rope type '" + type + "' is not supported (expected default, linear or llama3)");
        };
    }

    /** a weight matrix of {@code factors[0] · factors[1] · ...} elements must fit the engine's int indexing */
    private static void checkMatrix(String source, String field, String product, long... factors) {
        long elements = 1;
        StringBuilder values = new StringBuilder();
        for (long f : factors) {
            elements *= f; // factors already bounded: the product is below 2^41, no overflow
            values.append(values.isEmpty() ? "" : " · ").append(f);
        }
        if (elements > MAX_MATRIX_ELEMENTS)
            throw new ConfigException(source, field, product + " = " + values + " = " + elements
                    + " elements in one weight matrix: expected " + product + " ≤ " + MAX_MATRIX_ELEMENTS);
    }

    private static void checkPartialRotary(JsonNode node, String source, String field) {
        String key = field.substring(field.lastIndexOf('.') + 1);
        JsonNode v = node.get(key);
        if (v != null && !v.isNull() && (!v.isNumber() || v.asDouble() != 1.0))
            throw new ConfigException(source, field, v + " is not supported (expected 1.0: rotary over the whole head)");
    }

    private static int[] parseEos(JsonNode v, String source) {
        if (v == null || v.isNull()) return new int[0];
        if (v.isIntegralNumber()) return new int[] {tokenId(v, source, "eos_token_id", "")};
        if (v.isArray()) {
            if (v.size() > MAX_VOCAB_SIZE)
                throw new ConfigException(source, "eos_token_id", "a list of " + v.size() + " ids (expected at most " + MAX_VOCAB_SIZE + ")");
            int[] ids = new int[v.size()];
            for (int i = 0; i < ids.length; i++) {
                JsonNode e = v.get(i);
                if (!e.isIntegralNumber())
                    throw new ConfigException(source, "eos_token_id", "element " + i + " is " + e + " (expected a non-negative integer)");
                ids[i] = tokenId(e, source, "eos_token_id", "element " + i + " is ");
            }
            return ids;
        }
        throw new ConfigException(source, "eos_token_id", v + " (expected a non-negative integer or a list of them)");
    }

    /**
     * an integral JSON number as a special token id: 0 ≤ id &lt; {@link #MAX_VOCAB_SIZE}. Not bounded by vocab_size:
     * configs exist whose eos ids lie past it, and these ids are only compared with sampled ids, never indexed.
     */
    private static int tokenId(JsonNode v, String source, String field, String where) {
        if (!v.canConvertToInt() || v.asInt() < 0 || v.asInt() >= MAX_VOCAB_SIZE)
            throw new ConfigException(source, field, where + v + ": expected 0 ≤ id < " + MAX_VOCAB_SIZE);
        return v.asInt();
    }

    /** total query width: num_attention_heads · head_dim */
    public int queryDim() { return numAttentionHeads * headDim; }

    /** total key/value width: num_key_value_heads · head_dim */
    public int kvDim() { return numKeyValueHeads * headDim; }

    public boolean isEos(int id) {
        for (int e : eosTokenIds) if (e == id) return true;
        return false;
    }

    @Override public String toString() {
        return "LlamaConfig[" + modelType + " hidden=" + hiddenSize + " intermediate=" + intermediateSize + " layers=" + numHiddenLayers
                + " heads=" + numAttentionHeads + "/" + numKeyValueHeads + " headDim=" + headDim + " vocab=" + vocabSize
                + " rope=" + rope + " tied=" + tieWordEmbeddings + (mlpBias ? " mlp_bias" : "") + " eos=" + Arrays.toString(eosTokenIds) + " dtype=" + dtype
                + (moe == null ? "" : " moe=" + moe) + "]";
    }

    /** typed access to the keys of one JSON object, errors naming the file and the key */
    private record Reader(JsonNode node, String source, String prefix) {
        Reader(JsonNode node, String source) { this(node, source, ""); }

        private JsonNode get(String key, boolean required) {
            JsonNode v = node.get(key);
            if ((v == null || v.isNull()) && required) throw new ConfigException(source, prefix + key, "missing (required)");
            return v == null || v.isNull() ? null : v;
        }

        /** an integer 1 ≤ n ≤ max; a value out of range (any integral JSON number) is named with the range */
        int positiveInt(String key, int max) {
            JsonNode v = get(key, true);
            if (!v.isIntegralNumber()) throw new ConfigException(source, prefix + key, v + " (expected an integer)");
            if (v.canConvertToInt() && v.asInt() >= 1 && v.asInt() <= max) return v.asInt();
            boolean nonPositive = v.bigIntegerValue().signum() <= 0;
            throw new ConfigException(source, prefix + key, v + ": expected " + (nonPositive ? "a positive integer, " : "") + "1 ≤ n ≤ " + max);
        }

        /** a special token id 0 ≤ id < MAX_VOCAB_SIZE */
        int tokenId(String key) {
            JsonNode v = get(key, true);
            if (!v.isIntegralNumber()) throw new ConfigException(source, prefix + key, v + " (expected a non-negative integer)");
            return LlamaConfig.tokenId(v, source, prefix + key, "");
        }

        /** a positive number; {@code fallback} when absent, or required when fallback is NaN */
        double positiveDouble(String key, double fallback) {
            JsonNode v = get(key, Double.isNaN(fallback));
            if (v == null) return fallback;
            if (!v.isNumber() || !(v.asDouble() > 0) || Double.isInfinite(v.asDouble()))
                throw new ConfigException(source, prefix + key, v + " (expected a positive number)");
            return v.asDouble();
        }

        double nonNegativeDouble(String key) {
            JsonNode v = get(key, true);
            if (!v.isNumber() || !(v.asDouble() >= 0)) throw new ConfigException(source, prefix + key, v + " (expected a non-negative number)");
            return v.asDouble();
        }

        boolean bool(String key, boolean fallback) {
            JsonNode v = get(key, false);
            if (v == null) return fallback;
            if (!v.isBoolean()) throw new ConfigException(source, prefix + key, v + " (expected true or false)");
            return v.asBoolean();
        }

        String string(String key, String fallback) {
            JsonNode v = get(key, false);
            if (v == null) return fallback;
            if (!v.isTextual()) throw new ConfigException(source, prefix + key, v + " (expected a string)");
            return v.asText();
        }
    }
}
