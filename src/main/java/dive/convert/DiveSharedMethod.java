package dive.convert;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.model.DenseFfn;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.Qwen2MoeExport;
import dive.model.SharedExpertMoeFfn;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * DIVE with a shared expert ({@code dive_shared}): the groups of DIVE (the recipe's grouping), and per layer an
 * always-active shared expert of the channels every group needs plus one routed expert per group of its own channels
 * ({@link SharedExpertSplit}: widths and the rule), at the active FFN width of the plain setting (E, k, r). Routers
 * normal(0, router_init_std) by Random(seed + layer), as DIVE's. Built as a stock Qwen2-MoE: the shared expert ungated
 * at first (zero shared_expert_gate, its down projection × 2: exact) and every routed expert's down projection × k (the k
 * chosen experts' renormalised weights sum to 1, so with equal weights the routed part is the sum of the k experts'
 * partial FFNs — the A-wide FFN they were cut to form — not their average; ×1 at top-1); stage 0 trains the routers and the shared experts'
 * gates with soft routing, stages 1 and 2 LoRA on routed and shared experts + routers + gates + RMSNorms. The channels
 * of every layer go to {@code channels.json} in the method's folder. No bias compensation or output scale (Qwen2-MoE
 * experts hold no biases; refused before any work).
 */
public final class DiveSharedMethod implements Method {
    public static final String NAME = "dive_shared";
    static final String CHANNELS_FILE = "channels.json";

    @Override public String name() { return NAME; }

    @Override public Family family() { return Family.MOE; }

    @Override public String grouping(ConvertRecipe recipe) { return recipe.grouping(); }

    @Override
    public void check(DiveConversion.Request q, LlamaConfig dense) {
        refuseBiases(NAME, q.recipe());
        widths(q, dense);
    }

    /** refuses bias compensation and output scales for {@code method}, which builds a Qwen2-MoE (its experts hold no biases) */
    static void refuseBiases(String method, ConvertRecipe recipe) {
        if (recipe.biasCompensation())
            throw new IllegalArgumentException("recipe bias_compensation: true: " + method + " builds a Qwen2-MoE, whose experts hold no biases (run it with bias_compensation false)");
        if (recipe.outputScale())
            throw new IllegalArgumentException("recipe output_scale: true: not offered for " + method + " (run it with output_scale false)");
    }

    private static SharedExpertSplit.Widths widths(DiveConversion.Request q, LlamaConfig dense) {
        return SharedExpertSplit.widths(dense.intermediateSize(), q.experts(), q.topK(), q.ratio(), q.recipe().sharedShare());
    }

    @Override
    public String variant(Context c) {
        SharedExpertSplit.Widths w = widths(c.request(), c.denseConfig());
        return "a shared expert of " + w.shared() + " channels (top by " + c.recipe().score() + " on every group's windows pooled) + "
                + c.request().experts() + " routed experts of " + w.routed() + " channels (each group's top of the rest), top-"
                + c.request().topK() + ": " + w.active() + " active channels as plain DIVE's"
                + (c.request().topK() > 1 ? "; routed down projections × " + c.request().topK() : "") + "; groups: " + c.recipe().grouping();
    }

    @Override
    public String exportFormat(Context c) { return EXPORT_FORMAT; }

    /** the export format of the methods that build a Qwen2-MoE */
    static final String EXPORT_FORMAT = "stock Qwen2-MoE (shared expert + sigmoid gate)";

    @Override
    public void export(Path from, Path to, Context c, DType dtype) throws Exception { exportQwen2Moe(from, to, c, dtype); }

    /** writes the retrained Qwen2-MoE checkpoint {@code from} as the exported model {@code to} (tokenizer of the dense model) */
    static void exportQwen2Moe(Path from, Path to, Context c, DType dtype) throws Exception {
        try (LlamaModel last = LlamaModel.load(from, c.backend())) {
            Qwen2MoeExport.write(to, last, Qwen2MoeExport.Options.defaults().withTokenizerFrom(c.modelDir()).withDtype(dtype));
        }
    }

