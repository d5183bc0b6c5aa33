package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceScope;
import dive.backend.DeviceTensor;
import dive.io.Checkpoint;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.function.Function;

/**
 * A Llama decoder (transformers' {@code LlamaForCausalLM}) or its sparse Mixture-of-Experts form
 * ({@code MixtralForCausalLM}) running on a {@link Backend}. One decoder: the attention path is shared and each
 * layer's feed-forward block is a {@link FeedForward}: {@link DenseFfn} (Llama's SwiGLU MLP) or {@link MoeFfn}
 * (Mixtral's {@code block_sparse_moe}, with an optional per-expert output bias, this engine's documented extension
 * {@code "dive_expert_bias": true}) or {@link SharedExpertMoeFfn} (Qwen2-MoE's {@code mlp}: routed experts plus a
 * sigmoid-gated shared expert, {@code Qwen2MoeForCausalLM}).
 *
 * <p>Immutable and thread-safe: load once, share across threads; per-request state lives in a {@link KVCache}
 * (one per sequence) and in scratch arrays local to each call. Weights stay where the checkpoint mapped them
 * (F32, BF16 or F16, read by the backend and accumulated in F32).
 *
 * <pre>
 * x = embed(ids)                                           // (N, D)
 * per layer: x += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))  with n = rmsNorm(x, input_layernorm)
 *            x += ffn(n)                                                        with n = rmsNorm(x, post_attention_layernorm)
 *                 ffn = down_proj(silu(gate_proj(n)) · up_proj(n))     dense (Llama; + biases with mlp_bias)
 *                 ffn = Σ_{e ∈ top-k} g_e · expert_e(n)                 sparse (Mixtral), see MoeFfn
 *                 ffn = Σ_{e ∈ top-k} g_e · expert_e(n) + σ(w_s · n) · shared(n)   sparse + shared (Qwen2-MoE)
 * logits = lm_head(rmsNorm(x, model.norm))                 // (N, vocab); lm_head = embed_tokens when tied
 * </pre>
 */
public final class LlamaModel implements AutoCloseable {

    /** the weights of one decoder layer, PyTorch Linear layout [out, in] */
    private record Layer(Tensor inputNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo,
                         Tensor postAttentionNorm, FeedForward ffn) {}

    private final LlamaConfig config;
    private final Backend backend;
    private final String source;
    private final DeviceTensor invFreq;   // (headDim / 2), on the backend
    private final Tensor tokenEmbedding;  // (vocab, D)
    private final Layer[] layers;
    private final Tensor finalNorm;       // (D)
    private final Tensor lmHead;          // (vocab, D)
    private final AutoCloseable resource; // what holds the mapped weights, closed with the model; may be null

    private LlamaModel(LlamaConfig config, Backend backend, String source, Tensor tokenEmbedding, Layer[] layers,
                       Tensor finalNorm, Tensor lmHead, AutoCloseable resource) {
        this.config = config;
        this.backend = backend;
        this.source = source;
        this.invFreq = backend.upload(RopeFrequencies.of(config));
        this.tokenEmbedding = tokenEmbedding;
        this.layers = layers;
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.resource = resource;
    }

    /** {@link #load(Path, Backend, LoadOptions)} with {@link LoadOptions#DEFAULT}: unused tensors and NaN/Inf weights refused */
    public static LlamaModel load(Path dir, Backend backend) throws IOException {
        return load(dir, backend, LoadOptions.DEFAULT);
    }

