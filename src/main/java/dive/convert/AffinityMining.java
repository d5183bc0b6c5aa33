package dive.convert;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dive.data.Corpus;
import dive.data.Manifest;
import dive.model.LlamaModel;
import dive.report.Heatmap;
import dive.tensor.TensorArena;
import dive.tokenizer.Tokenizer;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * DIVE's domain affinity mining (section 3) in one call: per dataset, calibration statistics (gathered once) →
 * pruned model → perplexity on every dataset's affinity-evaluation windows → P (D × D) → column-normalised A →
 * Pearson correlation of A's rows → agglomerative clustering on 1 − corr → E groups. Writes
 * {@code affinity.json} and {@code affinity.png} into the output folder (atomically).
 */
public final class AffinityMining {
    private AffinityMining() {}

    /**
     * @param datasets           dataset names (empty = every dataset of the corpus, manifest order)
     * @param ratio              pruning ratio r ∈ (0, 1): share of FFN channels removed
     * @param score              wifv (default), ifv, wifn, wanda or taylor
     * @param calibrationWindows windows per dataset drawn from its CALIB split
     * @param evalWindows        affinity-evaluation windows per dataset (first half of its EVAL split)
     * @param seqlen             tokens per window
     * @param seed               base seed; dataset i's calibration offsets use {@link #datasetSeed}(seed, i)
     * @param linkage            average (default), complete or ward
     * @param experts            E, the number of groups
     * @param biasCompensation   prune with bias compensation
     */
    public record Options(List<String> datasets, double ratio, String score, int calibrationWindows, int evalWindows, int seqlen,
                          long seed, Clustering.Linkage linkage, int experts, boolean biasCompensation) {
        public Options {
            datasets = List.copyOf(datasets);
            Pruning.keptWidth(1 << 20, ratio);  // checks r ∈ (0, 1)
            if (!score.equalsIgnoreCase("taylor")) ChannelScore.parse(score, "score");
            if (calibrationWindows < 1) throw new IllegalArgumentException("calibration_windows " + calibrationWindows + ": expected ≥ 1");
            if (evalWindows < 1) throw new IllegalArgumentException("eval_windows " + evalWindows + ": expected ≥ 1");
            if (seqlen < 2) throw new IllegalArgumentException("seqlen " + seqlen + ": expected ≥ 2");
            if (experts < 1) throw new IllegalArgumentException("experts " + experts + ": expected ≥ 1");
        }

        public static Options defaults(int experts) {
            return new Options(List.of(), 0.5, "wifv", 16, 8, 256, 0, Clustering.Linkage.AVERAGE, experts, false);
        }
    }

    /** everything the run measured; the windows and statistics are kept for the reconstruction step */
    public record AffinityResult(List<String> datasets, double[][] perplexity, double[][] normalizedAffinity, double[][] correlation,
                                 Clustering.Dendrogram dendrogram, int[] groups, List<DatasetWindows> windows,
                                 List<CalibrationStatistics> statistics, double seconds) {}

