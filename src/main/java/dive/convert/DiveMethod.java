package dive.convert;

import dive.model.LlamaModel;
import dive.tensor.TensorArena;
import dive.util.Progress;

import java.util.ArrayList;
import java.util.List;

/**
 * DIVE (DIVE-METHOD.md section 4): per group of datasets (the recipe's grouping: affinity mining, random or a file), the
 * group's pooled calibration windows prune the dense FFN of every layer; the pruned FFN of group g is expert g (with
 * bias compensation and output scale as the recipe says); routers normal(0, router_init_std). Built into
 * {@code experts/} as a Mixtral (dive_expert_bias with bias compensation).
 */
public final class DiveMethod implements Method {
    public static final String NAME = "dive";

    @Override public String name() { return NAME; }

    @Override public Family family() { return Family.MOE; }

    @Override public String grouping(ConvertRecipe recipe) { return recipe.grouping(); }

    @Override public String buildFolder() { return "experts"; }

    @Override public String variant(Context c) { return null; }

    @Override
    public void build(BuildContext c) throws Exception {
        DiveConversion.Request q = c.request();
        ConvertRecipe recipe = c.recipe();
        LlamaModel dense = c.dense();
        List<DatasetWindows> windows = c.context().windows();
        int[] groups = c.groups().groupOfDataset();
        List<CalibrationStatistics> perDataset = c.groups().perDataset();
        ExpertReconstruction.Options options = new ExpertReconstruction.Options(q.experts(), q.topK(), q.ratio(),
                recipe.score().equals("taylor") ? null : ChannelScore.parse(recipe.score(), "score"), recipe.biasCompensation(),
                recipe.nsamples(), recipe.seed(), recipe.routerInitStd(), recipe.seed(), recipe.auxLossCoef());
        List<CalibrationStatistics> groupStats = new ArrayList<>();
        List<ChannelScore> scores = new ArrayList<>();
        List<List<int[]>> expertWindows = new ArrayList<>();
        try (Progress bar = new Progress("experts", q.experts(), "experts", q.progress())) {
            for (int g = 0; g < q.experts(); g++) {
                List<DatasetWindows> members = new ArrayList<>();
                for (int i = 0; i < groups.length; i++) if (groups[i] == g) members.add(windows.get(i));
                int pool = members.stream().mapToInt(w -> w.calibration().size()).sum();
                expertWindows.add(ExpertReconstruction.pooledWindows(members, recipe.seed(), g, recipe.nsamples()));
                if (perDataset == null && ExpertReconstruction.usesWholePool(pool, recipe.nsamples())) {
                    perDataset = new ArrayList<>();  // the same per-dataset statistics affinity mining gathers
                    for (DatasetWindows w : windows) perDataset.add(CalibrationStatistics.collect(dense, w.calibration()));
                }
                groupStats.add(ExpertReconstruction.groupStatistics(dense, windows, perDataset, groups, g, options));
                scores.add(options.score() != null ? options.score() : TaylorScore.compute(dense, expertWindows.get(g)));
                bar.step(1);
            }
        }
        try (TensorArena arena = TensorArena.shared()) {  // the experts, freed once written
            c.writeExperts(ExpertReconstruction.reconstruct(dense, groupStats, scores, options, arena), expertWindows);
        }
    }
}
