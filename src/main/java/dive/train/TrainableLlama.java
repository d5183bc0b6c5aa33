package dive.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.backend.Backend;
import dive.backend.DeviceScope;
import dive.backend.DeviceTensor;
import dive.io.Checkpoint;
import dive.io.SafetensorsWriter;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.MixtralExport;
import dive.model.Qwen2MoeExport;
import dive.model.RopeFrequencies;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Function;

/**
 * A dense Llama ({@code LlamaForCausalLM}) whose weights are trainable F32 {@link Parameter}s named as in
 * Hugging Face checkpoints, with an llm.c-style training step: one forward over the batch that keeps what
 * the backward needs (per layer: its input, the normalized inputs, q and k after RoPE, v, the attention
 * output, the MLP's gate, up and SwiGLU output), then the backward layer by layer in reverse, all through
 * {@link Backend} ops.
 *
 * <pre>
 * x = embed(ids)                                               // (N = B·T, D)
 * per layer: x += o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = rmsNorm(x, input_layernorm)
 *            x += down_proj(silu(gate_proj(n2)) · up_proj(n2))                     n2 = rmsNorm(x, post_attention_layernorm)
 *                 (with mlp_bias each of the three adds its bias, a trainable Parameter {@code mlp.*_proj.bias})
 * logits = lm_head(rmsNorm(x, model.norm)); loss = mean cross-entropy against the next tokens
 * </pre>
 * Tied embeddings ({@code tie_word_embeddings}) are one Parameter serving as embedding and LM head; both
 * gradients add into it. LoRA ({@link #addLora}) puts y += (α/r)·(dropout(x)·Aᵀ)·Bᵀ on chosen linear modules.
 * <p>A Mixtral config ({@code model_type mixtral}) makes every layer's FFN a sparse MoE block ({@link MoeBlock}:
 * router {@code block_sparse_moe.gate.weight} (E, d), experts {@code experts.{e}.w1/w3} (I_e, d), {@code w2} (d, I_e),
 * optional {@code experts.{e}.bias} (d)), routed top-k or soft ({@link #setRouting}), with Mixtral's optional
 * load-balancing loss ({@link #setAuxLossCoef}); LoRA may target the experts' w1/w2/w3; {@link #saveCheckpoint} then
 * writes a Mixtral folder. A Qwen2-MoE config ({@code model_type qwen2_moe}) makes it an MoE block with a sigmoid-gated
 * shared expert ({@code mlp.gate.weight}, {@code mlp.experts.{e}.gate_proj/up_proj/down_proj},
 * {@code mlp.shared_expert.*_proj}, {@code mlp.shared_expert_gate.weight}); LoRA targets gate_proj/up_proj/down_proj
 * reach routed and shared experts alike; {@link #saveCheckpoint} writes a Qwen2-MoE folder ({@link Qwen2MoeExport}).
 * DIVE stages: {@link #prepareStage0}, {@link #prepareStage1}.
 *
 * <p>Not thread-safe: one training step at a time (the backend parallelizes inside each op).
 */
public final class TrainableLlama implements TrainableModel, AutoCloseable {

    /** transformers' default {@code initializer_range} */
    public static final double DEFAULT_INIT_STD = 0.02;

    /**
     * LoRA adapters as PEFT's LoraConfig: rank r, alpha (scale α/r), dropout p on the adapter's input
     * (training only, mask drawn from {@code seed} and the step number), target module names
     * (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; w1, w2, w3 for the experts of MoE layers).
     */
    public record LoraConfig(int rank, double alpha, double dropout, Set<String> targetModules, long seed) {
        /** the Llama projections, and Mixtral's expert linears w1 (gate), w3 (up), w2 (down) of every expert */
        public static final Set<String> MODULES = Set.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                "w1", "w2", "w3");