    /** the seed of dataset i's calibration offsets: a SplitMix64-style mix of the base seed and i */
    public static long datasetSeed(long seed, int datasetIndex) {
        long z = seed + 0x9E3779B97F4A7C15L * (datasetIndex + 1L);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** the window count a progress bar for {@link #run} should be given */
    public static long progressUnits(int datasets, Options options) {
        return (long) datasets * options.calibrationWindows() + (long) datasets * datasets * options.evalWindows();
    }

    /** the datasets a run uses: the named ones (checked against the corpus) or all */
    public static List<String> datasetNames(Corpus corpus, Options options) {
        List<String> all = corpus.datasets().stream().map(Manifest.Entry::name).toList();
        if (options.datasets().isEmpty()) return all;
        for (String name : options.datasets())
            if (!all.contains(name)) throw new IllegalArgumentException("datasets: '" + name + "' is not a dataset of " + corpus.location() + " " + all);
        return options.datasets();
    }

    /** @param progress advanced by one per window run ({@link #progressUnits} in all); may be null */
    public static AffinityResult run(LlamaModel dense, Tokenizer tokenizer, Corpus corpus, Options options, Path outDir, Progress progress) throws IOException {
        List<String> names = datasetNames(corpus, options);
        if (names.size() < options.experts())
            throw new IllegalArgumentException("cannot form " + options.experts() + " expert groups from " + names.size()
                    + " datasets (experts must be ≤ the number of datasets)");
        List<DatasetWindows> windows = new ArrayList<>();
        for (int i = 0; i < names.size(); i++)
            windows.add(DatasetWindows.of(corpus, names.get(i), tokenizer, options.calibrationWindows(), options.evalWindows(),
                    options.seqlen(), datasetSeed(options.seed(), i)));
        return run(dense, windows, options, outDir, progress);
    }

    /** as {@link #run(LlamaModel, Tokenizer, Corpus, Options, Path, Progress)} on windows already cut */
    public static AffinityResult run(LlamaModel dense, List<DatasetWindows> windows, Options options, Path outDir, Progress progress) throws IOException {
        long start = System.nanoTime();
        int count = windows.size();
        if (count < options.experts())
            throw new IllegalArgumentException("cannot form " + options.experts() + " expert groups from " + count
                    + " datasets (experts must be ≤ the number of datasets)");
        Pruning.keptWidth(dense.config().intermediateSize(), options.ratio());
        List<String> names = windows.stream().map(DatasetWindows::dataset).toList();
        java.util.function.IntConsumer step = progress == null ? n -> {} : progress::step;
        List<CalibrationStatistics> statistics = new ArrayList<>();
        for (DatasetWindows w : windows) statistics.add(CalibrationStatistics.collect(dense, w.calibration(), step));

        List<List<int[]>> evalGroups = windows.stream().map(DatasetWindows::affinityEval).toList();
        double[][] perplexity = new double[count][];
        for (int i = 0; i < count; i++) {
            ChannelScore score = options.score().equalsIgnoreCase("taylor")
                    ? TaylorScore.compute(dense, windows.get(i).calibration()) : ChannelScore.parse(options.score(), "score");
            try (TensorArena arena = TensorArena.shared()) {  // one pruned model in memory at a time
                LlamaModel pruned = Pruning.prunedModel(dense, statistics.get(i), score, options.ratio(), options.biasCompensation(),
                        dense.source() + " pruned with " + names.get(i), arena);
                perplexity[i] = WindowPerplexity.perGroup(pruned, evalGroups, step);
            }
        }
        double[][] normalized = Affinity.normalizeColumns(perplexity);
        double[][] correlation = Affinity.rowCorrelation(normalized);
        Clustering.Dendrogram tree = Clustering.agglomerate(Affinity.distance(correlation), options.linkage());
        int[] groups = tree.cut(options.experts());
        double seconds = (System.nanoTime() - start) / 1e9;
        AffinityResult result = new AffinityResult(names, perplexity, normalized, correlation, tree, groups, List.copyOf(windows),
                List.copyOf(statistics), seconds);
        if (outDir != null) write(result, options, dense, outDir);
        return result;
    }

    /** the normalised-affinity heatmap with the dendrogram, rows in leaf order */
    public static Heatmap heatmap(AffinityResult r) {
        List<Clustering.Merge> merges = r.dendrogram().merges();
        int[] left = merges.stream().mapToInt(Clustering.Merge::left).toArray(), right = merges.stream().mapToInt(Clustering.Merge::right).toArray();
        double[] heights = merges.stream().mapToDouble(Clustering.Merge::height).toArray();
        return new Heatmap("Normalised affinity A[i,j] = min P[:,j] / P[i,j]   (row i: pruned with dataset i; column j: evaluated on j)",
                r.datasets(), r.normalizedAffinity(), left, right, heights, r.dendrogram().leafOrder(), r.groups());
    }

    /** {@code affinity.json} and {@code affinity.png} in {@code outDir} (created), each written atomically */
    public static void write(AffinityResult r, Options options, LlamaModel dense, Path outDir) throws IOException {
        Files.createDirectories(outDir);
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("model", dense.source());
        Map<String, Object> opts = new LinkedHashMap<>();
        opts.put("ratio", options.ratio());
        opts.put("score", options.score().toLowerCase(java.util.Locale.ROOT));
        opts.put("bias_compensation", options.biasCompensation());
        opts.put("calibration_windows", options.calibrationWindows());
        opts.put("eval_windows", options.evalWindows());
        opts.put("seqlen", options.seqlen());
        opts.put("seed", options.seed());
        opts.put("linkage", options.linkage().toString());
        opts.put("experts", options.experts());
        json.put("options", opts);
        json.put("datasets", r.datasets());
        List<Map<String, Object>> sampling = new ArrayList<>();
        for (DatasetWindows w : r.windows()) {
            Map<String, Object> s = new LinkedHashMap<>();
            s.put("dataset", w.dataset());
            s.put("calibration_seed", w.calibrationSeed());
            s.put("calibration_offsets", w.calibrationOffsets());
            s.put("calib_tokens", w.calibTokens());
            s.put("eval_tokens", w.evalTokens());
            s.put("affinity_eval_windows", w.affinityEval().size());
            s.put("affinity_eval_range", new int[] {0, w.evalTokens() / 2});
            s.put("final_eval_windows", w.finalEval().size());
            s.put("final_eval_range", new int[] {w.evalTokens() / 2, w.evalTokens()});
            sampling.add(s);
        }
        json.put("windows", sampling);
        json.put("perplexity", r.perplexity());
        json.put("normalized_affinity", r.normalizedAffinity());
        json.put("correlation", r.correlation());
        List<Map<String, Object>> merges = new ArrayList<>();
        for (Clustering.Merge m : r.dendrogram().merges()) {
            Map<String, Object> mm = new LinkedHashMap<>();
            mm.put("left", m.left());
            mm.put("right", m.right());
            mm.put("height", m.height());
            mm.put("size", m.size());
            merges.add(mm);
        }
        json.put("dendrogram", Map.of("leaves", r.dendrogram().leaves(), "merges", merges, "leaf_order", r.dendrogram().leafOrder()));
        List<List<String>> groupNames = new ArrayList<>();
        for (int g = 0; g < options.experts(); g++) groupNames.add(new ArrayList<>());
        for (int i = 0; i < r.groups().length; i++) groupNames.get(r.groups()[i]).add(r.datasets().get(i));
        json.put("groups", groupNames);
        json.put("group_of_dataset", r.groups());
        json.put("seconds", r.seconds());
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        AtomicFiles.writeString(outDir.resolve("affinity.json"), mapper.writeValueAsString(json) + "\n");
        heatmap(r).writePng(outDir.resolve("affinity.png"));
    }
}
