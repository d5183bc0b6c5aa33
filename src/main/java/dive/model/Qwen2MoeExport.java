package dive.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.ScalarBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Writes a Hugging Face Qwen2-MoE checkpoint ({@code Qwen2MoeForCausalLM}, a stock shared-expert MoE that transformers
 * loads natively) from in-memory weights and a {@code qwen2_moe} config:
 * <ul>
 * <li>{@code config.json}: {@code model_type "qwen2_moe"}, {@code architectures ["Qwen2MoeForCausalLM"]},
 *     {@code num_experts}, {@code num_experts_per_tok}, {@code moe_intermediate_size} (the routed experts' width),
 *     {@code shared_expert_intermediate_size}, {@code norm_topk_prob true}, {@code qkv_bias false} (the engine's
 *     attention has no biases; transformers' default would add q/k/v biases), {@code decoder_sparse_step 1},
 *     {@code mlp_only_layers []}, {@code use_sliding_window false}, every layer {@code full_attention};
 *     {@code intermediate_size} (the width of dense layers, of which there are none) is written as the shared expert's
 *     width. Rope, special ids, tying and dtype as {@link MixtralExport} writes them.</li>
 * <li>safetensors: attention, norms, embeddings and {@code lm_head} under their Llama names,
 *     {@code model.layers.{l}.mlp.gate.weight} (E, d), {@code mlp.experts.{e}.gate_proj/up_proj.weight} (I_e, d),
 *     {@code down_proj.weight} (d, I_e), {@code mlp.shared_expert.gate_proj/up_proj.weight} (I_s, d),
 *     {@code down_proj.weight} (d, I_s), {@code mlp.shared_expert_gate.weight} (1, d) — the per-expert names
 *     transformers 5 writes with {@code save_pretrained} and fuses on loading.</li>
 * <li>the tokenizer files of {@link Options#tokenizerFrom()}, copied.</li>
 * </ul>
 * Atomic as {@link MixtralExport}: written into a temp folder beside {@code outDir}, renamed at the end.
 */
public final class Qwen2MoeExport {
    private Qwen2MoeExport() {}

    /**
     * @param maxShardBytes largest safetensors shard; Long.MAX_VALUE writes one model.safetensors
     * @param tokenizerFrom folder whose tokenizer files are copied, or null
     * @param dtype         every weight written as F32, BF16 or F16, converted while streaming; null keeps each tensor's dtype
     */
    public record Options(long maxShardBytes, Path tokenizerFrom, DType dtype) {
        public static Options defaults() { return new Options(Long.MAX_VALUE, null, null); }
        public Options withMaxShardBytes(long bytes) { return new Options(bytes, tokenizerFrom, dtype); }
        public Options withTokenizerFrom(Path dir) { return new Options(maxShardBytes, dir, dtype); }
        public Options withDtype(DType dtype) { return new Options(maxShardBytes, tokenizerFrom, dtype); }
    }

    /** exports a loaded Qwen2-MoE model (its config and weights) */
    public static void write(Path outDir, LlamaModel model, Options options) throws IOException {
        write(outDir, model.config(), model.namedWeights(), options);
    }

    /**
     * Exports {@code weights} (Hugging Face names, as {@link LlamaModel#namedWeights()} gives them) with {@code config}
     * (a qwen2_moe config, e.g. {@link LlamaConfig#toQwen2Moe}). Every name and shape is checked against the config
     * first (the loader's checks, errors naming the tensor); a tensor the checkpoint has no place for is refused.
     */
    public static void write(Path outDir, LlamaConfig config, Map<String, Tensor> weights, Options options) throws IOException {
        if (!config.isQwen2Moe() || config.moe() == null || !config.moe().hasSharedExpert())
            throw new IllegalArgumentException(outDir + ": Qwen2-MoE export needs a qwen2_moe config with expert fields, got model_type '"
                    + config.modelType() + "'");
        if (options.dtype() != null && !options.dtype().isFloatWeight())
            throw new IllegalArgumentException(outDir + ": export dtype " + options.dtype() + ": expected F32, BF16 or F16");
        LlamaModel check = LlamaModel.fromWeights(config, weights::get, outDir.toString(), new ScalarBackend(), null);
        Map<String, Tensor> canonical = check.namedWeights();
        for (String name : weights.keySet())
            if (!canonical.containsKey(name))
                throw new IllegalArgumentException(outDir + ": tensor '" + name + "' is not part of a Qwen2-MoE checkpoint of this config");
        List<Tensor> tensors = MixtralExport.canonicalTensors(check);
        MixtralExport.writeFolder(outDir, tensors, options.maxShardBytes(), options.tokenizerFrom(), options.dtype(),
                configJson(config, options.dtype() != null ? options.dtype() : tensors.getFirst().dtype()));
    }

    /** config.json text of a Qwen2-MoE checkpoint whose weights have {@code dtype} */
    static String configJson(LlamaConfig c, DType dtype) throws IOException {
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        LlamaConfig.Moe moe = c.moe();
        ObjectNode o = MixtralExport.configHead(json, "Qwen2MoeForCausalLM", "qwen2_moe", c, moe.sharedExpertIntermediateSize());
        o.put("num_experts", moe.numLocalExperts());
        o.put("num_experts_per_tok", moe.numExpertsPerTok());
        o.put("moe_intermediate_size", c.intermediateSize());
        o.put("shared_expert_intermediate_size", moe.sharedExpertIntermediateSize());
        o.put("norm_topk_prob", true);
        o.put("qkv_bias", false);
        o.put("decoder_sparse_step", 1);
        o.putArray("mlp_only_layers");
        o.put("router_aux_loss_coef", moe.routerAuxLossCoef());
        o.put("output_router_logits", false);
        o.put("use_sliding_window", false);
        o.putNull("sliding_window");
        var types = o.putArray("layer_types");
        for (int l = 0; l < c.numHiddenLayers(); l++) types.add("full_attention");
        MixtralExport.configTail(json, o, c, dtype);
        return json.writeValueAsString(o) + "\n";
    }
}
