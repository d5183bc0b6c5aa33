package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.model.DenseFfn;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.MixtralExport;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import dive.train.SplitMix64;
import dive.train.Trainer;
import dive.train.TrainableLlama;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The paper's baselines (DIVE-METHOD.md section 6), built beside DIVE by {@code ./dive convert} (recipe key
 * {@code methods}) at the same active FFN share and with the same retraining stages and token budgets, each in
 * {@code OUT/<method>/} (build/, stage folders, model/, eval/before.json and eval/after.json).
 * <ul>
 * <li><b>flap</b>: the dense model pruned uniformly to the active width k·round(I·(1 − r)) (capped at I) by WIFV on all
 *     calibration windows of all datasets pooled; a Llama folder, retrained with LoRA on gate_proj/up_proj/down_proj
 *     and every RMSNorm in full (stage 0 has no router to train: its tokens go to stage 1, so the total is the same).
 * <li><b>llm_pruner</b>: the same with {@link TaylorScore} (first-order Taylor importance) on the pooled windows.
 * <li><b>llama_moe_random</b>: expert e of layer l keeps an independent random subset of round(I·(1 − r)) channels
 *     ({@link #randomSubsets}; subsets of different experts may overlap); routers, stages and export as DIVE's.
 * <li><b>llama_moe_kmeans</b>: balanced k-means on the rows of each layer's W_gate ({@link #kmeansExperts}); expert e
 *     keeps the round(I·(1 − r)) channels nearest centroid e (overlapping); otherwise as DIVE.
 * <li><b>dive_random_groups</b>: the whole DIVE pipeline with {@code grouping: random} (the ablation "DIVE without
 *     affinity mining") in its own folder.
 * </ul>
 * With bias compensation every baseline gets the output bias of the channels it drops (channel means of all calibration
 * windows pooled): the MoE baselines per expert ({@code dive_expert_bias}); flap and llm_pruner as a stock Llama with
 * {@code mlp_bias: true} (transformers' LlamaMLP with biases): down_proj.bias = the compensation, gate_proj.bias and
 * up_proj.bias zero, so {@code LlamaForCausalLM} loads it exactly; the biases stay frozen while LoRA retrains.
 */
public final class BaselineConversion {
    private BaselineConversion() {}

    public static final List<String> METHODS = List.of("flap", "llm_pruner", "llama_moe_random", "llama_moe_kmeans", "dive_random_groups");
    static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "tokenizer.model", "generation_config.json");
    private static final ObjectMapper JSON = new ObjectMapper();

    static boolean isDense(String method) { return method.equals("flap") || method.equals("llm_pruner"); }


    /** the active FFN width of the dense baselines: k experts of width round(I·(1 − r)), at most I */
    public static int activeWidth(int intermediateSize, int topK, double ratio) {
        return Math.min(intermediateSize, topK * Pruning.keptWidth(intermediateSize, ratio));
    }

    /**
     * LLaMA-MoE "random" at DIVE's expert width: for expert e and layer l, a partial Fisher–Yates shuffle of 0 … I−1
     * by {@link SplitMix64}(seed + e·L + l) (position i swapped with i + nextLong(I − i), i = 0 … width−1); the first
     * {@code width} positions, ascending. → kept[e][l] (width)
     */
    public static int[][][] randomSubsets(int intermediateSize, int width, int experts, int layers, long seed) {
        int[][][] kept = new int[experts][layers][];
        for (int e = 0; e < experts; e++)
            for (int l = 0; l < layers; l++) {
                int[] order = new int[intermediateSize];
                for (int i = 0; i < intermediateSize; i++) order[i] = i;
                SplitMix64 random = new SplitMix64(seed + (long) e * layers + l);
                for (int i = 0; i < width; i++) {
                    int j = i + (int) random.nextLong(intermediateSize - i);
                    int t = order[i]; order[i] = order[j]; order[j] = t;
                }
                int[] subset = Arrays.copyOf(order, width);
                Arrays.sort(subset);
                kept[e][l] = subset;
            }
        return kept;
    }

    /**
     * Balanced k-means on the rows of one W_gate (I, d), then per centroid the {@code width} nearest rows. Variant:
     * <ol>
     * <li>initial centroids: rows order[0 … E−1] of a Fisher–Yates permutation of 0 … I−1 by SplitMix64(seed);
     * <li>balanced assignment (capacity ⌈I/E⌉ per cluster): all (row, centroid) pairs by ascending squared distance
     *     (ties → lower row, then lower centroid), each row given to the first pair's centroid that still has room;
     * <li>centroids = means of their rows; repeat 2–3 until the assignment stops changing (at most 50 rounds);
     * <li>expert e = the {@code width} rows with the smallest squared distance to centroid e (ties → lower index),
     *     ascending; with width &gt; I/E the experts overlap.
     * </ol>
     * @param gate (I, d) row-major
     * @return kept[e] (width)
     */
    public static int[][] kmeansExperts(float[] gate, int intermediateSize, int hidden, int experts, int width, long seed) {
        if (experts > intermediateSize) throw new IllegalArgumentException(experts + " clusters of " + intermediateSize + " rows");
        int[] order = new int[intermediateSize];
        for (int i = 0; i < intermediateSize; i++) order[i] = i;
        SplitMix64 random = new SplitMix64(seed);
        for (int i = intermediateSize - 1; i > 0; i--) {
            int j = (int) random.nextLong(i + 1L);
            int t = order[i]; order[i] = order[j]; order[j] = t;
        }
        double[][] centroids = new double[experts][hidden];  // (E, d)
        for (int e = 0; e < experts; e++) for (int k = 0; k < hidden; k++) centroids[e][k] = gate[order[e] * hidden + k];
        int capacity = (intermediateSize + experts - 1) / experts;
        int[] cluster = new int[intermediateSize];
        Arrays.fill(cluster, -1);
        for (int round = 0; round < 50; round++) {
            double[][] dist = distances(gate, intermediateSize, hidden, centroids);
            Integer[] pairs = new Integer[intermediateSize * experts];  // pair p = row p / E, centroid p % E
            for (int p = 0; p < pairs.length; p++) pairs[p] = p;
            Arrays.sort(pairs, (a, b) -> {
                int c = Double.compare(dist[a / experts][a % experts], dist[b / experts][b % experts]);
                return c != 0 ? c : Integer.compare(a, b);
            });
            int[] next = new int[intermediateSize];
            Arrays.fill(next, -1);
            int[] size = new int[experts];
            for (int p : pairs) {
                int row = p / experts, e = p % experts;
                if (next[row] < 0 && size[e] < capacity) { next[row] = e; size[e]++; }
            }
            boolean same = Arrays.equals(next, cluster);
            cluster = next;
            if (same) break;
            for (int e = 0; e < experts; e++) {
                Arrays.fill(centroids[e], 0);
                for (int i = 0; i < intermediateSize; i++)
                    if (cluster[i] == e) for (int k = 0; k < hidden; k++) centroids[e][k] += gate[i * hidden + k];
                for (int k = 0; k < hidden; k++) centroids[e][k] /= size[e];
            }
        }
        double[][] dist = distances(gate, intermediateSize, hidden, centroids);
        int[][] kept = new int[experts][];
        for (int e = 0; e < experts; e++) {
            double[] closeness = new double[intermediateSize];
            for (int i = 0; i < intermediateSize; i++) closeness[i] = -dist[i][e];
            kept[e] = Pruning.topChannels(closeness, width);
        }
        return kept;
    }

    private static double[][] distances(float[] rows, int count, int hidden, double[][] centroids) {
        double[][] dist = new double[count][centroids.length];  // (I, E) squared Euclidean
        for (int i = 0; i < count; i++)
            for (int e = 0; e < centroids.length; e++) {
                double s = 0;
                for (int k = 0; k < hidden; k++) { double x = rows[i * hidden + k] - centroids[e][k]; s += x * x; }
                dist[i][e] = s;
            }
        return dist;
    }

    /** all calibration windows of all datasets, in dataset order */
    static List<int[]> pooledCalibration(List<DatasetWindows> windows) {
        List<int[]> pool = new ArrayList<>();
        for (DatasetWindows w : windows) pool.addAll(w.calibration());
        return pool;
    }

    /**
     * kept channels (L × active width) of a dense baseline: WIFV (flap; {@code stats} = the pooled windows' statistics)
     * or Taylor (llm_pruner; {@code stats} unused, may be null) on the pooled windows
     */
    public static int[][] denseKeptChannels(LlamaModel dense, String method, List<int[]> pooled, CalibrationStatistics stats, int activeWidth) {
        ChannelScore score = method.equals("flap") ? ChannelScore.parse("wifv", "flap score") : TaylorScore.compute(dense, pooled);
        if (method.equals("flap") && stats == null) throw new IllegalArgumentException("flap needs the pooled calibration statistics");
        int layers = dense.config().numHiddenLayers();
        int[][] kept = new int[layers][];
        for (int l = 0; l < layers; l++) {
            DenseFfn ffn = Pruning.denseBlock(dense, l);
            kept[l] = Pruning.topChannels(score.score(l, stats == null ? null : stats.layers()[l], ffn.down()), activeWidth);
        }
        return kept;
    }

    /**
     * The config of a dense baseline: {@code intermediate_size} = {@code activeWidth}, with {@code mlp_bias: true} when
     * {@code biased} (bias compensation).
     */
    static LlamaConfig prunedDenseConfig(LlamaConfig dense, int activeWidth, boolean biased) {
        return dense.withIntermediateSize(activeWidth).withMlpBias(biased);
    }

    /**
     * The weights of a dense baseline under their Hugging Face names: the dense model's attention, norms, embeddings and
     * lm_head, and every layer's FFN narrowed to {@code kept[l]}. With {@code stats} (bias compensation, the pooled windows'
     * statistics) also the three MLP biases of {@code mlp_bias: true}: down_proj.bias (d) = W_down[:, removed]·mean(h_removed),
     * gate_proj.bias and up_proj.bias (active width) = 0, so the block equals the pruned FFN plus b exactly.
     */
    static Map<String, Tensor> prunedDenseWeights(LlamaModel dense, int[][] kept, CalibrationStatistics stats) {
        return prunedDenseWeights(dense, prunedBlocks(dense, kept, stats), null);
    }

    /** every layer's FFN of {@code dense} narrowed to {@code kept[l]}, with the down bias of {@code stats}' compensation when not null */
    static DenseFfn[] prunedBlocks(LlamaModel dense, int[][] kept, CalibrationStatistics stats) {
        return prunedBlocks(dense, kept, stats, TensorArena.auto());
    }

    /** as above, the pruned weights in memory owned by {@code arena} */
    static DenseFfn[] prunedBlocks(LlamaModel dense, int[][] kept, CalibrationStatistics stats, TensorArena arena) {
        DenseFfn[] pruned = new DenseFfn[kept.length];
        for (int l = 0; l < kept.length; l++) {
            DenseFfn block = Pruning.denseBlock(dense, l);
            pruned[l] = Pruning.prune(block, kept[l], stats == null ? null : Pruning.biasCompensation(block.down(), kept[l], stats.layers()[l].mean()), arena);
        }
        return pruned;
    }

    /** as {@link #prunedDenseWeights(LlamaModel, int[][], CalibrationStatistics)} from {@link #prunedBlocks}, with layer l's down_proj (and bias) × {@code scale[l]} when not null */
    static Map<String, Tensor> prunedDenseWeights(LlamaModel dense, DenseFfn[] blocks, double[] scale) {
        Map<String, Tensor> weights = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : dense.namedWeights().entrySet())
            if (!e.getKey().contains(".mlp.")) weights.put(e.getKey(), e.getValue());
        for (int l = 0; l < blocks.length; l++) {
            DenseFfn pruned = blocks[l];
            String p = "model.layers." + l + ".mlp.";
            weights.put(p + "gate_proj.weight", pruned.gate());
            weights.put(p + "up_proj.weight", pruned.up());
            weights.put(p + "down_proj.weight", scale == null ? pruned.down() : OutputScale.scaled(pruned.down(), scale[l]));
            if (pruned.downBias() != null) {
                int width = pruned.intermediateSize();
                weights.put(p + "gate_proj.bias", Tensor.ofFloats(p + "gate_proj.bias", new float[width], width));
                weights.put(p + "up_proj.bias", Tensor.ofFloats(p + "up_proj.bias", new float[width], width));
                weights.put(p + "down_proj.bias", scale == null ? pruned.downBias() : OutputScale.scaled(pruned.downBias(), scale[l]));
            }
        }
        return weights;
    }

    /** kept[e][l] of a MoE baseline */
    public static int[][][] moeKeptChannels(LlamaModel dense, String method, int experts, int width, long seed) {
        LlamaConfig c = dense.config();
        if (method.equals("llama_moe_random")) return randomSubsets(c.intermediateSize(), width, experts, c.numHiddenLayers(), seed);
        int[][][] kept = new int[experts][c.numHiddenLayers()][];
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            int[][] perExpert = kmeansExperts(Pruning.denseBlock(dense, l).gate().toFloatArray(), c.intermediateSize(), c.hiddenSize(), experts, width, seed + l);
            for (int e = 0; e < experts; e++) kept[e][l] = perExpert[e];
        }
        return kept;
    }

    /** builds, retrains, exports and evaluates one baseline in {@code dir}; returns its report entry (resumable like DIVE) */
    static Map<String, Object> run(String method, DiveConversion.Request q, Path modelDir, Path tokenizerJson, List<String> names,
                                   List<DatasetWindows> windows, Path dir, Backend backend, Map<String, Double> timings, DType exportDtype) throws Exception {
        ConvertRecipe recipe = q.recipe();
        if (method.equals("dive_random_groups")) {
            Map<String, Object> report = DiveConversion.run(new DiveConversion.Request(modelDir, q.data(), q.experts(), q.topK(), q.ratio(),
                    recipe.withRandomGroupingOnly(), dir, q.progress(), null, q.load()), backend);
            @SuppressWarnings("unchecked") Map<String, Object> entry = new LinkedHashMap<>((Map<String, Object>) ((Map<String, Object>) report.get("methods")).get("dive"));
            entry.put("variant", "DIVE with grouping: random (no affinity mining)");
            return entry;
        }
        boolean denseMethod = isDense(method);
        LlamaConfig modelConfig = LlamaConfig.load(modelDir);
        // dense + bias compensation: a Llama with mlp_bias (down_proj.bias = b, gate/up biases 0); when the active width is
        // the whole FFN nothing is removed and b would be 0: the plain Llama path
        boolean compensated = denseMethod && recipe.biasCompensation()
                && activeWidth(modelConfig.intermediateSize(), q.topK(), q.ratio()) < modelConfig.intermediateSize();
        Files.createDirectories(dir);
        Path build = dir.resolve("build");
        String variant;
        int width = Pruning.keptWidth(modelConfig.intermediateSize(), q.ratio());
        try (LlamaModel dense = LlamaModel.load(modelDir, backend, q.load())) {
            LlamaConfig dc = dense.config();
            List<int[]> pooled = pooledCalibration(windows);
            int active = activeWidth(dc.intermediateSize(), q.topK(), q.ratio());
            if (denseMethod) {
                variant = (method.equals("flap") ? "WIFV" : "first-order Taylor") + " on all calibration windows pooled, uniform width "
                        + active + " of " + dc.intermediateSize() + " per layer, " + (compensated
                        ? "with bias compensation: a Llama with mlp_bias, down_proj.bias = W_down[:, removed]·mean(h_removed), "
                          + "gate/up biases 0; LoRA on gate/up/down + RMSNorms (biases frozen)"
                        : "no bias; LoRA on gate/up/down + RMSNorms");
                if (!Files.isRegularFile(build.resolve("config.json"))) {
                    long t = System.nanoTime();
                    dive.util.MemoryPlan.enterStage(method + " build");
                    CalibrationStatistics stats = method.equals("flap") || compensated ? CalibrationStatistics.collect(dense, pooled) : null;
                    int[][] kept = denseKeptChannels(dense, method, pooled, stats, active);
                    writeKept(dir.resolve("kept_channels.json"), new int[][][] {kept});
                    try (TensorArena arena = TensorArena.shared()) {  // the pruned FFNs, freed once written
                        DenseFfn[] blocks = prunedBlocks(dense, kept, compensated ? stats : null, arena);
                        double[] scale = null;
                        if (recipe.outputScale()) {
                            scale = OutputScale.fit(dense, pooled, kept, blocks);
                            OutputScale.write(dir, new double[][] {scale});
                        }
                        try (TrainableLlama pruned = TrainableLlama.copyOf(prunedDenseConfig(dc, active, compensated),
                                prunedDenseWeights(dense, blocks, scale)::get, method, backend)) {
                            pruned.saveCheckpoint(build, tokenizerJson, null);  // pruned weights in the dense dtype
                        }
                    }
                    timings.put(method + "_build", seconds(t));
                }
                LlamaConfig built = LlamaConfig.load(build);
                if (built.moe() != null || built.mlpBias() != compensated)
                    throw new IllegalStateException(build + " holds a " + built.modelType() + (built.mlpBias() ? " with mlp_bias" : "")
                            + " model, but " + method + (compensated ? " with" : " without") + " bias compensation builds a llama"
                            + (compensated ? " with mlp_bias" : "") + " (left by an older version or another recipe?): delete " + dir + " to rebuild it");
            } else {
                variant = method.equals("llama_moe_random")
                        ? "an independent seeded random subset of " + width + " channels per expert and layer (overlapping)"
                        : "balanced k-means on the rows of W_gate per layer; expert e = the " + width + " channels nearest centroid e (overlapping)";
                if (!Files.isDirectory(build)) {
                    long t = System.nanoTime();
                    dive.util.MemoryPlan.enterStage(method + " build");
                    int[][][] kept = moeKeptChannels(dense, method, q.experts(), width, recipe.seed());
                    ExpertReconstruction.Options options = new ExpertReconstruction.Options(q.experts(), q.topK(), q.ratio(), null,
                            recipe.biasCompensation(), 0, recipe.seed(), recipe.routerInitStd(), recipe.seed(), recipe.auxLossCoef());
                    List<CalibrationStatistics> biasStats = null;
                    if (recipe.biasCompensation())
                        biasStats = java.util.Collections.nCopies(q.experts(), CalibrationStatistics.collect(dense, pooled));
                    try (TensorArena arena = TensorArena.shared()) {  // the experts, freed once written
                        ExpertReconstruction.Result built = ExpertReconstruction.fromKeptChannels(dense, kept, biasStats, options, arena);
                        if (recipe.outputScale()) {
                            double[][] scales = new double[q.experts()][];
                            built = OutputScale.apply(dense, built, java.util.Collections.nCopies(q.experts(), pooled), scales);
                            OutputScale.write(dir, scales);
                        }
                        writeKept(dir.resolve("kept_channels.json"), kept);
                        MixtralExport.write(build, built.config(), built.weights(),
                                MixtralExport.Options.defaults().withTokenizerFrom(modelDir).withExpertBias(true));
                    }
                    timings.put(method + "_build", seconds(t));
                }
            }
        }
        try (LlamaModel before = LlamaModel.load(build, backend)) {
            DiveConversion.evaluateOnce(before, windows, dir.resolve("eval/before.json"), method + " before", q.progress(), timings, method + "_eval_before");
        }
        // ---- retraining: the same stages and budgets (dense: stage 0's tokens join stage 1)
        Path previous = build;
        long trainingTokens = 0;
        List<ConvertRecipe.Stage> stages = new ArrayList<>(List.of(recipe.stage0(), recipe.stage1(), recipe.stage2()));
        if (denseMethod) {
            ConvertRecipe.Stage s1 = recipe.stage1();
            stages.set(1, new ConvertRecipe.Stage(s1.tokens() + recipe.stage0().tokens(), s1.lr(), s1.batchSize(), s1.seqLen(), s1.warmup(),
                    s1.temperature(), s1.loraR(), s1.loraAlpha(), s1.loraDropout()));
            stages.set(0, null);
        }
        for (int s = 0; s < 3; s++) {
            ConvertRecipe.Stage stage = stages.get(s);
            if (stage == null || stage.tokens() == 0) continue;
            Path stageDir = dir.resolve("stage" + s);
            trainingTokens += DiveConversion.runStage(s, stage, q, recipe, previous, tokenizerJson, names, stageDir, timings, backend, denseMethod, method + "_");
            previous = stageDir.resolve(Trainer.FINAL_DIR);
        }
        // ---- export
        Path export = dir.resolve("model");
        if (!Files.isDirectory(export)) {
            if (denseMethod) exportLlama(previous, export, modelDir, exportDtype);
            else try (LlamaModel last = LlamaModel.load(previous, backend)) {
                MixtralExport.write(export, last, MixtralExport.Options.defaults().withTokenizerFrom(modelDir).withExpertBias(true)
                        .withDtype(exportDtype));
            }
        }
        long[] params;
        try (LlamaModel after = LlamaModel.load(export, backend)) {
            DiveConversion.evaluateOnce(after, windows, dir.resolve("eval/after.json"), method + " after", q.progress(), timings, method + "_eval_after");
            params = ExpertReconstruction.parameterCounts(after);
        }
        Map<String, Object> entry = new LinkedHashMap<>();
        entry.put("variant", variant + (recipe.outputScale() ? "; output scale: least squares against the dense FFN on the pooled "
                + "calibration windows, per " + (denseMethod ? "layer" : "expert and layer") + ", folded into the down projection (" + OutputScale.FILE + ")" : ""));
        entry.put("ppl_before_retraining", JSON.readTree(dir.resolve("eval/before.json").toFile()).get("ppl"));
        JsonNode after = JSON.readTree(dir.resolve("eval/after.json").toFile());
        entry.put("ppl_after_retraining", after.get("ppl"));
        entry.put("params_total", params[0]);
        entry.put("params_active", params[1]);
        entry.put("training_tokens", trainingTokens);
        if (!after.get("routing_share").isNull()) entry.put("routing_share", after.get("routing_share"));
        entry.put("export", export.toString());
        entry.put("export_format", compensated ? "llama with mlp_bias (stock LlamaForCausalLM; down_proj.bias = the bias compensation, "
                + "gate_proj/up_proj biases zero)" : denseMethod ? "llama" : recipe.biasCompensation()
                ? "mixtral with dive_expert_bias (this engine's extension) unless all biases are zero" : "stock Mixtral");
        return entry;
    }

    private static void writeKept(Path file, int[][][] kept) throws IOException {
        AtomicFiles.writeString(file, JSON.writeValueAsString(Map.of("kept_channels", kept)) + "\n");
    }

    /** the trained folder's files, with MODEL_DIR's tokenizer files, as a new folder (appears at once) */
    /** the Llama checkpoint {@code from} written to {@code to} (atomically, a folder) as {@code dtype}, with the tokenizer files of {@code tokenizerFrom} */
    private static void exportLlama(Path from, Path to, Path tokenizerFrom, DType dtype) throws IOException {
        Path temp = AtomicFiles.tempDirectoryBeside(to);
        try (TrainableLlama model = TrainableLlama.fromCheckpoint(from, new dive.backend.ScalarBackend())) {
            model.saveCheckpoint(temp, null, dtype);
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(from + ": " + e.getMessage(), e);
        }
        for (String f : TOKENIZER_FILES) {
            Path src = tokenizerFrom.resolve(f);
            if (Files.isRegularFile(src)) Files.copy(src, temp.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
        Files.move(temp, to, StandardCopyOption.ATOMIC_MOVE);
    }

    private static double seconds(long startNanos) { return Math.round((System.nanoTime() - startNanos) / 1e7) / 100.0; }
}
