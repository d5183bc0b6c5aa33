package dive.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.ScalarBackend;
import dive.io.SafetensorsWriter;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Writes a Hugging Face Mixtral checkpoint ({@code MixtralForCausalLM}) from in-memory weights and a config:
 * <ul>
 * <li>{@code config.json}: {@code model_type "mixtral"}, {@code architectures ["MixtralForCausalLM"]},
 *     {@code intermediate_size} = the experts' width I_e, {@code num_local_experts}, {@code num_experts_per_tok},
 *     {@code router_aux_loss_coef}, {@code output_router_logits false}, {@code sliding_window null}, the rope settings
 *     in both transformers forms ({@code rope_theta} + {@code rope_scaling} for transformers 4,
 *     {@code rope_parameters} for 5), {@code tie_word_embeddings}, bos/eos ids and {@code dtype}/{@code torch_dtype}
 *     (from the embedding's dtype).</li>
 * <li>safetensors ({@code "__metadata__": {"format": "pt"}}): attention, norms, embeddings and {@code lm_head} under
 *     their Llama names, {@code model.layers.{l}.block_sparse_moe.gate.weight} (E, d) and
 *     {@code ...experts.{e}.w1/w3.weight} (I_e, d), {@code w2.weight} (d, I_e); one file, or shards of at most
 *     {@link Options#maxShardBytes()} with {@code model.safetensors.index.json}.</li>
 * <li>the tokenizer files of {@link Options#tokenizerFrom()} (tokenizer.json, tokenizer_config.json,
 *     special_tokens_map.json, tokenizer.model, generation_config.json — those that exist), copied.</li>
 * </ul>
 * Atomic: everything is written into a temp folder beside {@code outDir}, which is renamed to {@code outDir} at the
 * end; {@code outDir} must not exist yet (or be an empty folder). On failure the temp folder is removed.
 *
 * <p><b>Expert biases</b> (DIVE's bias compensation) are never dropped silently. Stock Mixtral has no expert bias:
 * when the config sets {@link LlamaConfig.Moe#expertBias()}, the export is refused unless
 * {@link Options#allowExpertBias()}; then the {@code ...experts.{e}.bias} (d) tensors are written and config.json
 * carries {@code "dive_expert_bias": true}, which this engine's loader reads (transformers would ignore the tensors,
 * so such a checkpoint is not exactly Mixtral). Biases that are all exactly zero are left out and the result is a
 * stock Mixtral checkpoint.
 */
public final class MixtralExport {
    private MixtralExport() {}

    /** the tokenizer files copied when present */
    static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "tokenizer.model", "generation_config.json");

    /**
     * @param maxShardBytes   largest safetensors shard; Long.MAX_VALUE writes one model.safetensors
     * @param tokenizerFrom   folder whose tokenizer files are copied, or null
     * @param allowExpertBias write expert biases as this engine's extension instead of refusing them
     */
    public record Options(long maxShardBytes, Path tokenizerFrom, boolean allowExpertBias, DType dtype) {
        public static Options defaults() { return new Options(Long.MAX_VALUE, null, false, null); }
        public Options withMaxShardBytes(long bytes) { return new Options(bytes, tokenizerFrom, allowExpertBias, dtype); }
        public Options withTokenizerFrom(Path dir) { return new Options(maxShardBytes, dir, allowExpertBias, dtype); }
        public Options withExpertBias(boolean allow) { return new Options(maxShardBytes, tokenizerFrom, allow, dtype); }
        /** every weight written as {@code dtype} (F32, BF16 or F16), converted while streaming; null keeps each tensor's dtype */
        public Options withDtype(DType dtype) { return new Options(maxShardBytes, tokenizerFrom, allowExpertBias, dtype); }
    }

    /** exports a loaded Mixtral model (its config and weights) */
    public static void write(Path outDir, LlamaModel model, Options options) throws IOException {
        write(outDir, model.config(), model.namedWeights(), options);
    }

    /**
     * Exports {@code weights} (Hugging Face names, as {@link LlamaModel#namedWeights()} gives them) with {@code config}
     * (a Mixtral config, e.g. {@link LlamaConfig#toMixtral}). Every shape is checked against the config first
     * (the loader's checks, errors naming the tensor).
     */
    public static void write(Path outDir, LlamaConfig config, Map<String, Tensor> weights, Options options) throws IOException {
        if (config.moe() == null || !config.modelType().equals("mixtral"))
            throw new IllegalArgumentException(outDir + ": Mixtral export needs a mixtral config with expert fields, got model_type '"
                    + config.modelType() + "'");
        LlamaConfig.Moe moe = config.moe();
        boolean zeroBias = allBiasesZero(weights); // true also when there are none
        if (!zeroBias && moe.expertBias() && !options.allowExpertBias())
            throw new IllegalArgumentException(outDir + ": the experts have output biases (dive_expert_bias), which stock Mixtral "
                    + "cannot hold; refusing to drop them. Pass Options.withExpertBias(true) to write them as this engine's "
                    + "extension (\"dive_expert_bias\": true), or fold them into the experts first.");
        // non-zero biases under a config without dive_expert_bias stay in, so the loader's check below refuses them
        boolean writeBias = !zeroBias && moe.expertBias();
        LlamaConfig outConfig = writeBias ? config : withoutBias(config);
        Map<String, Tensor> outWeights = new LinkedHashMap<>(weights);
        if (zeroBias) outWeights.keySet().removeIf(MixtralExport::isExpertBias);
        // the loader's shape and name checks; its canonical order is the file order
        LlamaModel check = LlamaModel.fromWeights(outConfig, outWeights::get, outDir.toString(), new ScalarBackend(), null);
        Map<String, Tensor> canonical = check.namedWeights();
        List<Tensor> tensors = canonicalTensors(check);
        for (String name : weights.keySet())
            if (!canonical.containsKey(name) && !(isExpertBias(name) && zeroBias))
                throw new IllegalArgumentException(outDir + ": tensor '" + name + "' is not part of a Mixtral checkpoint of this config");

        writeFolder(outDir, tensors, options.maxShardBytes(), options.tokenizerFrom(), options.dtype(),
                configJson(outConfig, options.dtype() != null ? options.dtype() : tensors.getFirst().dtype()));
    }

    /**
     * Writes {@code tensors} (safetensors, one file or shards of at most {@code maxShardBytes}, converted to {@code dtype}
     * unless null), the tokenizer files of {@code tokenizerFrom} (may be null) and {@code configJson} into a temp folder
     * beside {@code outDir}, renamed to {@code outDir} at the end; {@code outDir} must be new or an empty folder.
     */
    static void writeFolder(Path outDir, List<Tensor> tensors, long maxShardBytes, Path tokenizerFrom, DType dtype, String configJson)
            throws IOException {
        Path target = outDir.toAbsolutePath();
        if (Files.exists(target)) {
            try (Stream<Path> s = Files.list(target)) {
                if (!Files.isDirectory(target) || s.findAny().isPresent())
                    throw new IOException(outDir + ": export target exists and is not an empty folder (expected a new folder)");
            }
        }
        Files.createDirectories(target.getParent());
        Path temp = dive.util.AtomicFiles.tempDirectoryBeside(target);
        boolean done = false;
        try {
            SafetensorsWriter.writeSharded(temp, tensors, maxShardBytes, Map.of(), dtype);
            if (tokenizerFrom != null) {
                for (String f : TOKENIZER_FILES) {
                    Path src = tokenizerFrom.resolve(f);
                    if (Files.exists(src)) {
                        if (!Files.isRegularFile(src)) throw new IOException(src + ": tokenizer file is not a regular file");
                        Files.copy(src, temp.resolve(f));
                    }
                }
            }
            AtomicFiles.writeString(temp.resolve("config.json"), configJson);
            if (Files.exists(target)) Files.delete(target); // empty (checked above)
            Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE);
            done = true;
        } catch (DirectoryNotEmptyException e) {
            throw new IOException(outDir + ": export target appeared while writing; the export is left out", e);
        } finally {
            if (!done) deleteTree(temp);
        }
    }

    /** the loader's canonical order and names of a checked model's weights, as the tensors to write */
    static List<Tensor> canonicalTensors(LlamaModel checked) {
        List<Tensor> tensors = new ArrayList<>();
        for (Map.Entry<String, Tensor> kv : checked.namedWeights().entrySet()) {
            Tensor t = kv.getValue();
            tensors.add(new Tensor(kv.getKey(), t.dtype(), t.shape(), t.data()));
        }
        return tensors;
    }

    static boolean isExpertBias(String name) {
        return name.contains(".block_sparse_moe.experts.") && name.endsWith(".bias");
    }

    private static boolean allBiasesZero(Map<String, Tensor> weights) {
        for (Map.Entry<String, Tensor> kv : weights.entrySet()) {
            if (!isExpertBias(kv.getKey())) continue;
            Tensor t = kv.getValue();
            for (long i = 0; i < t.numel(); i++) if (t.getFloat(i) != 0f) return false;
        }
        return true;
    }

    private static LlamaConfig withoutBias(LlamaConfig c) {
        LlamaConfig.Moe m = c.moe();
        return c.withMoe(new LlamaConfig.Moe(m.numLocalExperts(), m.numExpertsPerTok(), m.routerAuxLossCoef(), false, false));
    }

    /** config.json text of a Mixtral checkpoint whose weights have {@code dtype} */
    static String configJson(LlamaConfig c, DType dtype) throws IOException {
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode o = configHead(json, "MixtralForCausalLM", "mixtral", c, c.intermediateSize());
        o.put("num_local_experts", c.moe().numLocalExperts());
        o.put("num_experts_per_tok", c.moe().numExpertsPerTok());
        o.put("router_aux_loss_coef", c.moe().routerAuxLossCoef());
        o.put("router_jitter_noise", 0.0);
        o.put("output_router_logits", false);
        o.putNull("sliding_window");
        configTail(json, o, c, dtype);
        if (c.moe().expertBias()) o.put("dive_expert_bias", true);
        return json.writeValueAsString(o) + "\n";
    }

    /** the start of config.json: architectures, model_type, sizes (intermediate_size as given), heads, norms, vocabulary, special ids */
    static ObjectNode configHead(ObjectMapper json, String architecture, String modelType, LlamaConfig c, int intermediateSize) {
        ObjectNode o = json.createObjectNode();
        o.putArray("architectures").add(architecture);
        o.put("model_type", modelType);
        o.put("hidden_size", c.hiddenSize());
        o.put("intermediate_size", intermediateSize);
        o.put("num_hidden_layers", c.numHiddenLayers());
        o.put("num_attention_heads", c.numAttentionHeads());
        o.put("num_key_value_heads", c.numKeyValueHeads());
        o.put("head_dim", c.headDim());
        o.put("hidden_act", "silu");
        o.put("rms_norm_eps", c.rmsNormEps());
        o.put("max_position_embeddings", c.maxPositionEmbeddings());
        o.put("vocab_size", c.vocabSize());
        o.put("tie_word_embeddings", c.tieWordEmbeddings());
        if (c.bosTokenId() >= 0) o.put("bos_token_id", c.bosTokenId()); else o.putNull("bos_token_id");
        int[] eos = c.eosTokenIds();
        if (eos.length == 0) o.putNull("eos_token_id");
        else if (eos.length == 1) o.put("eos_token_id", eos[0]);
        else { ArrayNode a = o.putArray("eos_token_id"); for (int e : eos) a.add(e); }
        return o;
    }

    /** the end of config.json: attention dropout, cache, rope in both transformers forms, dtype/torch_dtype */
    static void configTail(ObjectMapper json, ObjectNode o, LlamaConfig c, DType dtype) {
        o.put("attention_dropout", 0.0);
        o.put("use_cache", true);
        // rope: transformers 4 form and transformers 5 form
        LlamaConfig.Rope r = c.rope();
        o.put("rope_theta", r.theta());
        ObjectNode params = json.createObjectNode();
        params.put("rope_type", r.type());
        params.put("rope_theta", r.theta());
        ObjectNode scaling = json.createObjectNode();
        switch (r.type()) {
            case "default" -> { }
            case "linear" -> scaling.put("factor", r.factor());
            case "llama3" -> {
                scaling.put("factor", r.factor());
                scaling.put("low_freq_factor", r.lowFreqFactor());
                scaling.put("high_freq_factor", r.highFreqFactor());
                scaling.put("original_max_position_embeddings", r.originalMaxPositionEmbeddings());
            }
            default -> throw new IllegalArgumentException("rope type '" + r.type() + "' cannot be exported");
        }
        params.setAll(scaling);
        if (r.type().equals("default")) o.putNull("rope_scaling");
        else o.putObject("rope_scaling").put("rope_type", r.type()).put("type", r.type()).setAll(scaling);
        o.set("rope_parameters", params);
        String dtypeName = switch (dtype) {
            case F32 -> "float32";
            case BF16 -> "bfloat16";
            case F16 -> "float16";
            default -> throw new IllegalArgumentException("weights of dtype " + dtype + " cannot be exported");
        };
        o.put("dtype", dtypeName);
        o.put("torch_dtype", dtypeName);
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) return;
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }
}
