package dive.cli;

import dive.convert.ConvertRecipe;
import dive.convert.Pruning;
import dive.model.LlamaConfig;
import dive.train.Recipe;
import dive.util.MemoryPlan;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * The memory plan of each command that loads a model, estimated from config.json, the weights' size on disk and the
 * recipe before any work (see {@link MemoryPlan}). The figures follow what the engine holds:
 * <ul>
 *   <li>weights: the safetensors files, memory-mapped in their dtype (counted in full: every page is read);</li>
 *   <li>built weights (experts, pruned FFNs, merged LoRA weights): off-heap, in the dense checkpoint's dtype;</li>
 *   <li>trainable state: F32 value, gradient and two AdamW moments per trained element (16 bytes);</li>
 *   <li>activations: F32 on the heap, per forward row: the residual stream and its norms, q/k/v/attention, the FFN's
 *       gate, up and product (kept for every layer while training), logits of the rows that need them;</li>
 *   <li>the runtime: the JVM itself (code, metaspace, threads: {@value #JVM_BYTES} bytes off the heap) and the tokenizer,
 *       corpus and scratch ({@value #RUNTIME_HEAP_BYTES} bytes on it), plus the CPU backend's cache of packed read-only
 *       weights ({@code -Ddive.packCache.bytes}).</li>
 * </ul>
 */
final class MemoryPlans {
    private MemoryPlans() {}

    static final long JVM_BYTES = 150_000_000L, RUNTIME_HEAP_BYTES = 50_000_000L;
    /** the CPU backend's cache of packed read-only weights (heap) */
    static final long PACK_CACHE = dive.backend.Backends.packedWeightCacheBytes();
    /** rows per calibration / evaluation batch (CalibrationStatistics, Perplexity) */
    static final int BATCH_ROWS = 2048;

    /** a model folder's config and the bytes of its weights */
    record Model(LlamaConfig config, long weightBytes) {
        static Model of(Path dir) throws IOException {
            LlamaConfig c = LlamaConfig.load(dir);
            long bytes = 0;
            try (Stream<Path> s = Files.list(dir)) {
                for (Path f : s.filter(p -> p.getFileName().toString().endsWith(".safetensors")).toList()) bytes += Files.size(f);
            }
            return new Model(c, bytes);
        }

        long parameters() {
            LlamaConfig c = config;
            long d = c.hiddenSize(), layers = c.numHiddenLayers();
            long ffn = c.moe() == null ? 3L * d * c.intermediateSize() : (long) c.moe().numLocalExperts() * 3 * d * c.intermediateSize() + (long) c.moe().numLocalExperts() * d
                    + 3L * d * c.moe().sharedExpertIntermediateSize() + (c.moe().hasSharedExpert() ? d : 0);  // Qwen2-MoE's shared expert and its gate
            long layer = d * c.queryDim() * 2L + 2L * d * c.kvDim() + 2 * d + ffn;
            return (long) c.vocabSize() * d * (c.tieWordEmbeddings() ? 1 : 2) + layers * layer + d;
        }

        /** bytes per weight element: 2 for BF16/F16 checkpoints, 4 for F32 */
        int elementBytes() { return weightBytes >= 3 * parameters() ? 4 : 2; }

        /** bytes of every layer's dense FFN weights (gate, up, down) */
        long ffnBytes() { return (long) config.numHiddenLayers() * 3 * config.hiddenSize() * config.intermediateSize() * elementBytes(); }
    }

    /** F32 bytes of one inference forward over {@code rows} rows (logits for {@code logitRows} of them) */
    static long forwardBytes(LlamaConfig c, long rows, long logitRows, long ffnWidth) {
        long perRow = 3L * c.hiddenSize() + 2L * c.queryDim() + 2L * c.kvDim() + 3L * ffnWidth;
        return 4 * (rows * perRow + logitRows * c.vocabSize());
    }

    /** F32 bytes a training step keeps: every layer's activations, the logits and their gradient, one layer's backward scratch */
    static long trainingBytes(LlamaConfig c, long rows, long ffnActiveWidth) {
        long perRowLayer = 4L * c.hiddenSize() + 2L * c.queryDim() + 2L * c.kvDim() + 3L * ffnActiveWidth;
        return 4 * (rows * perRowLayer * (c.numHiddenLayers() + 1) + 2 * rows * c.vocabSize());
    }

    /**
     * F32 bytes an MoE training step keeps: per layer the non-FFN activations of every row, its routing (logits,
     * weights, ids) and, per expert slot a row takes ({@code slots}: k at top-k routing, every expert at stage 0's soft
     * routing), the expert's gathered input, gate, up, product and output; the backward's scratch (the attention's
     * gradients, and one layer's expert gradients: the same per slot again); the logits and their gradient
     */
    static long moeTrainingBytes(LlamaConfig c, long rows, long slots, long width, long experts) {
        long d = c.hiddenSize(), perSlot = 2 * d + 3 * width, attention = 2L * c.queryDim() + 2L * c.kvDim();
        long perRowLayer = 4 * d + attention + slots * (perSlot + 4) + 3 * experts;
        long backward = rows * (2 * d + attention + slots * perSlot);
        return 4 * (rows * perRowLayer * (c.numHiddenLayers() + 1) + backward + 2 * rows * c.vocabSize());
    }

    /**
     * F32 bytes the experts' LoRA adapters (w1, w3, w2) keep over a step of {@code slotRows} expert rows: each adapter's
     * x·Aᵀ (r per row) and, with dropout, its dropped-out input and mask (d, d and the width per row)
     */
    static long loraBytes(LlamaConfig c, long slotRows, long width, long rank, double dropout) {
        long d = c.hiddenSize();
        return 4 * slotRows * c.numHiddenLayers() * (3 * rank + (dropout > 0 ? 2 * (2 * d + width) : 0));
    }

    /** KV caches (F32) of {@code sequences} sequences of {@code capacity} positions */
    static long kvBytes(LlamaConfig c, long sequences, long capacity) {
        return 4L * 2 * c.numHiddenLayers() * c.kvDim() * capacity * sequences;
    }

    /** ppl, eval, generate, bench, logits: the weights, a forward of {@code rows} rows and KV caches */
    static MemoryPlan inference(String command, Path dir, long rows, long logitRows, long kvPositions) throws IOException {
        Model m = Model.of(dir);
        return new MemoryPlan(command)
                .add("weights", m.weightBytes(), false)
                .add("activations", forwardBytes(m.config(), rows, logitRows, m.config().intermediateSize()), true)
                .add("KV cache", kvBytes(m.config(), 1, kvPositions), true)
                .add("JVM", JVM_BYTES, false).add("runtime", RUNTIME_HEAP_BYTES + PACK_CACHE, true)
                .hint("lower --window, --batch or the prompt and generation lengths");
    }

    /** the FFN width one token activates: dense, or top-k experts plus a Qwen2-MoE shared expert */
    static long activeFfnWidth(LlamaConfig c) {
        return c.moe() == null ? c.intermediateSize()
                : (long) c.moe().numExpertsPerTok() * c.intermediateSize() + c.moe().sharedExpertIntermediateSize();
    }

    /**
     * serve: the weights, the KV-cache budget of all running sequences (F32 on the backend: the heap on the CPU) and
     * one step's activations (up to maxBatch decode rows plus prefillTokens prompt rows, logits for maxBatch of them)
     */
    static MemoryPlan serve(Path dir, int maxBatch, int prefillTokens, long kvBudgetBytes) throws IOException {
        Model m = Model.of(dir);
        LlamaConfig c = m.config();
        long ffn = activeFfnWidth(c);
        return new MemoryPlan("serve")
                .add("weights", m.weightBytes(), false)
                .add("KV caches", kvBudgetBytes, true)
                .add("activations", forwardBytes(c, (long) maxBatch + prefillTokens, maxBatch, ffn), true)
                .add("JVM", JVM_BYTES, false).add("runtime", RUNTIME_HEAP_BYTES + PACK_CACHE, true)
                .hint("lower --kv-budget-mb, --max-batch or --prefill-tokens");
    }

    /** affinity mining: the dense weights, one pruned model at a time, calibration batches, per-dataset channel statistics */
    static MemoryPlan affinity(String command, Path dir, int datasets, double ratio, int seqlen) throws IOException {
        Model m = Model.of(dir);
        LlamaConfig c = m.config();
        int width = Pruning.keptWidth(c.intermediateSize(), ratio);
        long rows = Math.max(BATCH_ROWS, seqlen);
        return new MemoryPlan(command)
                .add("weights", m.weightBytes(), false)
                .add("pruned model", m.ffnBytes() * width / c.intermediateSize(), false)
                .add("activations", forwardBytes(c, rows, rows, c.intermediateSize()), true)
                .add("channel statistics", 8L * 4 * datasets * c.numHiddenLayers() * c.intermediateSize(), true)
                .add("JVM", JVM_BYTES, false).add("runtime", RUNTIME_HEAP_BYTES + PACK_CACHE, true)
                .hint("lower seqlen or the number of datasets");
    }

    /**
     * convert: the largest of its phases (reconstruction with the dense model open; retraining over the mapped experts
     * with the trainable state; LoRA merged into new weights at the end of stage 1; LLM-Pruner's Taylor gradients)
     */
    static MemoryPlan convert(Path dir, ConvertRecipe recipe, int experts, int topK, double ratio) throws IOException {
        Model m = Model.of(dir);
        LlamaConfig c = m.config();
        int width = Pruning.keptWidth(c.intermediateSize(), ratio);
        long d = c.hiddenSize(), layers = c.numHiddenLayers();
        long expertBytes = m.ffnBytes() * width / c.intermediateSize() * experts;
        long nonFfn = m.weightBytes() - m.ffnBytes();
        long datasets = recipe.datasets().isEmpty() ? 23 : recipe.datasets().size();
        // phase 1: dense weights + affinity mining + the experts being built
        long windowRows = Math.max(recipe.seqlen(), Math.min(BATCH_ROWS,
                (long) Math.max(recipe.calibrationWindows(), Math.max(recipe.evalWindows(), recipe.finalEvalWindows())) * recipe.seqlen()));
        long calibration = forwardBytes(c, windowRows, windowRows, c.intermediateSize()) + 8L * 4 * datasets * layers * c.intermediateSize();
        // phase 2: retraining the MoE (mapped non-FFN weights and experts), its trainable state, activations, merged experts
        boolean stage2 = recipe.stage2().tokens() > 0;
        int lora = Math.max(recipe.stage1().loraR(), stage2 ? recipe.stage2().loraR() : 0);
        long trainable = layers * experts * d + (2 * layers + 1) * d + layers * experts * 3L * lora * (d + width);
        // stage 0 routes softly (every row through every expert), stages 1 and 2 through k experts
        long rows0 = (long) recipe.stage0().batchSize() * recipe.stage0().seqLen();
        long rows = (long) recipe.stage1().batchSize() * recipe.stage1().seqLen();
        if (stage2) rows = Math.max(rows, (long) recipe.stage2().batchSize() * recipe.stage2().seqLen());
        long activations = Math.max(moeTrainingBytes(c, rows0, experts, width, experts), moeTrainingBytes(c, rows, topK, width, experts));
        // LLM-Pruner (method or score): F32 gradients of every FFN weight on the heap
        boolean taylor = recipe.score().equals("taylor") || recipe.methods().contains("llm_pruner");
        // its batches hold at most TaylorScore.batchTokens tokens, in whole windows (at least one)
        long taylorRows = Math.max(recipe.seqlen(), Math.min(dive.convert.TaylorScore.batchTokens(c), (long) recipe.calibrationWindows() * recipe.seqlen() * datasets));
        long taylorActivations = taylorRows * dive.convert.TaylorScore.bytesPerToken(c);
        List<MemoryPlan> phases = new ArrayList<>();
        phases.add(new MemoryPlan("convert").add("weights", m.weightBytes(), false).add("experts", expertBytes, false)
                .add("calibration", calibration, true));
        double dropout = Math.max(recipe.stage1().loraDropout(), stage2 ? recipe.stage2().loraDropout() : 0);
        // a shared-expert method (dive_shared, cmoe) runs every row through its shared expert too: one more LoRA slot per row
        boolean shared = recipe.methods().contains("dive_shared") || recipe.methods().contains("cmoe");
        long loraInputs = loraBytes(c, rows * (topK + (shared ? 1 : 0)), width, lora, dropout);
        phases.add(new MemoryPlan("convert").add("weights", nonFfn, false).add("experts", expertBytes, false).add("merged experts", expertBytes, false)
                .add("trainable state", 16 * trainable, true).add("training activations", activations, true)
                .add("LoRA inputs", loraInputs, true));
        if (taylor)
            phases.add(new MemoryPlan("convert").add("weights", m.weightBytes(), false).add("Taylor gradients", 4 * m.ffnBytes() / m.elementBytes(), true)
                    .add("Taylor activations", taylorActivations, true));
        MemoryPlan plan = phases.stream().max(java.util.Comparator.comparingLong(MemoryPlan::peakBytes)).orElseThrow();
        plan.heapAtLeast(phases.stream().mapToLong(MemoryPlan::heapBytes).max().orElse(0) + RUNTIME_HEAP_BYTES + PACK_CACHE);  // the heap serves every phase
        return plan.add("JVM", JVM_BYTES, false).add("runtime", RUNTIME_HEAP_BYTES + PACK_CACHE, true)
                .hint("lower the stages' batch_size or seq_len, the seqlen of the windows, or --experts / raise --ratio");
    }

    /** train: the model's weights (mapped, or F32 for a fresh model), the trainable state, the training activations */
    static MemoryPlan train(Recipe recipe) throws IOException {
        Recipe.Model rm = recipe.model();
        if (!rm.kind().equals("checkpoint") && !rm.kind().equals("config")) return null;  // extension kinds: no estimate
        LlamaConfig c;
        long weights;
        Model m = null;
        if (rm.kind().equals("checkpoint")) {
            m = Model.of(rm.path());
            c = m.config();
            weights = m.weightBytes();
        } else {
            c = rm.path() != null ? LlamaConfig.load(rm.path().getFileName().toString().equals("config.json") ? rm.path().getParent() : rm.path())
                    : LlamaConfig.parse(rm.spec(), recipe.source() + " model.config");
            weights = 0;
        }
        long parameters = m != null ? m.parameters() : new Model(c, 0).parameters();
        long trainable, loraInputs = 0;
        long rows = (long) recipe.batchSize() * recipe.seqLen();
        if (recipe.lora() != null) {
            long d = c.hiddenSize(), f = c.intermediateSize(), r = recipe.lora().r();
            long perLayer = 0, inputs = 0;
            for (String t : recipe.lora().targets()) {
                perLayer += switch (t) {
                    case "q_proj", "o_proj" -> r * (d + c.queryDim());
                    case "k_proj", "v_proj" -> r * (d + c.kvDim());
                    default -> r * (d + f) * (c.moe() == null ? 1 : c.moe().numLocalExperts());
                };
                inputs += switch (t) { case "o_proj" -> c.queryDim(); case "down_proj", "w2" -> f; default -> d; };
            }
            trainable = perLayer * c.numHiddenLayers() + (2L * c.numHiddenLayers() + 1) * d;
            // each adapter keeps its (dropped-out) input and, with dropout, the mask: F32, rows × in per target and layer
            loraInputs = 4L * rows * inputs * c.numHiddenLayers() * (recipe.lora().dropout() > 0 ? 2 : 1);
        } else {
            trainable = parameters;  // full training (patterns may freeze some: an upper bound)
        }
        long ffnActive = activeFfnWidth(c);
        return new MemoryPlan("train")
                .add("weights", weights, false)
                .add("trainable state", 16 * trainable, true)
                .add("activations", trainingBytes(c, rows, ffnActive), true)
                .add("LoRA inputs", loraInputs, true)
                .add("JVM", JVM_BYTES, false).add("runtime", RUNTIME_HEAP_BYTES + PACK_CACHE, true)
                .hint("lower batch_size or seq_len (grad_accum keeps the tokens per step)");
    }

    /** set by the launcher's first pass ({@code -Ddive.planHeap=true}): print the plan's heap part and stop before any work */
    static final String PLAN_HEAP = "dive.planHeap";

    /** thrown in the launcher's planning pass: the command's plan, nothing done */
    static final class PlanOnly extends RuntimeException {
        final MemoryPlan plan;
        PlanOnly(MemoryPlan plan) { super(null, null, false, false); this.plan = plan; }
    }

    /** {@code -Ddive.memory.available=BYTES}: the memory the plans are checked against, instead of the measured (tests) */
    static final String AVAILABLE = "dive.memory.available";

    /** prints the plan's line (unless quiet) and refuses it when it does not fit */
    static void state(MemoryPlan plan, boolean quiet) {
        if (Boolean.getBoolean(PLAN_HEAP)) throw new PlanOnly(plan);
        if (plan == null) return;
        String forced = System.getProperty(AVAILABLE);
        if (forced != null) plan.available(Long.parseLong(forced.strip()));
        if (!quiet) System.err.println("dive: " + plan.line());
        plan.check();
    }

}