        public LoraConfig {
            if (rank < 1) throw new IllegalArgumentException("LoRA rank must be ≥ 1, got " + rank);
            if (!(dropout >= 0 && dropout < 1)) throw new IllegalArgumentException("LoRA dropout must be in [0, 1), got " + dropout);
            if (targetModules.isEmpty()) throw new IllegalArgumentException("LoRA target modules: none given (expected some of " + MODULES + ")");
            for (String m : targetModules)
                if (!MODULES.contains(m)) throw new IllegalArgumentException("LoRA target module '" + m + "' is not one of " + MODULES);
            targetModules = Set.copyOf(targetModules);
        }
    }

    /** y (N, out) = x (N, in) · Wᵀ [+ bias] [+ (α/r)·(dropout(x)·Aᵀ)·Bᵀ] */
    static final class Linear {
        final Backend backend;
        final String module;  // "q_proj"
        final String path;    // "model.layers.0.self_attn.q_proj"
        final Parameter weight;
        final Parameter bias;   // (out), or null (Llama's MLP with mlp_bias: true has one)
        final int in, out;
        Parameter loraA, loraB; // (r, in), (out, r); null without LoRA
        float loraScale;
        double dropout;

        Linear(Backend backend, String module, String path, Parameter weight) { this(backend, module, path, weight, null); }

        Linear(Backend backend, String module, String path, Parameter weight, Parameter bias) {
            this.backend = backend;
            this.module = module;
            this.path = path;
            this.weight = weight;
            this.bias = bias;
            this.out = weight.value().rows();
            this.in = weight.value().cols();
            if (bias != null && bias.numel() != out)
                throw new IllegalArgumentException("bias '" + bias.name() + "' has " + bias.numel() + " values, expected " + out);
        }

        /** what the backward needs of the adapter: its (dropped-out) input and (α/r)·x·Aᵀ */
        final class Saved {
            DeviceTensor mask;         // (N, in) 0 or 1/(1−p); null without dropout
            DeviceTensor xDropped;     // (N, in)
            DeviceTensor scaledU;      // (N, r)
        }

        /** y (rows, out) = the layer of x (rows, in); temporaries and what the backward keeps live in {@code scope} */
        Saved forward(DeviceTensor y, DeviceTensor x, int rows, Dropout dropoutDraws, DeviceScope scope) {
            backend.matmul(y, x, rows, weight.value());
            if (bias != null) backend.addBias(y, rows, bias.value());
            if (loraA == null) return null;
            Saved s = new Saved();
            int r = loraA.value().rows();
            s.xDropped = x;
            if (dropoutDraws != null && dropout > 0) {
                s.mask = scope.floats((long) rows * in);
                s.xDropped = scope.floats((long) rows * in);
                dropoutDraws.apply(backend, s.mask, s.xDropped, x, rows * in, dropout);
            }
            s.scaledU = scope.floats((long) rows * r);
            backend.matmul(s.scaledU, s.xDropped, rows, loraA.value());
            backend.scale(s.scaledU, loraScale, rows * r);
            try (DeviceTensor delta = backend.allocate(dive.tensor.DType.F32, (long) rows * out)) {  // freed now, not with the step
                backend.matmul(delta, s.scaledU, rows, loraB.value());
                backend.add(y, delta, rows * out);
            }
            return s;
        }

        /** true when the weight, the bias or a LoRA adapter is trainable */
        boolean hasTrainable() {
            return weight.trainable() || bias != null && bias.trainable() || loraA != null && (loraA.trainable() || loraB.trainable());
        }

        /** dx (N, in) = (or +=, when accumulate) ∂/∂x; weight gradients added into trainable parameters */
        void backward(DeviceTensor dx, boolean accumulate, DeviceTensor dy, DeviceTensor x, int rows, Saved s, DeviceScope scope) {
            if (weight.trainable()) backend.matmulBackwardWeight(weight.grad(backend), dy, x, rows, out, in);
            if (bias != null && bias.trainable()) backend.biasBackward(bias.grad(backend), dy, rows, out);  // dbias += Σ_n dy[n]
            DeviceTensor dxPart = accumulate ? scope.floats((long) rows * in) : dx;
            backend.matmulBackwardInput(dxPart, dy, rows, weight.value());
            if (loraA != null) {
                int r = loraA.value().rows();
                if (loraB.trainable()) backend.matmulBackwardWeight(loraB.grad(backend), dy, s.scaledU, rows, out, r);
                DeviceTensor du = scope.floats((long) rows * r); // ∂/∂(x·Aᵀ) = (α/r)·dy·B
                backend.matmulBackwardInput(du, dy, rows, loraB.value());
                backend.scale(du, loraScale, rows * r);
                if (loraA.trainable()) backend.matmulBackwardWeight(loraA.grad(backend), du, s.xDropped, rows, r, in);
                DeviceTensor dxLora = scope.floats((long) rows * in);
                backend.matmulBackwardInput(dxLora, du, rows, loraA.value());
                if (s.mask != null) backend.multiply(dxLora, s.mask, rows * in);
                backend.add(dxPart, dxLora, rows * in);
            }
            if (accumulate) backend.add(dx, dxPart, rows * in);
        }
    }

    /**
     * LoRA dropout draws of one training step: the stream of {@code new SplittableRandom(seed)}, consumed in call
     * order; the backend draws on the device ({@link Backend#dropout}) and the host keeps only the count.
     */
    static final class Dropout {
        final long seed;
        long drawn;

        Dropout(long seed) { this.seed = seed; }

        /** skips n draws (made on the device by an op that numbers its own) */
        void advance(long n) { drawn += n; }

        /** mask and xDropped (n) for x (n) with probability p, from the next n draws */
        void apply(Backend backend, DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, int n, double p) {
            backend.dropout(mask, xDropped, x, n, seed, drawn, p);
            drawn += n;
        }
    }

    /** a decoder layer; its FFN is dense (gate, up, down) or an MoE block (moe; gate, up, down null) */
    private record Layer(Parameter inputNorm, Linear q, Linear k, Linear v, Linear o,
                         Parameter postAttentionNorm, Linear gate, Linear up, Linear down, MoeBlock moe) {
        List<Linear> linears() {
            List<Linear> all = new ArrayList<>(List.of(q, k, v, o));
            if (moe == null) all.addAll(List.of(gate, up, down));
            else all.addAll(moe.linears());
            return all;
        }
    }

    /** the activations of one layer kept for the backward, all (N, ·) */
    private static final class LayerActivations {
        DeviceTensor xIn, xn1, q, k, v, att, xMid, xn2, gate, up, h;
        Linear.Saved sq, sk, sv, so, sGate, sUp, sDown;
        MoeBlock.Saved moe;
    }

    private final LlamaConfig config;
    private final Backend backend;
    /** the F32 copies of trained weights and merged LoRA weights: freed by {@link #close} (or once the model is unreachable) */
    private final TensorArena arena = TensorArena.shared();
    private volatile AutoCloseable checkpoint;  // the mapped source weights (fromCheckpoint), closed with the model
    private final DeviceTensor invFreq;  // (headDim / 2) on the backend
    private final double initStd;
    private final Parameter embed;   // (vocab, D)
    private final Layer[] layers;
    private final Parameter finalNorm; // (D)
    private final Parameter lmHead;  // (vocab, D); == embed when tied
    private final List<Parameter> parameters = new ArrayList<>();
    private LoraConfig lora;
    private Map<Parameter, Boolean> trainableBeforeLora;
    private long trainingSteps;      // counts lossAndGradients calls (dropout masks)
    private RoutingMode routing = RoutingMode.TOP_K;
    private double auxLossCoef;      // 0: no load-balancing loss
    private int[][] lastExpertLoad;  // (layers, E) top-k assignments of the last training batch; null rows for dense layers
    private double lastAuxLoss = Double.NaN, lastLmLoss = Double.NaN;

    private TrainableLlama(LlamaConfig config, Backend backend, double initStd, Function<String, Tensor> source) {
        boolean mixtral = config.modelType().equals("mixtral"), qwen2 = config.isQwen2Moe();
        if (!config.modelType().equals("llama") && !mixtral && !qwen2)
            throw new IllegalArgumentException("model_type '" + config.modelType() + "' is not a Llama, Mixtral or Qwen2-MoE model");
        if (mixtral && config.moe() == null) throw new IllegalArgumentException("model_type mixtral without its expert fields (num_local_experts, num_experts_per_tok)");
        if (qwen2 && (config.moe() == null || !config.moe().hasSharedExpert()))
            throw new IllegalArgumentException("model_type qwen2_moe without its expert fields (num_experts, num_experts_per_tok, shared_expert_intermediate_size)");
        this.config = config;
        this.backend = backend;
        this.initStd = initStd;
        CLEANER.register(this, new ArenaCloser(arena));
        this.invFreq = backend.upload(RopeFrequencies.of(config));
        this.embed = param("model.embed_tokens.weight", source);
        this.layers = new Layer[config.numHiddenLayers()];
        List<Parameter> layerParams = new ArrayList<>();
        for (int l = 0; l < layers.length; l++) {
            String p = "model.layers." + l + ".";
            // named_parameters() order of transformers: attention, MLP, then the two norms
            Linear q = linear("q_proj", p + "self_attn.q_proj", source), k = linear("k_proj", p + "self_attn.k_proj", source);
            Linear v = linear("v_proj", p + "self_attn.v_proj", source), o = linear("o_proj", p + "self_attn.o_proj", source);
            if (mixtral || qwen2) {
                MoeBlock moe = qwen2 ? sharedExpertBlock(p + "mlp", source) : moeBlock(p + "block_sparse_moe", source);
                layers[l] = new Layer(param(p + "input_layernorm.weight", source), q, k, v, o,
                        param(p + "post_attention_layernorm.weight", source), null, null, null, moe);
                for (Linear lin : List.of(q, k, v, o)) layerParams.add(lin.weight);
                layerParams.addAll(moe.parameters());
            } else {
                boolean bias = config.mlpBias();
                Linear gate = linear("gate_proj", p + "mlp.gate_proj", source, bias), up = linear("up_proj", p + "mlp.up_proj", source, bias);
                Linear down = linear("down_proj", p + "mlp.down_proj", source, bias);
                layers[l] = new Layer(param(p + "input_layernorm.weight", source), q, k, v, o,
                        param(p + "post_attention_layernorm.weight", source), gate, up, down, null);
                for (Linear lin : layers[l].linears()) {
                    layerParams.add(lin.weight);
                    if (lin.bias != null) layerParams.add(lin.bias);
                }
            }
            layerParams.add(layers[l].inputNorm);
            layerParams.add(layers[l].postAttentionNorm);
        }
        this.finalNorm = param("model.norm.weight", source);
        this.lmHead = config.tieWordEmbeddings() ? embed : param("lm_head.weight", source);
        parameters.add(embed);
        parameters.addAll(layerParams);
        parameters.add(finalNorm);
        if (lmHead != embed) parameters.add(lmHead);
    }

    private Linear linear(String module, String path, Function<String, Tensor> source) {
        return linear(module, path, source, false);
    }

    /** a Linear {@code path}.weight, with {@code path}.bias when {@code withBias} */
    private Linear linear(String module, String path, Function<String, Tensor> source, boolean withBias) {
        return new Linear(backend, module, path, param(path + ".weight", source), withBias ? param(path + ".bias", source) : null);
    }

    /** Mixtral's block_sparse_moe: gate.weight (E, d), experts.{e}.w1/w3 (I_e, d), w2 (d, I_e), bias (d) when declared */
    private MoeBlock moeBlock(String path, Function<String, Tensor> source) {
        int experts = config.moe().numLocalExperts();
        Parameter router = param(path + ".gate.weight", source);
        Linear[] w1 = new Linear[experts], w3 = new Linear[experts], w2 = new Linear[experts];
        Parameter[] bias = config.moe().expertBias() ? new Parameter[experts] : null;
        for (int e = 0; e < experts; e++) {
            String ep = path + ".experts." + e + ".";
            w1[e] = linear("w1", ep + "w1", source);
            w2[e] = linear("w2", ep + "w2", source);
            w3[e] = linear("w3", ep + "w3", source);
            if (bias != null) bias[e] = param(ep + "bias", source);
        }
        return new MoeBlock(backend, path, router, w1, w3, w2, bias, config.moe().numExpertsPerTok());
    }

    /**
     * Qwen2-MoE's mlp: gate.weight (E, d), experts.{e}.gate_proj/up_proj (I_e, d), down_proj (d, I_e),
     * shared_expert.gate_proj/up_proj (I_s, d), down_proj (d, I_s), shared_expert_gate.weight (1, d)
     */
    private MoeBlock sharedExpertBlock(String path, Function<String, Tensor> source) {
        int experts = config.moe().numLocalExperts();
        Parameter router = param(path + ".gate.weight", source);
        Linear[] gate = new Linear[experts], up = new Linear[experts], down = new Linear[experts];
        for (int e = 0; e < experts; e++) {
            String ep = path + ".experts." + e + ".";
            gate[e] = linear("gate_proj", ep + "gate_proj", source);
            up[e] = linear("up_proj", ep + "up_proj", source);
            down[e] = linear("down_proj", ep + "down_proj", source);
        }
        String sp = path + ".shared_expert.";
        return new MoeBlock(backend, path, router, gate, up, down, null, config.moe().numExpertsPerTok(),
                linear("gate_proj", sp + "gate_proj", source), linear("up_proj", sp + "up_proj", source),
                linear("down_proj", sp + "down_proj", source), param(path + ".shared_expert_gate.weight", source));
    }

    /**
     * a parameter over the source tensor: a view (no copy until it trains) when the source is read-only or not F32
     * (checkpoint weights), an F32 copy when it is writable F32 memory the caller may change (fresh initialisations)
     */
    private Parameter param(String name, Function<String, Tensor> source) {
        Tensor t = source.apply(name);
        return t.dtype() == DType.F32 && !t.data().isReadOnly() ? Parameter.copyOf(name, t, arena) : Parameter.view(name, t, arena);
    }

    /**
     * A new model with transformers' initialization: every Linear and the embedding ~ normal(0, initStd),
     * RMSNorm weights 1; one {@link Random} seeded with {@code seed} draws the tensors in parameter order.
     */
    public static TrainableLlama initialize(LlamaConfig config, Backend backend, long seed, double initStd) {
        Random random = new Random(seed);
        return new TrainableLlama(config, backend, initStd, name -> {
            long[] shape = expectedShape(config, name);
            float[] values = new float[Math.toIntExact(Tensor.numel(shape))];
            if (name.endsWith("norm.weight")) Arrays.fill(values, 1f);
            else if (name.endsWith(".bias")) Arrays.fill(values, 0f); // biases start at zero (expert output biases; MLP biases as transformers)
            else for (int i = 0; i < values.length; i++) values[i] = (float) (random.nextGaussian() * initStd);
            return Tensor.ofFloats(name, values, shape);
        });
    }

    public static TrainableLlama initialize(LlamaConfig config, Backend backend, long seed) {
        return initialize(config, backend, seed, DEFAULT_INIT_STD);
    }

    /**
     * A model over named weights (Hugging Face names; F32, BF16 or F16), each checked against the config as
     * {@link LlamaModel#fromWeights} does. Read-only weights are used in place, in their dtype, until they train (then
     * they become F32 copies, see {@link Parameter}); so {@code weights} must stay valid while the model is used.
     *
     * @throws dive.model.ModelException naming the missing or misshapen tensor
     */
    public static TrainableLlama copyOf(LlamaConfig config, Function<String, Tensor> weights, String source, Backend backend) {
        LlamaModel.fromWeights(config, weights, source, backend, null); // validates every name, shape and dtype
        return new TrainableLlama(config, backend, DEFAULT_INIT_STD, weights);
    }

    /**
     * a Hugging Face Llama or Mixtral folder ({@code config.json} + safetensors; Mixtral expert biases when config.json
     * declares {@code dive_expert_bias}) as a trainable model: the weights stay memory-mapped in their dtype and only
     * what trains becomes F32. The checkpoint stays mapped while the model is reachable.
     */
    public static TrainableLlama fromCheckpoint(Path dir, Backend backend) throws IOException {
        LlamaConfig config = LlamaConfig.load(dir);
        Checkpoint checkpoint = Checkpoint.open(dir);
        try {
            TrainableLlama model = copyOf(config, name -> checkpoint.has(name) ? checkpoint.tensor(name) : null, dir.toString(), backend);
            model.checkpoint = checkpoint;
            CLEANER.register(model, checkpoint::close);  // unmapped when the model is gone, if nobody closed it
            return model;
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
    }

    private static final java.lang.ref.Cleaner CLEANER = java.lang.ref.Cleaner.create();

    /** closes an arena once (the cleaner's action; refers to the arena, never to the model) */
    private record ArenaCloser(TensorArena arena) implements Runnable {
        @Override public void run() {
            try { arena.close(); } catch (IllegalStateException alreadyClosed) { /* closed by close() */ }
        }
    }

    /**
     * Frees the model's off-heap memory (F32 copies, merged weights) and unmaps its checkpoint now instead of when the
     * garbage collector notices: a conversion runs one model after another, each gigabytes at real sizes. The model
     * and every tensor it handed out must not be used afterwards.
     */
    @Override
    public void close() throws Exception {
        new ArenaCloser(arena).run();
        AutoCloseable c = checkpoint;
        checkpoint = null;
        if (c != null) c.close();
    }

    private static long[] expectedShape(LlamaConfig c, String name) {
        int d = c.hiddenSize(), f = c.intermediateSize();
        if (name.endsWith("norm.weight")) return new long[] {d};
        if (name.equals("model.embed_tokens.weight") || name.equals("lm_head.weight")) return new long[] {c.vocabSize(), d};
        if (name.endsWith("q_proj.weight")) return new long[] {c.queryDim(), d};
        if (name.endsWith("k_proj.weight") || name.endsWith("v_proj.weight")) return new long[] {c.kvDim(), d};
        if (name.endsWith("o_proj.weight")) return new long[] {d, c.queryDim()};
        if (c.isQwen2Moe() && c.moe() != null) {
            int shared = c.moe().sharedExpertIntermediateSize();
            if (name.endsWith(".mlp.gate.weight")) return new long[] {c.moe().numLocalExperts(), d};
            if (name.endsWith(".mlp.shared_expert_gate.weight")) return new long[] {1, d};
            if (name.endsWith(".shared_expert.gate_proj.weight") || name.endsWith(".shared_expert.up_proj.weight")) return new long[] {shared, d};
            if (name.endsWith(".shared_expert.down_proj.weight")) return new long[] {d, shared};
        }
        if (name.endsWith("gate_proj.weight") || name.endsWith("up_proj.weight")) return new long[] {f, d};
        if (name.endsWith("down_proj.weight")) return new long[] {d, f};
        if (name.endsWith("gate_proj.bias") || name.endsWith("up_proj.bias")) return new long[] {f};
        if (name.endsWith("down_proj.bias")) return new long[] {d};
        if (name.endsWith("block_sparse_moe.gate.weight") && c.moe() != null) return new long[] {c.moe().numLocalExperts(), d};
        if (name.endsWith(".w1.weight") || name.endsWith(".w3.weight")) return new long[] {f, d};
        if (name.endsWith(".w2.weight")) return new long[] {d, f};
        if (name.endsWith(".bias")) return new long[] {d};
        throw new IllegalArgumentException("no shape known for parameter '" + name + "'");
    }

    public LlamaConfig config() { return config; }

    @Override public Backend backend() { return backend; }

    @Override public List<Parameter> parameters() { return Collections.unmodifiableList(parameters); }

    /** the parameter called {@code name} (Hugging Face / PEFT name) */
    public Parameter parameter(String name) {
        for (Parameter p : parameters) if (p.name().equals(name)) return p;
        throw new IllegalArgumentException("no parameter named '" + name + "'");
    }

    // ---------------------------------------------------------------- LoRA

    /**
     * Adds LoRA adapters to every linear module named in {@code lora.targetModules()} of every layer, as PEFT
     * does: A (r, in) ~ uniform(−1/√in, 1/√in) (PEFT's kaiming_uniform with a = √5), B (out, r) = 0, so the
     * model's output is unchanged; scale α/r. Every other parameter is frozen. New parameters are named
     * {@code <module path>.lora_A.weight} / {@code .lora_B.weight} and follow their base weight in
     * {@link #parameters()}.
     */
    public void addLora(LoraConfig lora) {
        if (this.lora != null) throw new IllegalStateException("LoRA adapters are already attached (merge them first)");
        this.lora = lora;
        trainableBeforeLora = new LinkedHashMap<>();
        for (Parameter p : parameters) {
            trainableBeforeLora.put(p, p.trainable());
            p.setTrainable(false);
        }
        Random random = new Random(lora.seed());
        int r = lora.rank();
        for (Layer layer : layers)
            for (Linear lin : layer.linears()) {
                if (!lora.targetModules().contains(lin.module)) continue;
                float[] a = new float[r * lin.in];
                double bound = 1 / Math.sqrt(lin.in);
                for (int i = 0; i < a.length; i++) a[i] = (float) ((random.nextDouble() * 2 - 1) * bound);
                lin.loraA = Parameter.copyOf(lin.path + ".lora_A.weight", Tensor.ofFloats(lin.path + ".lora_A.weight", a, r, lin.in), arena);
                lin.loraB = Parameter.copyOf(lin.path + ".lora_B.weight", Tensor.ofFloats(lin.path + ".lora_B.weight", new float[lin.out * r], lin.out, r), arena);
                lin.loraScale = (float) (lora.alpha() / r);
                lin.dropout = lora.dropout();
                int at = parameters.indexOf(lin.weight);
                parameters.add(at + 1, lin.loraA);
                parameters.add(at + 2, lin.loraB);
            }
    }

    /** the attached LoRA configuration, or null */
    public LoraConfig lora() { return lora; }

    /**
     * Folds every adapter into its base weight, W += (α/r)·B·A, removes the adapters and restores the
     * trainable flags the parameters had before {@link #addLora}. The sum is formed in F32 and stored in the base
     * weight's dtype (a BF16 checkpoint's frozen weight gives a BF16 merged weight, as PEFT's merge does).
     */
    public void mergeLora() {
        if (lora == null) throw new IllegalStateException("no LoRA adapters to merge");
        for (Layer layer : layers)
            for (Linear lin : layer.linears()) {
                if (lin.loraA == null) continue;
                backend.readBack(lin.loraB.value());  // the trained B, where the backend keeps it
                float[] product; // B·A (out, in), formed where the model computes
                try (DeviceScope scope = new DeviceScope(backend)) {
                    DeviceTensor b = scope.upload(lin.loraB.value().toFloatArray()), ba = scope.floats((long) lin.out * lin.in);
                    backend.matmulBackwardInput(ba, b, lin.out, lin.loraA.value());
                    product = backend.download(ba);
                }
                Tensor base = lin.weight.value();
                if (base.dtype() == DType.F32) {
                    backend.readBack(lin.weight.writableData());
                    Tensor w = lin.weight.writableData();
                    for (int i = 0; i < product.length; i++)
                        w.setFloat(i, w.getFloat(i) + lin.loraScale * product[i]);
                    backend.weightChanged(lin.weight.value());
                } else {
                    Tensor merged = Tensor.allocate(base.name(), base.dtype(), base.shape(), arena);
                    for (int i = 0; i < product.length; i++) merged.setFloat(i, base.getFloat(i) + lin.loraScale * product[i]);
                    lin.weight.replaceValue(merged);
                    // the checkpoint's pages of the old weight are not read again: give them back now, not at unmapping
                    if (base.data().isMapped()) base.data().unload();
                }
                parameters.remove(lin.loraA);
                parameters.remove(lin.loraB);
                lin.loraA = lin.loraB = null;
            }
        trainableBeforeLora.forEach(Parameter::setTrainable);
        lora = null;
        trainableBeforeLora = null;
    }

    // ---------------------------------------------------------------- Mixture of Experts

    /** DIVE stage 0 (recipe {@code train:} patterns): the routers only, with {@link RoutingMode#paperSoft} routing */
    public static final List<String> STAGE0_TRAIN = List.of("*.block_sparse_moe.gate.weight");
    /** DIVE stages 1 and 2: LoRA on the experts' w1/w2/w3 ({@link #STAGE1_LORA_TARGETS}), routers and every RMSNorm; top-k routing */
    public static final List<String> STAGE1_TRAIN = List.of("*.lora_*", "*.block_sparse_moe.gate.weight", "*norm.weight");
    public static final Set<String> STAGE1_LORA_TARGETS = Set.of("w1", "w2", "w3");
    /** stage 0 of a Qwen2-MoE: the routers and the shared experts' gates */
    public static final List<String> SHARED_STAGE0_TRAIN = List.of("*.mlp.gate.weight", "*.mlp.shared_expert_gate.weight");
    /** stages 1 and 2 of a Qwen2-MoE: LoRA on the routed and shared experts' projections, routers, shared expert gates, RMSNorms */
    public static final List<String> SHARED_STAGE1_TRAIN = List.of("*.lora_*", "*.mlp.gate.weight", "*.mlp.shared_expert_gate.weight", "*norm.weight");
    /** a Qwen2-MoE's expert projections (routed and shared alike) */
    public static final Set<String> SHARED_STAGE1_LORA_TARGETS = Set.of("gate_proj", "up_proj", "down_proj");

    /** the stage-0 {@code train:} patterns of a model with {@code config}: {@link #STAGE0_TRAIN} or, for qwen2_moe, {@link #SHARED_STAGE0_TRAIN} */
    public static List<String> stage0Train(LlamaConfig config) { return config.isQwen2Moe() ? SHARED_STAGE0_TRAIN : STAGE0_TRAIN; }

    /** the stage-1 {@code train:} patterns: {@link #STAGE1_TRAIN} or, for qwen2_moe, {@link #SHARED_STAGE1_TRAIN} */
    public static List<String> stage1Train(LlamaConfig config) { return config.isQwen2Moe() ? SHARED_STAGE1_TRAIN : STAGE1_TRAIN; }

    /** the stage-1 LoRA targets: {@link #STAGE1_LORA_TARGETS} or, for qwen2_moe, {@link #SHARED_STAGE1_LORA_TARGETS} */
    public static Set<String> stage1LoraTargets(LlamaConfig config) { return config.isQwen2Moe() ? SHARED_STAGE1_LORA_TARGETS : STAGE1_LORA_TARGETS; }

    /** stage 0: routers (and Qwen2-MoE's shared expert gates) trainable, everything else frozen; soft routing at the paper's temperature for k */
    public void prepareStage0() {
        if (!isMoe()) throw new IllegalStateException("stage 0 trains routers: the model has no MoE layer");
        ParameterPatterns.apply(parameters, stage0Train(config), List.of());
        setRouting(RoutingMode.paperSoft(config.moe().numExpertsPerTok()));
    }

    /**
     * stage 1 (and 2): LoRA of rank r (α, dropout, seed) on every expert's w1/w2/w3 (Qwen2-MoE: gate/up/down_proj of the
     * routed and shared experts, plus the shared expert gates), plus routers and all RMSNorms in
     * full; attention, embeddings and LM head frozen; top-k routing
     */
    public void prepareStage1(int rank, double alpha, double dropout, long seed) {
        if (!isMoe()) throw new IllegalStateException("stage 1 adapts experts: the model has no MoE layer");
        addLora(new LoraConfig(rank, alpha, dropout, stage1LoraTargets(config), seed));
        ParameterPatterns.apply(parameters, stage1Train(config), List.of());
        setRouting(RoutingMode.TOP_K);
    }

    /** true when the layers' FFNs are MoE blocks (a Mixtral config) */
    public boolean isMoe() { return config.moe() != null; }

    /** how MoE layers route while training and evaluating ({@link RoutingMode#TOP_K} by default); ignored by dense models */
    public void setRouting(RoutingMode routing) {
        if (routing == null) throw new IllegalArgumentException("routing mode: expected TOP_K or a Soft(temperature), got null");
        this.routing = routing;
    }

    public RoutingMode routing() { return routing; }

    /**
     * Mixtral's auxiliary load-balancing loss, added to the training loss as transformers does with
     * {@code output_router_logits}: {@code coef · E · Σ_e f_e · P_e}, pooled over the rows of ALL MoE layers
     * (L·N rows): f_e = top-k assignments of expert e / (L·N) (so Σ f = k), P_e = mean over the L·N rows of
     * softmax(z)_e over all E experts (temperature 1, whatever the routing mode). f is a constant for the gradient.
     * 0 (the default, and the paper's choice) turns it off.
     */
    public void setAuxLossCoef(double coef) {
        if (!(coef >= 0) || Double.isInfinite(coef)) throw new IllegalArgumentException("aux loss coefficient must be ≥ 0 and finite, got " + coef);
        this.auxLossCoef = coef;
    }

    public double auxLossCoef() { return auxLossCoef; }

    /**
     * tokens routed to each expert (top-k assignments; in soft mode the ones top-k routing would make) per layer in the
     * last forward (training batch or evaluation): (layers, E); null before the first
     */
    public int[][] lastExpertLoad() { return lastExpertLoad == null ? null : Arrays.stream(lastExpertLoad).map(r -> r == null ? null : r.clone()).toArray(int[][]::new); }

    @Override
    public long[] lastExpertCounts() {
        if (lastExpertLoad == null) return null;
        long[] counts = new long[config.moe().numLocalExperts()];
        for (int[] layer : lastExpertLoad) if (layer != null) for (int e = 0; e < counts.length; e++) counts[e] += layer[e];
        return counts;
    }

    /** the auxiliary loss (before the coefficient) of the last training batch, NaN without one */
    public double lastAuxLoss() { return lastAuxLoss; }

    /** the cross-entropy part of the last training loss */
    public double lastLmLoss() { return lastLmLoss; }

    // ---------------------------------------------------------------- forward and backward

    /** what one forward kept: device tensors of its scope, freed by {@link #close} */
    private final class Forward implements AutoCloseable {
        final DeviceScope scope = new DeviceScope(backend);
        int B, T, N;
        DeviceTensor inputs, targets, positions;   // (N) I32
        LayerActivations[] acts;
        DeviceTensor xFinal, xnFinal;              // (N, D)
        DeviceTensor logits;                       // (N, vocab)
        DeviceTensor[] dRouterLogitsAux;           // per MoE layer (N, E): the aux loss's gradient; null without
        DeviceTensor expertCounts;                 // (layers, E) I32 top-k assignments; null for a dense model

        @Override public void close() { scope.close(); }
    }

    @Override
    public double lossAndGradients(int[][] batch, float gradScale) {
        Dropout dropout = lora != null && lora.dropout() > 0 ? new Dropout(lora.seed() * 0x9E3779B97F4A7C15L + trainingSteps) : null;
        trainingSteps++;
        try (Forward f = forward(batch, dropout)) {
            double loss = backend.crossEntropy(f.logits, f.logits, f.targets, f.N, config.vocabSize(), gradScale);
            lastLmLoss = loss;
            lastAuxLoss = Double.NaN;
            if (isMoe()) {
                if (auxLossCoef > 0) {
                    MoeBlock.Saved[] saved = new MoeBlock.Saved[layers.length];
                    for (int l = 0; l < layers.length; l++) saved[l] = f.acts[l].moe;
                    f.dRouterLogitsAux = new DeviceTensor[layers.length];
                    lastAuxLoss = MoeBlock.auxLoss(backend, saved, lastExpertLoad, f.dRouterLogitsAux, (double) gradScale * auxLossCoef, f.scope);
                    loss += auxLossCoef * lastAuxLoss;
                }
            }
            backward(f, f.logits);
            return loss;
        }
    }

    @Override
    public void restoreTrainingCalls(long calls) { trainingSteps = calls; }

    /** the mean cross-entropy on {@code batch} (no auxiliary loss, no dropout), with the current routing mode */
    @Override
    public double loss(int[][] batch) {
        try (Forward f = forward(batch, null)) {
            return backend.crossEntropy(null, f.logits, f.targets, f.N, config.vocabSize(), 1f);
        }
    }

    /** logits of one sequence (no dropout) → (T, vocab), row t predicting the token after ids[t] */
    public float[] logits(int[] ids) {
        int[] withNext = Arrays.copyOf(ids, ids.length + 1); // the extra target is never used
        try (Forward f = forward(new int[][] {withNext}, null)) {
            return backend.download(f.logits);
        }
    }

    private Forward forward(int[][] batch, Dropout dropout) {
        int vocab = config.vocabSize(), d = config.hiddenSize(), ffn = config.intermediateSize();
        int heads = config.numAttentionHeads(), kvHeads = config.numKeyValueHeads(), hd = config.headDim();
        int qDim = config.queryDim(), kvDim = config.kvDim();
        float eps = (float) config.rmsNormEps(), scale = (float) (1.0 / Math.sqrt(hd));
        if (batch.length == 0) throw new IllegalArgumentException("empty batch (expected B ≥ 1 sequences of T + 1 tokens)");
        int B = batch.length, T = batch[0].length - 1;
        if (T < 1) throw new IllegalArgumentException("batch sequences have " + batch[0].length + " tokens, expected T + 1 ≥ 2");
        if (config.slidingWindow() > 0 && T > config.slidingWindow())
            throw new IllegalArgumentException("batch sequences have " + T + " positions but the model's sliding_window is "
                    + config.slidingWindow() + " (training attends to the whole prefix): use sequences of at most that length");
        int N = Math.multiplyExact(B, T);
        int[] inputs = new int[N], targets = new int[N], positions = new int[N];
        for (int b = 0; b < B; b++) {
            if (batch[b].length != T + 1) throw new IllegalArgumentException("batch sequence " + b + " has " + batch[b].length + " tokens, expected " + (T + 1) + " like sequence 0");
            for (int t = 0; t <= T; t++) {
                int id = batch[b][t];
                if (id < 0 || id >= vocab) throw new IllegalArgumentException("token id " + id + " (sequence " + b + ", position " + t + ") is outside the vocabulary [0, " + vocab + ")");
                if (t < T) {
                    inputs[b * T + t] = id;
                    positions[b * T + t] = t;
                }
                if (t > 0) targets[b * T + t - 1] = id;
            }
        }
        Forward f = new Forward();
        try {
            f.B = B; f.T = T; f.N = N;
            DeviceScope scope = f.scope;
            // edges in: the token ids, targets and positions; nothing else crosses until the loss
            f.inputs = scope.upload(inputs);
            f.targets = scope.upload(targets);
            f.positions = scope.upload(positions);
            if (isMoe()) f.expertCounts = scope.ints((long) layers.length * config.moe().numLocalExperts());
            DeviceTensor qb = B == 1 ? null : scope.floats((long) T * qDim), ob = B == 1 ? null : scope.floats((long) T * qDim);
            DeviceTensor kb = B == 1 ? null : scope.floats((long) T * kvDim), vb = B == 1 ? null : scope.floats((long) T * kvDim);
            DeviceTensor x = scope.floats((long) N * d);
            backend.embedding(x, embed.value(), f.inputs, N);
            f.acts = new LayerActivations[layers.length];
            for (int l = 0; l < layers.length; l++) {
                Layer layer = layers[l];
                LayerActivations a = f.acts[l] = new LayerActivations();
                a.xIn = x;
                a.xn1 = scope.floats((long) N * d);
                backend.rmsNorm(a.xn1, x, layer.inputNorm.value(), N, eps);
                a.q = scope.floats((long) N * qDim);
                a.k = scope.floats((long) N * kvDim);
                a.v = scope.floats((long) N * kvDim);
                a.sq = layer.q.forward(a.q, a.xn1, N, dropout, scope);
                a.sk = layer.k.forward(a.k, a.xn1, N, dropout, scope);
                a.sv = layer.v.forward(a.v, a.xn1, N, dropout, scope);
                backend.rope(a.q, N, heads, hd, f.positions, invFreq);
                backend.rope(a.k, N, kvHeads, hd, f.positions, invFreq);
                a.att = scope.floats((long) N * qDim);
                if (B == 1) {
                    backend.attention(a.att, a.q, a.k, a.v, T, 0, heads, kvHeads, hd, scale);
                } else {
                    for (int b = 0; b < B; b++) {
                        backend.copy(qb, 0, a.q, (long) b * T * qDim, (long) T * qDim);     // (T, heads, hd)
                        backend.copy(kb, 0, a.k, (long) b * T * kvDim, (long) T * kvDim);   // (T, kvHeads, hd)
                        backend.copy(vb, 0, a.v, (long) b * T * kvDim, (long) T * kvDim);
                        backend.attention(ob, qb, kb, vb, T, 0, heads, kvHeads, hd, scale);
                        backend.copy(a.att, (long) b * T * qDim, ob, 0, (long) T * qDim);
                    }
                }
                DeviceTensor proj = scope.floats((long) N * d);
                a.so = layer.o.forward(proj, a.att, N, dropout, scope);
                a.xMid = scope.copyOf(x, (long) N * d);
                backend.add(a.xMid, proj, N * d);
                a.xn2 = scope.floats((long) N * d);
                backend.rmsNorm(a.xn2, a.xMid, layer.postAttentionNorm.value(), N, eps);
                if (layer.moe != null) {
                    a.moe = layer.moe.forward(proj, a.xn2, N, routing, dropout, f.expertCounts, l, scope);
                    x = scope.copyOf(a.xMid, (long) N * d);
                    backend.add(x, proj, N * d);
                    continue;
                }
                a.gate = scope.floats((long) N * ffn);
                a.up = scope.floats((long) N * ffn);
                a.sGate = layer.gate.forward(a.gate, a.xn2, N, dropout, scope);
                a.sUp = layer.up.forward(a.up, a.xn2, N, dropout, scope);
                a.h = scope.floats((long) N * ffn);
                backend.swiglu(a.h, a.gate, a.up, N * ffn);
                a.sDown = layer.down.forward(proj, a.h, N, dropout, scope);
                x = scope.copyOf(a.xMid, (long) N * d);
                backend.add(x, proj, N * d);
            }
            if (isMoe()) {  // statistics out: the top-k load of every layer, one transfer
                int e = config.moe().numLocalExperts();
                int[] counts = backend.downloadInts(f.expertCounts);
                lastExpertLoad = new int[layers.length][];
                for (int l = 0; l < layers.length; l++)
                    if (f.acts[l].moe != null) lastExpertLoad[l] = Arrays.copyOfRange(counts, l * e, (l + 1) * e);
            }
            f.xFinal = x;
            f.xnFinal = scope.floats((long) N * d);
            backend.rmsNorm(f.xnFinal, x, finalNorm.value(), N, eps);
            f.logits = scope.floats(Math.multiplyExact((long) N, vocab));
            backend.matmul(f.logits, f.xnFinal, N, lmHead.value());
            return f;
        } catch (RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /** adds the gradients of every trainable parameter, given dLogits (N, vocab) */
    private void backward(Forward f, DeviceTensor dLogits) {
        int vocab = config.vocabSize(), d = config.hiddenSize(), ffn = config.intermediateSize();
        int heads = config.numAttentionHeads(), kvHeads = config.numKeyValueHeads(), hd = config.headDim();
        int qDim = config.queryDim(), kvDim = config.kvDim();
        float eps = (float) config.rmsNormEps(), scale = (float) (1.0 / Math.sqrt(hd));
        int N = f.N;
        DeviceScope scope = f.scope;
        DeviceTensor dxn = scope.floats((long) N * d);
        if (lmHead.trainable()) backend.matmulBackwardWeight(lmHead.grad(backend), dLogits, f.xnFinal, N, vocab, d);
        backend.matmulBackwardInput(dxn, dLogits, N, lmHead.value());
        DeviceTensor dx = scope.floats((long) N * d);  // ∂loss/∂(residual stream)
        backend.rmsNormBackward(dx, finalNorm.trainable() ? finalNorm.grad(backend) : null, dxn, f.xFinal, finalNorm.value(), N, eps);
        boolean dense = !isMoe();
        DeviceTensor dh = dense ? scope.floats((long) N * ffn) : null, dGate = dense ? scope.floats((long) N * ffn) : null,
                dUp = dense ? scope.floats((long) N * ffn) : null;
        DeviceTensor dAtt = scope.floats((long) N * qDim), dq = scope.floats((long) N * qDim), dk = scope.floats((long) N * kvDim),
                dv = scope.floats((long) N * kvDim);
        int lowest = lowestTrainableLayer();  // below it (and below its FFN block, when only that trains) nothing needs a gradient
        for (int l = layers.length - 1; l >= Math.max(0, lowest); l--) {
            Layer layer = layers[l];
            LayerActivations a = f.acts[l];
            boolean belowBlock = l > lowest || attentionHalfTrainable(layer);  // does anything under the FFN block train?
            try (DeviceScope layerScope = new DeviceScope(backend)) {  // this layer's backward temporaries
                if (layer.moe != null) {
                    // MoE block: xOut = xMid + moe(xn2)
                    layer.moe.backward(dxn, dx, a.moe, f.dRouterLogitsAux == null ? null : f.dRouterLogitsAux[l], belowBlock, layerScope);
                } else {
                    // MLP block: xOut = xMid + down(swiglu(gate(xn2), up(xn2)))
                    layer.down.backward(dh, false, dx, a.h, N, a.sDown, layerScope);
                    backend.swigluBackward(dGate, dUp, dh, a.gate, a.up, N * ffn);
                    layer.gate.backward(dxn, false, dGate, a.xn2, N, a.sGate, layerScope);
                    layer.up.backward(dxn, true, dUp, a.xn2, N, a.sUp, layerScope);
                }
                if (!belowBlock) break;
                backend.rmsNormBackward(dxn, layer.postAttentionNorm.trainable() ? layer.postAttentionNorm.grad(backend) : null, dxn, a.xMid,
                        layer.postAttentionNorm.value(), N, eps);
                backend.add(dx, dxn, N * d);
                // attention block: xMid = xIn + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1)))
                layer.o.backward(dAtt, false, dx, a.att, N, a.so, layerScope);
                backend.attentionBackward(dq, dk, dv, dAtt, a.q, a.k, a.v, f.B, f.T, heads, kvHeads, hd, scale);
                backend.ropeBackward(dq, N, heads, hd, f.positions, invFreq);
                backend.ropeBackward(dk, N, kvHeads, hd, f.positions, invFreq);
                layer.q.backward(dxn, false, dq, a.xn1, N, a.sq, layerScope);
                layer.k.backward(dxn, true, dk, a.xn1, N, a.sk, layerScope);
                layer.v.backward(dxn, true, dv, a.xn1, N, a.sv, layerScope);
                backend.rmsNormBackward(dxn, layer.inputNorm.trainable() ? layer.inputNorm.grad(backend) : null, dxn, a.xIn,
                        layer.inputNorm.value(), N, eps);
                backend.add(dx, dxn, N * d);
            }
        }
        if (embed.trainable()) backend.embeddingBackward(embed.grad(backend), dx, f.inputs, N, d);
    }

    /**
     * the lowest layer with a trainable parameter; −1 when the embedding trains (the backward goes all the way down),
     * layers.length when nothing below the final norm trains
     */
    private int lowestTrainableLayer() {
        if (embed.trainable()) return -1;
        for (int l = 0; l < layers.length; l++) {
            Layer layer = layers[l];
            if (attentionHalfTrainable(layer)) return l;
            if (layer.moe != null) {
                if (layer.moe.anyTrainable()) return l;
            } else if (layer.gate.hasTrainable() || layer.up.hasTrainable() || layer.down.hasTrainable()) return l;
        }
        return layers.length;
    }

    /** the parameters under a layer's FFN block: input norm, q/k/v/o (with LoRA), post-attention norm */
    private static boolean attentionHalfTrainable(Layer layer) {
        return layer.inputNorm.trainable() || layer.postAttentionNorm.trainable() || layer.q.hasTrainable() || layer.k.hasTrainable()
                || layer.v.hasTrainable() || layer.o.hasTrainable();
    }

    // ---------------------------------------------------------------- export

    /**
     * Writes a Hugging Face checkpoint into {@code dir} (created if missing): {@code model.safetensors} (every weight
     * as {@code dtype}, F32, BF16 or F16, converted while streaming to the file; null keeps each weight's own dtype:
     * frozen weights as the source checkpoint stored them, trained ones F32; without {@code lm_head.weight} when tied,
     * as transformers saves), {@code config.json} in transformers 5 form, and {@code tokenizer.json} copied from
     * {@code tokenizerJson} when it is not null. Every file is written atomically; config.json comes after the weights.
     * <p>A Qwen2-MoE model is written by {@link Qwen2MoeExport} (stock Qwen2MoeForCausalLM), the same way.
     * <p>An MoE model is written as a Mixtral checkpoint by {@link MixtralExport} into {@code dir}, which must then be
     * new or empty (the whole folder appears at once); expert biases that are not all zero are written as this
     * engine's {@code dive_expert_bias} extension, all-zero ones are left out (a stock Mixtral checkpoint).
     */
    public void saveCheckpoint(Path dir, Path tokenizerJson, DType dtype) throws IOException {
        if (lora != null) throw new IllegalStateException("LoRA adapters are attached: call mergeLora() before saving a checkpoint");
        if (dtype != null && !dtype.isFloatWeight()) throw new IllegalArgumentException("checkpoint dtype " + dtype + ": expected F32, BF16 or F16");
        syncTrainedToHost();
        if (isMoe()) {
            Map<String, Tensor> weights = new LinkedHashMap<>();
            for (Parameter p : parameters) weights.put(p.name(), p.value());
            if (config.isQwen2Moe()) Qwen2MoeExport.write(dir, config, weights, Qwen2MoeExport.Options.defaults().withDtype(dtype));
            else MixtralExport.write(dir, config, weights, MixtralExport.Options.defaults().withExpertBias(true).withDtype(dtype));
            if (tokenizerJson != null) AtomicFiles.writeString(dir.resolve("tokenizer.json"), Files.readString(tokenizerJson));
            return;
        }
        Files.createDirectories(dir);
        List<Tensor> tensors = new ArrayList<>();
        for (Parameter p : parameters) tensors.add(p.value());
        SafetensorsWriter.write(dir.resolve(SafetensorsWriter.SINGLE_FILE), tensors, Map.of(), dtype);
        if (tokenizerJson != null) AtomicFiles.writeString(dir.resolve("tokenizer.json"), Files.readString(tokenizerJson));
        AtomicFiles.writeString(dir.resolve("config.json"), configJson(dtype != null ? dtype : embed.value().dtype()));
    }

    /**
     * brings the host memory of every trained parameter up to date with the backend's copy (where the backend computes
     * elsewhere: the optimizer updated it there); call before reading weights on the host
     */
    public void syncTrainedToHost() {
        for (Parameter p : parameters) if (!p.isView()) backend.readBack(p.value());
    }

    /** config.json as transformers 5 writes it for LlamaForCausalLM */
    String configJson(DType dtype) {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode c = mapper.createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("attention_bias", false);
        c.put("attention_dropout", 0.0);
        if (config.bosTokenId() >= 0) c.put("bos_token_id", config.bosTokenId());
        c.put("dtype", switch (dtype) { case BF16 -> "bfloat16"; case F16 -> "float16"; default -> "float32"; });
        int[] eos = config.eosTokenIds();
        if (eos.length == 1) c.put("eos_token_id", eos[0]);
        else if (eos.length > 1) {
            ArrayNode list = c.putArray("eos_token_id");
            for (int e : eos) list.add(e);
        }
        c.put("head_dim", config.headDim());
        c.put("hidden_act", "silu");
        c.put("hidden_size", config.hiddenSize());
        c.put("initializer_range", initStd);
        c.put("intermediate_size", config.intermediateSize());
        c.put("max_position_embeddings", config.maxPositionEmbeddings());
        c.put("mlp_bias", config.mlpBias());
        c.put("model_type", "llama");
        c.put("num_attention_heads", config.numAttentionHeads());
        c.put("num_hidden_layers", config.numHiddenLayers());
        c.put("num_key_value_heads", config.numKeyValueHeads());
        c.put("pretraining_tp", 1);
        c.put("rms_norm_eps", config.rmsNormEps());
        ObjectNode rope = c.putObject("rope_parameters");
        LlamaConfig.Rope r = config.rope();
        rope.put("rope_theta", r.theta());
        rope.put("rope_type", r.type());
        if (!r.type().equals("default")) rope.put("factor", r.factor());
        if (r.type().equals("llama3")) {
            rope.put("low_freq_factor", r.lowFreqFactor());
            rope.put("high_freq_factor", r.highFreqFactor());
            rope.put("original_max_position_embeddings", r.originalMaxPositionEmbeddings());
        }
        c.put("tie_word_embeddings", config.tieWordEmbeddings());
        c.put("use_cache", true);
        c.put("vocab_size", config.vocabSize());
        try {
            return mapper.writerWithDefaultPrettyPrinter().writeValueAsString(c) + "\n";
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override public String toString() {
        return "TrainableLlama[" + config + ", " + parameters.size() + " parameters" + (lora == null ? "" : ", " + lora) + ", backend " + backend.name() + "]";
    }
}
