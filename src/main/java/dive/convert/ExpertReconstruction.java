package dive.convert;

import dive.model.DenseFfn;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import dive.train.SplitMix64;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * DIVE's expert reconstruction (DIVE-METHOD.md section 4): from a dense Llama model and a grouping of its
 * calibration datasets into E groups, a Mixtral model whose expert g of every layer is the dense FFN pruned
 * (section 2) with group g's pooled calibration windows. Attention, embeddings, norms and the LM head are the dense
 * model's own tensors (shared views); each layer gets a router (E, d), no bias, drawn from normal(0, routerInitStd)
 * by {@link Random}(routerSeed + layer).
 *
 * <p><b>Which windows an expert sees.</b> Group g pools the calibration windows of its datasets (in dataset order),
 * shuffles them with {@link SplitMix64}(seed + g) (Fisher–Yates) and takes the first {@code nsamples}. When
 * {@code nsamples} is 0 or at least the pool's size, the sample is the whole pool, and since channel statistics do
 * not depend on the order of their windows, the group's statistics are the Chan merge of the per-dataset statistics
 * (gathered once, e.g. by affinity mining) — no further forward pass. Otherwise the statistics are gathered on the
 * sampled windows with one more dense pass.
 */
public final class ExpertReconstruction {
    private ExpertReconstruction() {}

    /** the default router init scale: transformers' initializer_range */
    public static final double DEFAULT_ROUTER_INIT_STD = 0.02;

    /**
     * @param score            channel score of every group (see the per-group overload of reconstruct for Taylor)
     * @param nsamples         windows per expert (0 = all pooled windows of the group)
     * @param seed             the pooled windows of group g are shuffled with seed + g
     * @param routerInitStd    routers ~ normal(0, routerInitStd)
     * @param routerSeed       layer l's router is drawn from Random(routerSeed + l)
     * @param auxLossCoef      router_aux_loss_coef written into the config (0 = off, output_router_logits false)
     */
    public record Options(int experts, int topK, double ratio, ChannelScore score, boolean biasCompensation, int nsamples,
                          long seed, double routerInitStd, long routerSeed, double auxLossCoef) {
        public Options {
            if (nsamples < 0) throw new IllegalArgumentException("nsamples " + nsamples + ": expected ≥ 0 (0 = every pooled window)");
            if (!(routerInitStd > 0) || Double.isInfinite(routerInitStd)) throw new IllegalArgumentException("router_init_std " + routerInitStd + ": expected a finite value > 0");
            if (!(auxLossCoef >= 0) || Double.isInfinite(auxLossCoef)) throw new IllegalArgumentException("aux_loss_coef " + auxLossCoef + ": expected a finite value ≥ 0");
        }
    }

    /**
     * Checks (E, k, r) against the model and the data before any work: 1 ≤ k ≤ E, r ∈ (0, 1), an expert width
     * round(I·(1 − r)) ≥ 1, E ≤ the number of datasets. Returns the expert width.
     */
    public static int validate(int experts, int topK, double ratio, int intermediateSize, int datasets) {
        if (experts < 1) throw new IllegalArgumentException("experts " + experts + ": expected ≥ 1");
        if (topK < 1) throw new IllegalArgumentException("top_k " + topK + ": expected ≥ 1");
        if (topK > experts) throw new IllegalArgumentException("top_k " + topK + " exceeds experts " + experts + " (a token cannot use more experts than exist)");
        int width = Pruning.keptWidth(intermediateSize, ratio);  // names --ratio: r ∉ (0, 1) or a width that rounds to 0
        if (experts > datasets)
            throw new IllegalArgumentException("experts " + experts + " exceeds the " + datasets + " datasets: every expert needs at least one dataset");
        return width;
    }

    /** group g's calibration windows: its datasets' windows pooled in order, shuffled with seed + g, the first nsamples (0 = all) */
    public static List<int[]> pooledWindows(List<DatasetWindows> groupDatasets, long seed, int group, int nsamples) {
        List<int[]> pool = new ArrayList<>();
        for (DatasetWindows w : groupDatasets) pool.addAll(w.calibration());
        SplitMix64 random = new SplitMix64(seed + group);
        for (int i = pool.size() - 1; i > 0; i--) {
            int j = (int) random.nextLong(i + 1L);
            int[] t = pool.get(i); pool.set(i, pool.get(j)); pool.set(j, t);
        }
        return nsamples == 0 || nsamples >= pool.size() ? pool : new ArrayList<>(pool.subList(0, nsamples));
    }

    /** true when the sample of a group is its whole pool (statistics are then a merge of the per-dataset ones) */
    public static boolean usesWholePool(int poolSize, int nsamples) { return nsamples == 0 || nsamples >= poolSize; }