    /** every weight of {@code dense} outside its FFNs (attention, norms, embeddings, lm_head), in its order: a build's start */
    static Map<String, Tensor> nonFfnWeights(LlamaModel dense) {
        Map<String, Tensor> weights = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : dense.namedWeights().entrySet())
            if (!e.getKey().contains(".mlp.")) weights.put(e.getKey(), e.getValue());
        return weights;
    }

    @Override
    public void build(BuildContext c) throws Exception {
        DiveConversion.Request q = c.request();
        ConvertRecipe recipe = c.recipe();
        LlamaModel dense = c.dense();
        LlamaConfig dc = dense.config();
        List<DatasetWindows> windows = c.context().windows();
        int[] groups = c.groups().groupOfDataset();
        int experts = q.experts();
        SharedExpertSplit.Widths w = widths(q, dc);
        ChannelScore statistic = recipe.score().equals("taylor") ? null : ChannelScore.parse(recipe.score(), "score");
        ExpertReconstruction.Options options = new ExpertReconstruction.Options(experts, q.topK(), q.ratio(), statistic, false,
                recipe.nsamples(), recipe.seed(), recipe.routerInitStd(), recipe.seed(), recipe.auxLossCoef());
        List<CalibrationStatistics> perDataset = c.groups().perDataset();
        List<CalibrationStatistics> groupStats = new ArrayList<>();
        List<ChannelScore> groupScores = new ArrayList<>();
        List<int[]> everyGroupsWindows = new ArrayList<>();
        try (Progress bar = new Progress("experts", experts + 1, "groups", q.progress())) {
            for (int g = 0; g < experts; g++) {
                List<DatasetWindows> members = new ArrayList<>();
                for (int i = 0; i < groups.length; i++) if (groups[i] == g) members.add(windows.get(i));
                int pool = members.stream().mapToInt(x -> x.calibration().size()).sum();
                List<int[]> sample = ExpertReconstruction.pooledWindows(members, recipe.seed(), g, recipe.nsamples());
                everyGroupsWindows.addAll(sample);
                if (perDataset == null && ExpertReconstruction.usesWholePool(pool, recipe.nsamples())) {
                    perDataset = new ArrayList<>();
                    for (DatasetWindows x : windows) perDataset.add(CalibrationStatistics.collect(dense, x.calibration()));
                }
                groupStats.add(ExpertReconstruction.groupStatistics(dense, windows, perDataset, groups, g, options));
                groupScores.add(statistic != null ? statistic : TaylorScore.compute(dense, sample));
                bar.step(1);
            }
            // the pooled statistics: every group's merged (the same windows the groups saw)
            CalibrationStatistics pooled = groupStats.getFirst();
            for (int g = 1; g < experts; g++) pooled = CalibrationStatistics.merge(pooled, groupStats.get(g));
            ChannelScore pooledScore = statistic != null ? statistic : TaylorScore.compute(dense, everyGroupsWindows);
            bar.step(1);

            int layers = dc.numHiddenLayers(), d = dc.hiddenSize();
            Map<String, Tensor> weights = nonFfnWeights(dense);
            List<Map<String, Object>> channels = new ArrayList<>();
            try (TensorArena arena = TensorArena.shared()) {  // the experts, freed once written
                for (int l = 0; l < layers; l++) {
                    DenseFfn ffn = Pruning.denseBlock(dense, l);
                    double[][] byGroup = new double[experts][];
                    for (int g = 0; g < experts; g++) byGroup[g] = groupScores.get(g).score(l, groupStats.get(g).layers()[l], ffn.down());
                    SharedExpertSplit.Split split = SharedExpertSplit.split(pooledScore.score(l, pooled.layers()[l], ffn.down()), byGroup, w);
                    String prefix = "model.layers." + l + ".";
                    Random random = new Random(options.routerSeed() + l);
                    float[] router = new float[experts * d];  // (E, d)
                    for (int i = 0; i < router.length; i++) router[i] = (float) (random.nextGaussian() * options.routerInitStd());
                    SharedExpertMoeFfn.fromChannels(ffn, split.shared(), split.routed(),
                                    Tensor.ofFloats(prefix + "mlp.gate.weight", router, experts, d), q.topK(), q.topK(), prefix, arena)
                            .collectWeights(prefix, weights);
                    Map<String, Object> layer = new LinkedHashMap<>();
                    layer.put("shared", split.shared());
                    layer.put("routed", split.routed());
                    channels.add(layer);
                }
                Map<String, Object> json = new LinkedHashMap<>();
                json.put("shared_width", w.shared());
                json.put("routed_width", w.routed());
                json.put("active_width", w.active());
                json.put("routed_down_factor", q.topK());
                json.put("layers", channels);
                AtomicFiles.writeString(c.dir().resolve(CHANNELS_FILE), new ObjectMapper().writeValueAsString(json) + "\n");
                Qwen2MoeExport.write(c.buildDir(), dc.toQwen2Moe(w.routed(), w.shared(), experts, q.topK()), weights,
                        Qwen2MoeExport.Options.defaults().withTokenizerFrom(c.context().modelDir()));
            }
        }
    }
}