    /**
     * Loads a Hugging Face Llama or Mixtral folder: {@code config.json} and its safetensors weights (one file or shards),
     * memory-mapped, checked against the config both ways: every tensor the config needs must be there with its shape,
     * and every tensor of the checkpoint must be read by the model — one nothing reads (a config with fewer layers than
     * the checkpoint, a stray tensor) is refused, naming the first few, their count and file, unless
     * {@code options.allowUnusedTensors()} (then a warning lists them). Rotary {@code inv_freq} buffers saved by old
     * transformers versions are derived from the config and accepted; so is an {@code lm_head.weight} equal to the
     * embeddings under {@code tie_word_embeddings}. With {@code options.checkFinite()} every weight is then scanned
     * once for NaN and ±Infinity, the first one refused naming its tensor, index and value. Close the model to unmap them.
     *
     * @throws ConfigException naming the config field at fault
     * @throws ModelException  naming the tensor at fault
     */
    public static LlamaModel load(Path dir, Backend backend, LoadOptions options) throws IOException {
        LlamaConfig config = LlamaConfig.load(dir);
        Checkpoint checkpoint = Checkpoint.open(dir);
        try {
            java.util.Set<String> read = new java.util.HashSet<>();
            LlamaModel model = fromWeights(config, name -> {
                if (!checkpoint.has(name)) return null;
                read.add(name);
                return checkpoint.tensor(name);
            }, dir.toString(), backend, checkpoint);
            checkAllRead(config, checkpoint, read, dir.toString(), options.allowUnusedTensors());
            if (options.checkFinite()) checkFinite(model);
            return model;
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
    }

    private static final java.util.logging.Logger LOG = java.util.logging.Logger.getLogger(LlamaModel.class.getName());
    /** unused tensors named in a message; the rest are counted */
    static final int NAMED_UNUSED = 5;

    /** refuses (or, allowed, warns about) the checkpoint's tensors the model did not read */
    private static void checkAllRead(LlamaConfig config, Checkpoint checkpoint, java.util.Set<String> read, String source, boolean allow) {
        java.util.List<String> unused = new java.util.ArrayList<>();
        for (String name : checkpoint.names()) {
            if (read.contains(name) || name.endsWith(".rotary_emb.inv_freq")) continue;
            if (name.equals("lm_head.weight") && config.tieWordEmbeddings() && checkpoint.has("model.embed_tokens.weight")
                    && sameValues(checkpoint.tensor(name), checkpoint.tensor("model.embed_tokens.weight"))) continue;
            unused.add(name);
        }
        if (unused.isEmpty()) return;
        java.util.Set<String> files = new java.util.LinkedHashSet<>();
        for (String name : unused) files.add(checkpoint.fileOf(name).getFileName().toString());
        StringBuilder msg = new StringBuilder(source).append(": ").append(unused.size()).append(unused.size() == 1 ? " tensor" : " tensors")
                .append(" in ").append(String.join(", ", files)).append(" not read by the model config.json describes (num_hidden_layers ")
                .append(config.numHiddenLayers());
        if (config.moe() != null) msg.append(", num_local_experts ").append(config.moe().numLocalExperts());
        msg.append(", tie_word_embeddings ").append(config.tieWordEmbeddings()).append("): ");
        for (int i = 0; i < Math.min(NAMED_UNUSED, unused.size()); i++) msg.append(i == 0 ? "" : ", ").append('\'').append(unused.get(i)).append('\'');
        if (unused.size() > NAMED_UNUSED) msg.append(", … (").append(unused.size() - NAMED_UNUSED).append(" more)");
        if (allow) {
            LOG.warning(msg + "; loading anyway (--allow-unused-tensors)");
            return;
        }
        throw new ModelException(msg + "; the config does not match its checkpoint, which would give wrong results "
                + "(pass --allow-unused-tensors, or LoadOptions.allowUnusedTensors in the library, to load anyway)");
    }

    private static boolean sameValues(Tensor a, Tensor b) {
        return a.dtype() == b.dtype() && Arrays.equals(a.shape(), b.shape()) && a.data().mismatch(b.data()) == -1;
    }

    /**
     * refuses the first NaN or infinite weight (in checkpoint order), naming its tensor, index and value; the tensors are
     * scanned in parallel, each in one vectorized pass
     */
    private static void checkFinite(LlamaModel model) {
        var seen = java.util.Collections.newSetFromMap(new IdentityHashMap<Tensor, Boolean>());
        java.util.List<java.util.Map.Entry<String, Tensor>> tensors = new java.util.ArrayList<>();
        for (var e : model.namedWeights().entrySet()) if (seen.add(e.getValue())) tensors.add(e);
        long[] first = dive.io.NonFiniteScan.firstNonFinite(tensors.stream().map(java.util.Map.Entry::getValue).toList());
        for (int i = 0; i < first.length; i++) {
            if (first[i] < 0) continue;
            Tensor t = tensors.get(i).getValue();
            throw new ModelException(model.source + ": tensor '" + tensors.get(i).getKey() + "' holds " + t.getFloat(first[i])
                    + " at index " + first[i] + " (flat, of shape " + Arrays.toString(t.shape())
                    + "); NaN or infinite weights make NaN logits: refusing to load");
        }
    }

    /**
     * Builds a model from named weights (Hugging Face names), checking every shape and dtype against the config.
     * Llama: {@code model.layers.{l}.mlp.{gate,up,down}_proj.weight}, and with {@code "mlp_bias": true} also
     * {@code ...mlp.{gate,up,down}_proj.bias} (intermediate_size, intermediate_size, hidden_size). Mixtral:
     * {@code model.layers.{l}.block_sparse_moe.gate.weight} (E, d) and {@code ...experts.{e}.w1/w3.weight} (I_e, d),
     * {@code w2.weight} (d, I_e); with {@code "dive_expert_bias": true} also {@code ...experts.{e}.bias} (d), which must
     * then be present for every expert (and are refused without the flag, so nothing is silently ignored).
     *
     * @param weights  name → tensor, null when the name is absent
     * @param source   the checkpoint's name for error messages (a folder)
     * @param resource closed by {@link #close()} (e.g. the open checkpoint); may be null
     * @throws ModelException naming the tensor, the expected and the actual shape or dtype
     */
    public static LlamaModel fromWeights(LlamaConfig config, Function<String, Tensor> weights, String source,
                                         Backend backend, AutoCloseable resource) {
        boolean moe = config.modelType().equals("mixtral"), qwen2 = config.isQwen2Moe();
        if (!moe && !qwen2 && !config.modelType().equals("llama"))
            throw new ModelException(source + ": model_type '" + config.modelType() + "' is not supported (expected llama, mixtral or qwen2_moe)");
        if (moe && config.moe() == null)
            throw new ModelException(source + ": model_type mixtral without its expert fields (num_local_experts, num_experts_per_tok)");
        if (qwen2 && (config.moe() == null || !config.moe().hasSharedExpert()))
            throw new ModelException(source + ": model_type qwen2_moe without its expert fields (num_experts, num_experts_per_tok, shared_expert_intermediate_size)");
        int d = config.hiddenSize(), ffn = config.intermediateSize(), vocab = config.vocabSize();
        int qDim = config.queryDim(), kvDim = config.kvDim();
        WeightReader w = new WeightReader(weights, source);
        Tensor embed = w.get("model.embed_tokens.weight", "vocab_size, hidden_size", vocab, d);
        Layer[] layers = new Layer[config.numHiddenLayers()];
        for (int l = 0; l < layers.length; l++) {
            String p = "model.layers." + l + ".";
            layers[l] = new Layer(
                    w.get(p + "input_layernorm.weight", "hidden_size", d),
                    w.get(p + "self_attn.q_proj.weight", "num_attention_heads·head_dim, hidden_size", qDim, d),
                    w.get(p + "self_attn.k_proj.weight", "num_key_value_heads·head_dim, hidden_size", kvDim, d),
                    w.get(p + "self_attn.v_proj.weight", "num_key_value_heads·head_dim, hidden_size", kvDim, d),
                    w.get(p + "self_attn.o_proj.weight", "hidden_size, num_attention_heads·head_dim", d, qDim),
                    w.get(p + "post_attention_layernorm.weight", "hidden_size", d),
                    moe ? moeBlock(config, w, weights, source, p) : qwen2 ? sharedExpertBlock(config, w, weights, source, p)
                            : denseBlock(config, w, weights, source, p));
        }
        Tensor norm = w.get("model.norm.weight", "hidden_size", d);
        Tensor head;
        if (config.tieWordEmbeddings()) {
            head = embed;
        } else if (weights.apply("lm_head.weight") == null) {
            throw new ModelException(source + ": tensor 'lm_head.weight' is missing (config.json has tie_word_embeddings false)");
        } else {
            head = w.get("lm_head.weight", "vocab_size, hidden_size", vocab, d);
        }
        return new LlamaModel(config, backend, source, embed, layers, norm, head, resource);
    }

    /**
     * Llama's MLP of layer prefix {@code p}, shapes checked against the config; with {@code mlp_bias: true} the three
     * projection biases must be present, without it they are refused (never silently ignored)
     */
    private static DenseFfn denseBlock(LlamaConfig config, WeightReader w, Function<String, Tensor> weights, String source, String p) {
        int d = config.hiddenSize(), ffn = config.intermediateSize();
        String m = p + "mlp.";
        Tensor gate = w.get(m + "gate_proj.weight", "intermediate_size, hidden_size", ffn, d);
        Tensor up = w.get(m + "up_proj.weight", "intermediate_size, hidden_size", ffn, d);
        Tensor down = w.get(m + "down_proj.weight", "hidden_size, intermediate_size", d, ffn);
        if (!config.mlpBias()) {
            for (String name : new String[] {"gate_proj.bias", "up_proj.bias", "down_proj.bias"})
                if (weights.apply(m + name) != null)
                    throw new ModelException(source + ": tensor '" + m + name + "' is present but config.json does not set "
                            + "\"mlp_bias\": true (refusing to ignore it)");
            return new DenseFfn(gate, up, down);
        }
        return new DenseFfn(gate, up, down,
                w.get(m + "gate_proj.bias", "intermediate_size (mlp_bias)", ffn),
                w.get(m + "up_proj.bias", "intermediate_size (mlp_bias)", ffn),
                w.get(m + "down_proj.bias", "hidden_size (mlp_bias)", d));
    }

    /** Mixtral's block_sparse_moe of layer prefix {@code p}, shapes checked against the config */
    private static MoeFfn moeBlock(LlamaConfig config, WeightReader w, Function<String, Tensor> weights, String source, String p) {
        int d = config.hiddenSize(), ffn = config.intermediateSize(), experts = config.moe().numLocalExperts();
        boolean biased = config.moe().expertBias();
        String m = p + "block_sparse_moe.";
        Tensor router = w.get(m + "gate.weight", "num_local_experts, hidden_size", experts, d);
        Tensor[][] proj = expertProjections(w, m, experts, ffn, d, "intermediate_size", "w1", "w3", "w2");
        Tensor[] bias = biased ? new Tensor[experts] : null;
        for (int e = 0; e < experts; e++) {
            String ep = m + "experts." + e + ".";
            if (biased) bias[e] = w.get(ep + "bias", "hidden_size (dive_expert_bias)", d);
            else if (weights.apply(ep + "bias") != null)
                throw new ModelException(source + ": tensor '" + ep + "bias' is present but config.json does not set "
                        + "\"dive_expert_bias\": true (expert biases are this engine's extension; refusing to ignore them)");
        }
        if (weights.apply(m + "experts." + experts + ".w1.weight") != null)
            throw new ModelException(source + ": tensor '" + m + "experts." + experts + ".w1.weight' exists but config.json has num_local_experts "
                    + experts + " (expected experts 0.." + (experts - 1) + ")");
        return new MoeFfn(router, proj[0], proj[1], proj[2], bias, config.moe().numExpertsPerTok());
    }

    /**
     * every expert's gate (ffn, d), up (ffn, d) and down (d, ffn) projection, {@code m + "experts.{e}." + name + ".weight"}
     * for the three names given in that order; {@code width} names ffn in messages → [gate, up, down][expert]
     */
    private static Tensor[][] expertProjections(WeightReader w, String m, int experts, int ffn, int d, String width, String gate,
                                                String up, String down) {
        Tensor[][] out = new Tensor[3][experts];
        for (int e = 0; e < experts; e++) {
            String ep = m + "experts." + e + ".";
            out[0][e] = w.get(ep + gate + ".weight", width + ", hidden_size", ffn, d);
            out[1][e] = w.get(ep + up + ".weight", width + ", hidden_size", ffn, d);
            out[2][e] = w.get(ep + down + ".weight", "hidden_size, " + width, d, ffn);
        }
        return out;
    }

    /**
     * Qwen2-MoE's mlp of layer prefix {@code p}: {@code mlp.gate.weight} (E, d), {@code mlp.experts.{e}.gate_proj/up_proj.weight}
     * (I_e, d), {@code down_proj.weight} (d, I_e), {@code mlp.shared_expert.gate_proj/up_proj.weight} (I_s, d),
     * {@code down_proj.weight} (d, I_s), {@code mlp.shared_expert_gate.weight} (1, d); shapes checked against the config
     */
    private static SharedExpertMoeFfn sharedExpertBlock(LlamaConfig config, WeightReader w, Function<String, Tensor> weights, String source, String p) {
        int d = config.hiddenSize(), ffn = config.intermediateSize(), experts = config.moe().numLocalExperts();
        int shared = config.moe().sharedExpertIntermediateSize();
        String m = p + "mlp.";
        Tensor router = w.get(m + "gate.weight", "num_experts, hidden_size", experts, d);
        Tensor[][] proj = expertProjections(w, m, experts, ffn, d, "moe_intermediate_size", "gate_proj", "up_proj", "down_proj");
        String s = m + "shared_expert.";
        DenseFfn sharedExpert = new DenseFfn(
                w.get(s + "gate_proj.weight", "shared_expert_intermediate_size, hidden_size", shared, d),
                w.get(s + "up_proj.weight", "shared_expert_intermediate_size, hidden_size", shared, d),
                w.get(s + "down_proj.weight", "hidden_size, shared_expert_intermediate_size", d, shared));
        Tensor sharedGate = w.get(m + "shared_expert_gate.weight", "1, hidden_size", 1, d);
        return new SharedExpertMoeFfn(new MoeFfn(router, proj[0], proj[1], proj[2], null, config.moe().numExpertsPerTok()), sharedExpert, sharedGate);
    }

    public LlamaConfig config() { return config; }

    /**
     * This dense model with every layer's feed-forward block replaced ({@code ffns[l]} for layer l): attention,
     * embeddings, norms and lm_head are this model's own tensors (shared, not copied), so the new model is valid
     * while this one is open; closing it closes nothing. Used for pruned models (narrower FFNs, optional bias).
     *
     * @param config this config with {@code intermediate_size} = every block's width (everything else equal)
     * @throws ModelException naming the layer whose block does not fit the config
     */
    public LlamaModel withFeedForwards(LlamaConfig config, FeedForward[] ffns, String source) {
        if (isMoe() || config.moe() != null) throw new ModelException(source + ": replacing feed-forward blocks is for dense (llama) models");
        if (ffns.length != layers.length) throw new ModelException(source + ": " + ffns.length + " feed-forward blocks for " + layers.length + " layers");
        if (config.hiddenSize() != this.config.hiddenSize() || config.numHiddenLayers() != this.config.numHiddenLayers()
                || config.vocabSize() != this.config.vocabSize() || config.queryDim() != this.config.queryDim() || config.kvDim() != this.config.kvDim())
            throw new ModelException(source + ": config " + config + " differs from " + this.config + " in more than intermediate_size");
        int d = config.hiddenSize(), ffn = config.intermediateSize();
        Layer[] out = new Layer[layers.length];
        for (int l = 0; l < layers.length; l++) {
            if (!(ffns[l] instanceof DenseFfn dense) || dense.gate().rows() != ffn || dense.gate().cols() != d
                    || dense.up().rows() != ffn || dense.up().cols() != d || dense.down().rows() != d || dense.down().cols() != ffn)
                throw new ModelException(source + ": layer " + l + " feed-forward block " + ffns[l]
                        + " is not a dense block of intermediate_size " + ffn + " and hidden_size " + d);
            Layer layer = layers[l];
            out[l] = new Layer(layer.inputNorm, layer.wq, layer.wk, layer.wv, layer.wo, layer.postAttentionNorm, ffns[l]);
        }
        return new LlamaModel(config, backend, source, tokenEmbedding, out, finalNorm, lmHead, null);
    }


    /** true for a Mixtral (sparse MoE) model */
    public boolean isMoe() { return config.moe() != null; }

    /** the feed-forward block of layer {@code l}: a {@link DenseFfn}, a {@link MoeFfn} or a {@link SharedExpertMoeFfn} */
    public FeedForward feedForward(int l) { return layers[l].ffn; }

    /**
     * Every weight under its Hugging Face name, in checkpoint order (embeddings, layers, final norm, lm_head —
     * absent when tied). The tensors are the model's own views: valid while the model is open.
     */
    public java.util.LinkedHashMap<String, Tensor> namedWeights() {
        var out = new java.util.LinkedHashMap<String, Tensor>();
        out.put("model.embed_tokens.weight", tokenEmbedding);
        for (int l = 0; l < layers.length; l++) {
            Layer layer = layers[l];
            String p = "model.layers." + l + ".";
            out.put(p + "input_layernorm.weight", layer.inputNorm);
            out.put(p + "self_attn.q_proj.weight", layer.wq);
            out.put(p + "self_attn.k_proj.weight", layer.wk);
            out.put(p + "self_attn.v_proj.weight", layer.wv);
            out.put(p + "self_attn.o_proj.weight", layer.wo);
            out.put(p + "post_attention_layernorm.weight", layer.postAttentionNorm);
            layer.ffn.collectWeights(p, out);
        }
        out.put("model.norm.weight", finalNorm);
        if (!config.tieWordEmbeddings()) out.put("lm_head.weight", lmHead);
        return out;
    }

    public Backend backend() { return backend; }

    /** where the weights came from (for messages) */
    public String source() { return source; }

    /** a fresh per-sequence cache for up to {@code capacity} positions (prompt plus generated tokens) */
    public KVCache newCache(int capacity) { return new KVCache(config, capacity, backend); }

    /** logits of every position of one fresh sequence → (T, vocab) */
    public float[] logits(int[] ids) {
        return forward(ids, newCache(Math.max(1, ids.length)));
    }

    /**
     * Runs {@code ids} after what {@code cache} holds and appends them to it.
     * ids (T) → logits (T, vocab), row t predicting the token after ids[t].
     */
    public float[] forward(int[] ids, KVCache cache) {
        return run(new int[][] {ids}, new KVCache[] {cache}, true, null)[0];
    }

    /** {@link #forward} with a routing observer (may be null), called once per MoE layer */
    public float[] forward(int[] ids, KVCache cache, RoutingObserver observer) {
        return run(new int[][] {ids}, new KVCache[] {cache}, true, observer)[0];
    }

    /** like {@link #forward} but computes only the last position's logits → (vocab) */
    public float[] forwardLast(int[] ids, KVCache cache) {
        return run(new int[][] {ids}, new KVCache[] {cache}, false, null)[0];
    }

    /**
     * Batched prefill/decode: B sequences (lengths may differ), each after its own cache, through one set of matmuls
     * over all B·T rows. → per sequence: logits (T_b, vocab) when {@code allPositions}, else (vocab) of its last token.
     */
    public float[][] forwardBatch(int[][] ids, KVCache[] caches, boolean allPositions) {
        return run(ids, caches, allPositions, null);
    }

    /** {@link #forwardBatch} with a routing observer (may be null); its rows are the B sequences' tokens concatenated */
    public float[][] forwardBatch(int[][] ids, KVCache[] caches, boolean allPositions, RoutingObserver observer) {
        return run(ids, caches, allPositions, observer, true, null, null);
    }

    /**
     * Runs a batch as {@link #forwardBatch} for what {@code observer} sees alone (calibration): no final norm, no LM
     * head, no logits; the caches are appended to as usual.
     */
    public void observe(int[][] ids, KVCache[] caches, RoutingObserver observer) {
        run(ids, caches, false, observer, false, null, null);
    }

    /**
     * Each sequence's summed cross-entropy (nats) against {@code targets}, formed on the backend so only the B sums come
     * back, not the logits: ids[b] (T_b) run after caches[b] as in {@link #forwardBatch}; targets[b] (T_b) is the id
     * position t should predict, {@link Backend#IGNORE_INDEX} where none is counted. → (B) Σ over counted positions of
     * −log softmax(logits)[target] (0 where none is counted); {@code observer} may be null.
     */
    public double[] crossEntropySums(int[][] ids, int[][] targets, KVCache[] caches, RoutingObserver observer) {
        if (targets.length != ids.length) throw new IllegalArgumentException(ids.length + " sequences but " + targets.length + " target rows");
        for (int b = 0; b < ids.length; b++)
            if (targets[b] == null || ids[b] == null || targets[b].length != ids[b].length)
                throw new IllegalArgumentException("sequence " + b + ": " + (ids[b] == null ? 0 : ids[b].length) + " tokens but "
                        + (targets[b] == null ? 0 : targets[b].length) + " targets");
        double[] sums = new double[ids.length];
        run(ids, caches, true, observer, false, targets, sums);
        return sums;
    }

    private float[][] run(int[][] ids, KVCache[] caches, boolean allPositions, RoutingObserver observer) {
        return run(ids, caches, allPositions, observer, true, null, null);
    }

    private float[][] run(int[][] ids, KVCache[] caches, boolean allPositions, RoutingObserver observer, boolean logitsOut,
                          int[][] targets, double[] lossSums) {
        int batch = ids.length;
        if (caches.length != batch) throw new IllegalArgumentException(batch + " sequences but " + caches.length + " KV caches");
        int d = config.hiddenSize(), vocab = config.vocabSize();
        int heads = config.numAttentionHeads(), kvHeads = config.numKeyValueHeads(), hd = config.headDim();
        int qDim = config.queryDim(), kvDim = config.kvDim();
        float eps = (float) config.rmsNormEps();
        float scale = (float) (1.0 / Math.sqrt(hd));

        // check everything before touching any cache
        int[] rowStart = new int[batch + 1];   // sequence b owns rows rowStart[b] .. rowStart[b+1)
        IdentityHashMap<KVCache, Integer> seen = new IdentityHashMap<>();
        for (int b = 0; b < batch; b++) {
            int[] seq = ids[b];
            KVCache cache = caches[b];
            if (seq == null || seq.length == 0) throw new IllegalArgumentException("sequence " + b + " has no tokens");
            if (cache == null) throw new IllegalArgumentException("sequence " + b + " has no KV cache");
            if (cache.numLayers != layers.length || cache.kvDim != kvDim)
                throw new IllegalArgumentException("KV cache of sequence " + b + " was made for another model (" + cache.numLayers
                        + " layers × " + cache.kvDim + " kv width, expected " + layers.length + " × " + kvDim + ")");
            if (seen.put(cache, b) != null) throw new IllegalArgumentException("sequences " + seen.get(cache) + " and " + b + " share one KV cache");
            if (cache.length + seq.length > cache.capacity)
                throw new IllegalStateException("KV cache of sequence " + b + " is full: " + cache.length + " positions + " + seq.length
                        + " new tokens exceed its capacity " + cache.capacity);
            for (int t = 0; t < seq.length; t++)
                if (seq[t] < 0 || seq[t] >= vocab)
                    throw new IllegalArgumentException("token id " + seq[t] + " (sequence " + b + ", position " + t
                            + ") is outside the vocabulary [0, " + vocab + ") of " + source);
            if (cache.length + seq.length > config.maxPositionEmbeddings())
                throw new IllegalArgumentException(source + ": sequence " + b + " would reach position " + (cache.length + seq.length - 1)
                        + " but config.json max_position_embeddings " + config.maxPositionEmbeddings() + " allows positions 0.."
                        + (config.maxPositionEmbeddings() - 1));
            if (config.slidingWindow() > 0 && cache.length + seq.length > config.slidingWindow())
                throw new UnsupportedOperationException(source + ": sequence " + b + " reaches position " + (cache.length + seq.length - 1)
                        + " but sliding-window attention (config.json sliding_window " + config.slidingWindow()
                        + ") is not implemented; positions below the window are exact");
            rowStart[b + 1] = Math.addExact(rowStart[b], seq.length);
        }
        int rows = rowStart[batch];
        int[] allIds = new int[rows];
        int[] positions = new int[rows];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < ids[b].length; t++) {
                allIds[rowStart[b] + t] = ids[b][t];
                positions[rowStart[b] + t] = caches[b].length + t;
            }

        // edges in: token ids and their positions; everything below stays on the backend until the logits
        try (DeviceScope w = new DeviceScope(backend)) {
            DeviceTensor idsOnDevice = w.keep(backend.upload(allIds));
            DeviceTensor positionsOnDevice = w.keep(backend.upload(positions));
            DeviceTensor x = w.floats((long) rows * d);          // residual stream (N, D)
            DeviceTensor xn = w.floats((long) rows * d);         // normalized (N, D)
            DeviceTensor q = w.floats((long) rows * qDim);       // (N, heads, hd)
            DeviceTensor k = w.floats((long) rows * kvDim);      // (N, kvHeads, hd)
            DeviceTensor v = w.floats((long) rows * kvDim);      // (N, kvHeads, hd)
            DeviceTensor att = w.floats((long) rows * qDim);     // (N, heads, hd)
            DeviceTensor proj = w.floats((long) rows * d);       // (N, D)
            DeviceTensor qb = batch == 1 ? null : w.floats((long) rowsOfLongest(rowStart) * qDim);   // one sequence's q
            DeviceTensor outB = batch == 1 ? null : w.floats((long) rowsOfLongest(rowStart) * qDim); // and its attention
            FeedForward.Scratch ffnScratch = w.keep(new FeedForward.Scratch(backend));

            backend.embedding(x, tokenEmbedding, idsOnDevice, rows);
            for (int l = 0; l < layers.length; l++) {
                Layer layer = layers[l];
                // attention block
                backend.rmsNorm(xn, x, layer.inputNorm, rows, eps);
                backend.matmul(q, xn, rows, layer.wq);
                backend.matmul(k, xn, rows, layer.wk);
                backend.matmul(v, xn, rows, layer.wv);
                backend.rope(q, rows, heads, hd, positionsOnDevice, invFreq);
                backend.rope(k, rows, kvHeads, hd, positionsOnDevice, invFreq);
                for (int b = 0; b < batch; b++) {
                    KVCache cache = caches[b];
                    int r0 = rowStart[b], T = rowStart[b + 1] - r0;
                    backend.copy(cache.keys[l], (long) cache.length * kvDim, k, (long) r0 * kvDim, (long) T * kvDim);
                    backend.copy(cache.values[l], (long) cache.length * kvDim, v, (long) r0 * kvDim, (long) T * kvDim);
                    if (batch == 1) {
                        backend.attention(att, q, cache.keys[l], cache.values[l], T, cache.length, heads, kvHeads, hd, scale);
                    } else {
                        backend.copy(qb, 0, q, (long) r0 * qDim, (long) T * qDim);  // (T, heads, hd)
                        backend.attention(outB, qb, cache.keys[l], cache.values[l], T, cache.length, heads, kvHeads, hd, scale);
                        backend.copy(att, (long) r0 * qDim, outB, 0, (long) T * qDim);
                    }
                }
                backend.matmul(proj, att, rows, layer.wo);
                backend.add(x, proj, rows * d);
                // feed-forward block: SwiGLU MLP or sparse MoE
                backend.rmsNorm(xn, x, layer.postAttentionNorm, rows, eps);
                if (observer != null) observer.onFfnInput(backend, l, rows, d, xn);
                layer.ffn.forward(backend, proj, xn, rows, l, ffnScratch, observer);
                backend.add(x, proj, rows * d);
            }
            for (int b = 0; b < batch; b++) caches[b].length += ids[b].length;

            // edge out: the logits
            float[][] out = new float[batch][];
            if (!logitsOut && targets == null) return null;
            if (allPositions) {
                backend.rmsNorm(xn, x, finalNorm, rows, eps);
                DeviceTensor logits = w.floats(Math.multiplyExact((long) rows, vocab));  // (N, vocab)
                backend.matmul(logits, xn, rows, lmHead);
                if (targets != null) {  // edge out: one loss per sequence
                    for (int b = 0; b < batch; b++) {
                        int T = rowStart[b + 1] - rowStart[b];
                        int counted = 0;
                        for (int t : targets[b]) if (t != Backend.IGNORE_INDEX) counted++;
                        if (counted == 0) continue;
                        DeviceTensor rowsOfB = batch == 1 ? logits : w.floats((long) T * vocab);
                        if (batch > 1) backend.copy(rowsOfB, 0, logits, (long) rowStart[b] * vocab, (long) T * vocab);
                        lossSums[b] = backend.crossEntropy(null, rowsOfB, w.upload(targets[b]), T, vocab, 1f) * counted;
                    }
                    return null;
                }
                for (int b = 0; b < batch; b++) {
                    out[b] = new float[(rowStart[b + 1] - rowStart[b]) * vocab];
                    backend.read(logits, (long) rowStart[b] * vocab, out[b], out[b].length);
                }
            } else {
                DeviceTensor last = w.floats((long) batch * d);  // the last row of each sequence (B, D)
                for (int b = 0; b < batch; b++) backend.copy(last, (long) b * d, x, (long) (rowStart[b + 1] - 1) * d, d);
                backend.rmsNorm(last, last, finalNorm, batch, eps);
                DeviceTensor logits = w.floats((long) batch * vocab);  // (B, vocab)
                backend.matmul(logits, last, batch, lmHead);
                for (int b = 0; b < batch; b++) {
                    out[b] = new float[vocab];
                    backend.read(logits, (long) b * vocab, out[b], vocab);
                }
            }
            return out;
        }
    }