    /**
     * Group g's statistics: the merge of its datasets' {@code perDataset} statistics when the sample is the whole pool,
     * else gathered on {@link #pooledWindows} with the dense model.
     */
    public static CalibrationStatistics groupStatistics(LlamaModel dense, List<DatasetWindows> windows, List<CalibrationStatistics> perDataset,
                                                        int[] groupOfDataset, int group, Options options) {
        List<DatasetWindows> members = new ArrayList<>();
        List<CalibrationStatistics> memberStats = new ArrayList<>();
        for (int i = 0; i < groupOfDataset.length; i++)
            if (groupOfDataset[i] == group) { members.add(windows.get(i)); memberStats.add(perDataset == null ? null : perDataset.get(i)); }
        if (members.isEmpty()) throw new IllegalArgumentException("expert group " + group + " has no dataset (every group must be non-empty)");
        int poolSize = members.stream().mapToInt(w -> w.calibration().size()).sum();
        if (usesWholePool(poolSize, options.nsamples()) && !memberStats.contains(null)) {
            CalibrationStatistics merged = memberStats.getFirst();
            for (int i = 1; i < memberStats.size(); i++) merged = CalibrationStatistics.merge(merged, memberStats.get(i));
            return merged;
        }
        return CalibrationStatistics.collect(dense, pooledWindows(members, options.seed(), group, options.nsamples()));
    }

    /** the reconstructed model: config, weights by Hugging Face name, and per expert and layer the kept dense channels */
    public record Result(LlamaConfig config, Map<String, Tensor> weights, int[][][] keptChannels, int expertWidth) {
        /** a Mixtral {@link LlamaModel} over these weights (valid while the dense model is open) */
        public LlamaModel model(dive.backend.Backend backend, String source) {
            return LlamaModel.fromWeights(config, weights::get, source, backend, null);
        }
    }

    /**
     * Builds the Mixtral model.
     *
     * @param groupStatistics per group g, the calibration statistics of expert g ({@link #groupStatistics})
     */
    public static Result reconstruct(LlamaModel dense, List<CalibrationStatistics> groupStatistics, Options options) {
        return reconstruct(dense, groupStatistics, java.util.Collections.nCopies(groupStatistics.size(), options.score()), options);
    }

    /** as {@link #reconstruct(LlamaModel, List, Options)} with a score per group (Taylor scores depend on the group's windows) */
    public static Result reconstruct(LlamaModel dense, List<CalibrationStatistics> groupStatistics, List<ChannelScore> groupScores, Options options) {
        return reconstruct(dense, groupStatistics, groupScores, options, TensorArena.auto());
    }

    /** as above, the experts' weights in memory owned by {@code arena} (shared): the result is valid while it and {@code dense} are open */
    public static Result reconstruct(LlamaModel dense, List<CalibrationStatistics> groupStatistics, List<ChannelScore> groupScores, Options options,
                                     TensorArena arena) {
        LlamaConfig dc = dense.config();
        int experts = options.experts();
        if (groupStatistics.size() != experts)
            throw new IllegalArgumentException(groupStatistics.size() + " groups of statistics for experts " + experts);
        int[][][] kept = new int[experts][][];
        for (int g = 0; g < experts; g++) kept[g] = Pruning.keptChannels(dense, groupStatistics.get(g), groupScores.get(g), options.ratio());
        return fromKeptChannels(dense, kept, groupStatistics, options, arena);
    }

    /**
     * The Mixtral model whose expert e of layer l keeps the dense channels {@code kept[e][l]} (ascending, each of the
     * expert width round(I·(1 − r))); routers as {@link #reconstruct}. With bias compensation, expert e's bias uses
     * the channel means of {@code biasStatistics.get(e)} (may be null without bias compensation). Used by the
     * data-free baselines ({@link LlamaMoeMethod}) with channel sets of their own.
     */
    public static Result fromKeptChannels(LlamaModel dense, int[][][] kept, List<CalibrationStatistics> biasStatistics, Options options) {
        return fromKeptChannels(dense, kept, biasStatistics, options, TensorArena.auto());
    }

