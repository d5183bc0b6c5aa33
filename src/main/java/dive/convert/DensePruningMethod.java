package dive.convert;

import dive.model.DenseFfn;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import dive.train.TrainableLlama;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The dense baselines ({@link FlapMethod}, {@link LlmPrunerMethod}): the dense model pruned uniformly to the active width
 * k·round(I·(1 − r)) (capped at I) by a channel score on all calibration windows of all datasets pooled; a Llama folder,
 * retrained with LoRA on gate_proj/up_proj/down_proj and every RMSNorm in full ({@link Method.Family#DENSE}).
 * With bias compensation (and channels removed) it is a stock Llama with {@code mlp_bias: true}: down_proj.bias = the
 * compensation W_down[:, removed]·mean(h_removed), gate_proj.bias and up_proj.bias zero, so {@code LlamaForCausalLM}
 * loads it exactly; the biases stay frozen while LoRA retrains.
 */
public abstract sealed class DensePruningMethod implements Method permits FlapMethod, LlmPrunerMethod {
    static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "tokenizer.model", "generation_config.json");

    /** the channel score on the pooled windows {@code pooled} */
    abstract ChannelScore score(LlamaModel dense, List<int[]> pooled);

    /** true when the score reads the pooled windows' channel statistics (WIFV) */
    abstract boolean needsStatistics();

    /** the score's name in the variant text */
    abstract String scoreName();

    @Override public final Family family() { return Family.DENSE; }

    /** the active FFN width of the dense baselines: k experts of width round(I·(1 − r)), at most I */
    public static int activeWidth(int intermediateSize, int topK, double ratio) {
        return Math.min(intermediateSize, topK * Pruning.keptWidth(intermediateSize, ratio));
    }

    /** bias compensation on and channels removed: the build is a Llama with mlp_bias (else b would be 0: the plain Llama path) */
    static boolean compensated(Context c) {
        DiveConversion.Request q = c.request();
        int size = c.denseConfig().intermediateSize();
        return c.recipe().biasCompensation() && activeWidth(size, q.topK(), q.ratio()) < size;
    }

    @Override
    public String variant(Context c) {
        int size = c.denseConfig().intermediateSize();
        return scoreName() + " on all calibration windows pooled, uniform width " + activeWidth(size, c.request().topK(), c.request().ratio())
                + " of " + size + " per layer, " + (compensated(c)
                ? "with bias compensation: a Llama with mlp_bias, down_proj.bias = W_down[:, removed]·mean(h_removed), "
                  + "gate/up biases 0; LoRA on gate/up/down + RMSNorms (biases frozen)"
                : "no bias; LoRA on gate/up/down + RMSNorms") + Method.outputScaleNote(c.recipe(), false);
    }

    @Override
    public String exportFormat(Context c) {
        return compensated(c) ? "llama with mlp_bias (stock LlamaForCausalLM; down_proj.bias = the bias compensation, "
                + "gate_proj/up_proj biases zero)" : "llama";
    }

    @Override
    public void build(BuildContext b) throws Exception {
        Context c = b.context();
        LlamaModel dense = b.dense();
        LlamaConfig dc = dense.config();
        List<int[]> pooled = c.pooledCalibration();
        int active = activeWidth(dc.intermediateSize(), c.request().topK(), c.request().ratio());
        boolean compensated = compensated(c);
        CalibrationStatistics stats = needsStatistics() || compensated ? CalibrationStatistics.collect(dense, pooled) : null;
        int[][] kept = keptChannels(dense, pooled, stats, active);
        Pruning.writeKeptChannels(c.dir().resolve("kept_channels.json"), new int[][][] {kept});
        try (TensorArena arena = TensorArena.shared()) {  // the pruned FFNs, freed once written
            DenseFfn[] blocks = prunedBlocks(dense, kept, compensated ? stats : null, arena);
            double[] scale = null;
            if (c.recipe().outputScale()) {
                scale = OutputScale.fit(dense, pooled, kept, blocks);
                OutputScale.write(c.dir(), new double[][] {scale});
            }
            try (TrainableLlama pruned = TrainableLlama.copyOf(prunedConfig(dc, active, compensated),
                    prunedWeights(dense, blocks, scale)::get, name(), c.backend())) {
                pruned.saveCheckpoint(b.buildDir(), c.tokenizerJson(), null);  // pruned weights in the dense dtype
            }
        }
    }

    @Override
    public void checkBuilt(Path build, Context c) throws IOException {
        boolean compensated = compensated(c);
        LlamaConfig built = LlamaConfig.load(build);
        if (built.moe() != null || built.mlpBias() != compensated)
            throw new IllegalStateException(build + " holds a " + built.modelType() + (built.mlpBias() ? " with mlp_bias" : "")
                    + " model, but " + name() + (compensated ? " with" : " without") + " bias compensation builds a llama"
                    + (compensated ? " with mlp_bias" : "") + " (left by an older version or another recipe?): delete " + c.dir() + " to rebuild it");
    }

    /**
     * kept channels (L × active width) by this method's score on the pooled windows; {@code stats} = the pooled windows'
     * statistics (needed by WIFV, unused by Taylor: may then be null)
     */
    public int[][] keptChannels(LlamaModel dense, List<int[]> pooled, CalibrationStatistics stats, int activeWidth) {
        ChannelScore score = score(dense, pooled);
        if (needsStatistics() && stats == null) throw new IllegalArgumentException(name() + " needs the pooled calibration statistics");
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
    static LlamaConfig prunedConfig(LlamaConfig dense, int activeWidth, boolean biased) {
        return dense.withIntermediateSize(activeWidth).withMlpBias(biased);
    }

    /**
     * The weights of a dense baseline under their Hugging Face names: the dense model's attention, norms, embeddings and
     * lm_head, and every layer's FFN narrowed to {@code kept[l]}. With {@code stats} (bias compensation, the pooled windows'
     * statistics) also the three MLP biases of {@code mlp_bias: true}: down_proj.bias (d) = W_down[:, removed]·mean(h_removed),
     * gate_proj.bias and up_proj.bias (active width) = 0, so the block equals the pruned FFN plus b exactly.
     */
    static Map<String, Tensor> prunedWeights(LlamaModel dense, int[][] kept, CalibrationStatistics stats) {
        return prunedWeights(dense, prunedBlocks(dense, kept, stats, TensorArena.auto()), null);
    }

    /** every layer's FFN of {@code dense} narrowed to {@code kept[l]}, with the down bias of {@code stats}' compensation when not null, in memory owned by {@code arena} */
    static DenseFfn[] prunedBlocks(LlamaModel dense, int[][] kept, CalibrationStatistics stats, TensorArena arena) {
        DenseFfn[] pruned = new DenseFfn[kept.length];
        for (int l = 0; l < kept.length; l++) {
            DenseFfn block = Pruning.denseBlock(dense, l);
            pruned[l] = Pruning.prune(block, kept[l], stats == null ? null : Pruning.biasCompensation(block.down(), kept[l], stats.layers()[l].mean()), arena);
        }
        return pruned;
    }

    /** as {@link #prunedWeights(LlamaModel, int[][], CalibrationStatistics)} from {@link #prunedBlocks}, with layer l's down_proj (and bias) × {@code scale[l]} when not null */
    static Map<String, Tensor> prunedWeights(LlamaModel dense, DenseFfn[] blocks, double[] scale) {
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

    /** the Llama checkpoint {@code from} written to {@code to} (atomically, a folder) as {@code dtype}, with the tokenizer files of {@code tokenizerFrom} */
    static void exportLlama(Path from, Path to, Path tokenizerFrom, DType dtype) throws IOException {
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
}