    private static int rowsOfLongest(int[] rowStart) {
        int most = 0;
        for (int b = 0; b + 1 < rowStart.length; b++) most = Math.max(most, rowStart[b + 1] - rowStart[b]);
        return most;
    }

    /** closes the checkpoint the weights live in; the model must not be used afterwards */
    @Override
    public void close() throws Exception {
        if (resource != null) resource.close();
    }

    @Override public String toString() { return "LlamaModel[" + source + ", " + config + ", backend " + backend.name() + "]"; }

    /** looks up and checks weights */
    private record WeightReader(Function<String, Tensor> weights, String source) {
        Tensor get(String name, String meaning, long... expected) {
            Tensor t = weights.apply(name);
            if (t == null) throw new ModelException(source + ": tensor '" + name + "' is missing (expected shape "
                    + Arrays.toString(expected) + " = [" + meaning + "])");
            if (t.dtype() != DType.F32 && t.dtype() != DType.BF16 && t.dtype() != DType.F16)
                throw new ModelException(source + ": tensor '" + name + "' has dtype " + t.dtype() + " (expected F32, BF16 or F16)");
            if (!Arrays.equals(t.shape(), expected))
                throw new ModelException(source + ": tensor '" + name + "' has shape " + Arrays.toString(t.shape())
                        + ", expected " + Arrays.toString(expected) + " = [" + meaning + "]");
            return t;
        }
    }
}