    /** as above, the experts' weights in memory owned by {@code arena} (shared) */
    public static Result fromKeptChannels(LlamaModel dense, int[][][] kept, List<CalibrationStatistics> biasStatistics, Options options,
                                          TensorArena arena) {
        LlamaConfig dc = dense.config();
        int experts = options.experts();
        if (kept.length != experts) throw new IllegalArgumentException(kept.length + " channel sets for experts " + experts);
        int width = validate(experts, options.topK(), options.ratio(), dc.intermediateSize(), experts);
        for (int[][] perLayer : kept)
            for (int[] k : perLayer)
                if (k.length != width) throw new IllegalArgumentException("an expert keeps " + k.length + " channels, expected the expert width " + width);
        LlamaConfig config = dc.toMixtral(width, new LlamaConfig.Moe(experts, options.topK(), options.auxLossCoef(),
                options.auxLossCoef() > 0, options.biasCompensation()));
        int layers = dc.numHiddenLayers(), d = dc.hiddenSize();
        Map<String, Tensor> weights = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : dense.namedWeights().entrySet())
            if (!e.getKey().contains(".mlp.")) weights.put(e.getKey(), e.getValue());
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".block_sparse_moe.";
            Random random = new Random(options.routerSeed() + l);
            float[] router = new float[experts * d];  // (E, d)
            for (int i = 0; i < router.length; i++) router[i] = (float) (random.nextGaussian() * options.routerInitStd());
            weights.put(p + "gate.weight", Tensor.ofFloats(p + "gate.weight", router, experts, d));
            DenseFfn ffn = Pruning.denseBlock(dense, l);
            for (int g = 0; g < experts; g++) {
                float[] bias = options.biasCompensation()
                        ? Pruning.biasCompensation(ffn.down(), kept[g][l], biasStatistics.get(g).layers()[l].mean()) : null;
                DenseFfn expert = Pruning.prune(ffn, kept[g][l], bias, arena);
                String ep = p + "experts." + g + ".";
                weights.put(ep + "w1.weight", renamed(expert.gate(), ep + "w1.weight"));
                weights.put(ep + "w3.weight", renamed(expert.up(), ep + "w3.weight"));
                weights.put(ep + "w2.weight", renamed(expert.down(), ep + "w2.weight"));
                if (bias != null) weights.put(ep + "bias", renamed(expert.downBias(), ep + "bias"));
            }
        }
        return new Result(config, weights, kept, width);
    }

    /** the groups as lists of dataset indices (group g = datasets i with groupOfDataset[i] == g) */
    public static List<List<Integer>> members(int[] groupOfDataset, int experts) {
        List<List<Integer>> out = new ArrayList<>();
        for (int g = 0; g < experts; g++) out.add(new ArrayList<>());
        for (int i = 0; i < groupOfDataset.length; i++) out.get(groupOfDataset[i]).add(i);
        return out;
    }

    /**
     * The ablation "DIVE without affinity mining": a seeded random grouping of {@code datasets} into {@code experts}
     * non-empty groups (a Fisher–Yates permutation by SplitMix64(seed), dataset at position p → group p mod E).
     */
    public static int[] randomGroups(int datasets, int experts, long seed) {
        if (experts > datasets) throw new IllegalArgumentException("experts " + experts + " exceeds the " + datasets + " datasets");
        int[] order = permutation(datasets, seed);
        int[] groups = new int[datasets];
        for (int p = 0; p < datasets; p++) groups[order[p]] = p % experts;
        return groups;
    }

    /** a Fisher–Yates permutation of 0 … n−1 by SplitMix64(seed): for i = n−1 … 1, swap i with nextLong(i + 1) */
    static int[] permutation(int n, long seed) {
        int[] order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        SplitMix64 random = new SplitMix64(seed);
        for (int i = n - 1; i > 0; i--) {
            int j = (int) random.nextLong(i + 1L);
            int t = order[i]; order[i] = order[j]; order[j] = t;
        }
        return order;
    }

    /** total parameters and those a token uses (k of E routed experts per layer; routers and any shared expert counted as active) */
    public static long[] parameterCounts(LlamaModel model) {
        long total = 0;
        for (Tensor t : model.namedWeights().values()) total += t.numel();
        long active = total;
        if (model.isMoe()) {
            LlamaConfig.Moe moe = model.config().moe();
            long perExpert = 3L * model.config().hiddenSize() * model.config().intermediateSize();
            for (int l = 0; l < model.config().numHiddenLayers(); l++) {
                dive.model.MoeFfn ffn = model.feedForward(l) instanceof dive.model.SharedExpertMoeFfn shared ? shared.routed()
                        : (dive.model.MoeFfn) model.feedForward(l);  // a shared expert counts as active
                long expert = perExpert + (ffn.bias() != null ? model.config().hiddenSize() : 0);
                active -= (long) (moe.numLocalExperts() - moe.numExpertsPerTok()) * expert;
            }
        }
        return new long[] {total, active};
    }

    private static Tensor renamed(Tensor t, String name) { return new Tensor(name, t.dtype(), t.shape(), t.data()); }

    static String describe(int[] a) { return Arrays.toString(a); }
}
