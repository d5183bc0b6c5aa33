package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dive.backend.Backend;
import dive.report.Charts;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * The multi-seed comparison of DIVE and its baselines (issue 4, item 9): every (E, k, r) setting × every seed is one
 * {@link DiveConversion} run in {@code OUT/<setting>/seed-<s>/} (each resumable on its own, so the whole comparison
 * resumes), then the runs' {@code report.json} files are summarised: per setting and method the geometric-mean held-out
 * perplexity over the datasets for every seed, its mean, sample standard deviation, minimum and maximum, and the paired
 * per-seed gap of each method to DIVE (same seed = same calibration and evaluation windows). Written to
 * {@code comparison.json}, {@code comparison.md} and {@code comparison.png}.
 *
 * <p>Plan file (YAML or JSON):
 * <pre>
 * settings:                       # (E, k, r) of each comparison
 *   - {experts: 8, top_k: 1, ratio: 0.5}
 *   - {experts: 8, top_k: 2, ratio: 0.75}
 * seeds: [0, 1, 2]
 * convert: { ...the keys of ConvertRecipe, without seed... }   # or convert_recipe: path/to/recipe.yaml
 * </pre>
 */
public final class Comparison {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private Comparison() {}

    /** one (E, k, r) setting */
    public record Setting(int experts, int topK, double ratio) {
        public String folder() { return String.format(Locale.ROOT, "e%d-k%d-r%.2f", experts, topK, ratio); }
        public String label() { return String.format(Locale.ROOT, "E=%d, top-%d, r=%.2f", experts, topK, ratio); }
    }

    /** what to run: settings × seeds, each with the same conversion recipe */
    public record Plan(List<Setting> settings, List<Long> seeds, ConvertRecipe convert) {
        public Plan {
            if (settings.isEmpty()) throw new IllegalArgumentException("comparison plan: settings is empty");
            if (seeds.isEmpty()) throw new IllegalArgumentException("comparison plan: seeds is empty");
            if (Set.copyOf(seeds).size() != seeds.size()) throw new IllegalArgumentException("comparison plan: a seed is named twice: " + seeds);
            if (Set.copyOf(settings).size() != settings.size()) throw new IllegalArgumentException("comparison plan: a setting is named twice: " + settings);
        }

        public static Plan load(Path file) throws IOException {
            String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
            ObjectMapper mapper = name.endsWith(".yaml") || name.endsWith(".yml") ? new YAMLMapper() : new ObjectMapper();
            JsonNode root;
            try { root = mapper.readTree(Files.readAllBytes(file)); }
            catch (com.fasterxml.jackson.core.JacksonException e) { throw new IllegalArgumentException(file + ": not valid YAML/JSON: " + e.getOriginalMessage()); }
            if (root == null || !root.isObject()) throw new IllegalArgumentException(file + ": expected a mapping with settings, seeds and convert");
            Set<String> keys = Set.of("settings", "seeds", "convert", "convert_recipe");
            root.fieldNames().forEachRemaining(k -> {
                if (!keys.contains(k)) throw new IllegalArgumentException(file + ": unknown key '" + k + "' (allowed: " + keys + ")");
            });
            List<Setting> settings = new ArrayList<>();
            JsonNode s = root.path("settings");
            if (!s.isArray() || s.isEmpty()) throw new IllegalArgumentException(file + ": settings: expected a non-empty list of {experts, top_k, ratio}");
            for (JsonNode e : s) {
                for (String k : List.of("experts", "top_k", "ratio"))
                    if (!e.path(k).isNumber()) throw new IllegalArgumentException(file + ": settings: each entry needs a number '" + k + "', found " + e);
                e.fieldNames().forEachRemaining(k -> {
                    if (!Set.of("experts", "top_k", "ratio").contains(k)) throw new IllegalArgumentException(file + ": settings: unknown key '" + k + "'");
                });
                settings.add(new Setting(e.get("experts").asInt(), e.get("top_k").asInt(), e.get("ratio").asDouble()));
            }
            List<Long> seeds = new ArrayList<>();
            JsonNode sd = root.path("seeds");
            if (!sd.isArray() || sd.isEmpty()) throw new IllegalArgumentException(file + ": seeds: expected a non-empty list of integers");
            for (JsonNode e : sd) {
                if (!e.canConvertToLong() || !e.isIntegralNumber()) throw new IllegalArgumentException(file + ": seeds: '" + e + "' is not an integer");
                seeds.add(e.asLong());
            }
            if (root.has("convert") == root.has("convert_recipe"))
                throw new IllegalArgumentException(file + ": give exactly one of convert (inline settings) or convert_recipe (a file)");
            ConvertRecipe recipe;
            if (root.has("convert")) {
                if (root.get("convert").has("seed")) throw new IllegalArgumentException(file + ": convert: seed is set per run by 'seeds'; remove it");
                recipe = ConvertRecipe.parse(root.get("convert"), file + ": convert", file.toAbsolutePath().getParent());
            } else {
                recipe = ConvertRecipe.load(file.toAbsolutePath().getParent().resolve(root.get("convert_recipe").asText()));
            }
            return new Plan(settings, seeds, recipe);
        }
    }

    /** mean, sample standard deviation (0 for one value), minimum and maximum */
    public record Spread(double mean, double std, double min, double max, int n) {
        public static Spread of(double[] v) {
            if (v.length == 0) throw new IllegalArgumentException("spread of no values");
            double sum = 0, min = Double.POSITIVE_INFINITY, max = Double.NEGATIVE_INFINITY;
            for (double x : v) { sum += x; min = Math.min(min, x); max = Math.max(max, x); }
            double mean = sum / v.length, ss = 0;
            for (double x : v) ss += (x - mean) * (x - mean);
            return new Spread(mean, v.length > 1 ? Math.sqrt(ss / (v.length - 1)) : 0, min, max, v.length);
        }
    }

    /** exp(mean(log ppl)) over the datasets */
    public static double geometricMean(Map<String, Double> ppl) {
        if (ppl.isEmpty()) throw new IllegalArgumentException("geometric mean of no datasets");
        double s = 0;
        for (double p : ppl.values()) s += Math.log(p);
        return Math.exp(s / ppl.size());
    }

    /** one method's row of a setting's table (comparison.json: {@link #toJson}) */
    public record Row(String method, double[] perSeed, Spread ppl, Spread beforeRetraining, Spread gapToDive, String verdict,
                      long paramsActive, long paramsTotal, long trainingTokens) {
        /** beforeRetraining: null for the dense reference or when a run lacks it; gapToDive and verdict: null for DIVE */
        Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", method);
            m.put("per_seed", perSeed);
            m.put("ppl", spreadJson(ppl));
            if (beforeRetraining != null) m.put("ppl_before_retraining", spreadJson(beforeRetraining));
            if (gapToDive != null) m.put("gap_to_dive", spreadJson(gapToDive));
            if (verdict != null) m.put("verdict", verdict);
            m.put("params_active", paramsActive);
            m.put("params_total", paramsTotal);
            m.put("training_tokens", trainingTokens);
            return m;
        }
    }

    /** one setting over its finished seeds ({@code incomplete}: fewer than the plan's) */
    public record SettingSummary(Setting setting, List<Row> methods, List<Long> seeds, boolean incomplete) {
        Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("experts", setting.experts());
            m.put("top_k", setting.topK());
            m.put("ratio", setting.ratio());
            m.put("label", setting.label());
            m.put("methods", methods.stream().map(Row::toJson).toList());
            m.put("seeds", seeds);
            if (incomplete) m.put("incomplete", true);
            return m;
        }
    }

    /** comparison.json: the plan's seeds, what is measured, every setting run so far, the settings not run yet */
    public record Summary(List<Long> seeds, String measure, List<SettingSummary> settings, List<String> notRunYet) {
        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("seeds", seeds);
            m.put("measure", measure);
            m.put("settings", settings.stream().map(SettingSummary::toJson).toList());
            if (!notRunYet.isEmpty()) m.put("not_run_yet", notRunYet);
            return m;
        }
    }

    static final String MEASURE = "geometric mean over the datasets of the held-out perplexity (final-evaluation windows, never used for "
            + "calibration, affinity mining or training); gap = method / DIVE − 1 on the same seed";

    /**
     * runs every (setting, seed) that is not finished yet, then summarises; returns the summary written to comparison.json.
     * {@code command} (the compare command line, or null) is named in each run's report.md with its setting and seed;
     * every run computes on {@code backend}.
     */
    public static Summary run(Path modelDir, String data, Plan plan, Path out, boolean progress, String command,
                              Backend backend) throws Exception {
        return run(modelDir, data, plan, out, progress, command, backend, dive.model.LoadOptions.DEFAULT);
    }

    /** as {@link #run(Path, String, Plan, Path, boolean, String, Backend)}, the dense checkpoint checked as {@code load} says */
    public static Summary run(Path modelDir, String data, Plan plan, Path out, boolean progress, String command,
                              Backend backend, dive.model.LoadOptions load) throws Exception {
        Files.createDirectories(out);
        int total = plan.settings().size() * plan.seeds().size(), done = 0, ran = 0;
        long start = System.nanoTime();
        for (Setting s : plan.settings()) {
            for (long seed : plan.seeds()) {
                done++;
                boolean finished = finished(runFolder(out, s, seed), plan.convert().methods());
                if (progress) System.err.printf(Locale.ROOT, "compare: run %d of %d — %s, seed %d%s%n", done, total, s.label(), seed,
                        finished ? " (finished earlier)" : eta(start, ran, total - done + 1));
                DiveConversion.run(new DiveConversion.Request(modelDir, data, s.experts(), s.topK(), s.ratio(), plan.convert().withSeed(seed),
                        runFolder(out, s, seed), progress, command == null ? null : command + " (run " + s.label() + ", seed " + seed + ")", load), backend);
                if (!finished) ran++;
            }
        }
        return summarise(plan, out, false);
    }

    /** whether the run in {@code folder} has a report.json with an entry for every one of {@code methods} */
    static boolean finished(Path folder, List<String> methods) throws IOException {
        Path report = folder.resolve("report.json");
        if (!Files.isRegularFile(report)) return false;
        com.fasterxml.jackson.databind.JsonNode entries = JSON.readTree(report.toFile()).path("methods");
        return methods.stream().allMatch(entries::has);
    }

    /** " — ETA …" from the mean time of the runs done in this process, or "" before the first */
    private static String eta(long start, int ran, int left) {
        if (ran == 0) return "";
        long seconds = Math.round((System.nanoTime() - start) / 1e9 / ran * left);
        return String.format(Locale.ROOT, " — %d min per run so far, ETA %d:%02d h", Math.round((System.nanoTime() - start) / 6e10 / ran),
                seconds / 3600, seconds / 60 % 60);
    }

    static Path runFolder(Path out, Setting s, long seed) { return out.resolve(s.folder()).resolve("seed-" + seed); }

    /**
     * reads the runs' report.json and writes comparison.json, comparison.md and comparison.png. {@code partial} false:
     * every run must have finished. {@code partial} true (a look while the comparison still runs): each setting is
     * summarised over its finished seeds and marked incomplete; settings with none are listed as not run yet.
     */
    public static Summary summarise(Plan plan, Path out, boolean partial) throws IOException {
        List<SettingSummary> settings = new ArrayList<>();
        List<String> notRun = new ArrayList<>();
        for (Setting s : plan.settings()) {
            List<JsonNode> reports = new ArrayList<>();
            List<Long> finished = new ArrayList<>();
            for (long seed : plan.seeds()) {
                Path report = runFolder(out, s, seed).resolve("report.json");
                if (!Files.isRegularFile(report)) {
                    if (partial) continue;
                    throw new IOException(report + " is missing: that run has not finished (rerun the same command, or look at the "
                            + "finished runs alone: compare --summary-only)");
                }
                reports.add(JSON.readTree(report.toFile()));
                finished.add(seed);
            }
            if (reports.isEmpty()) { notRun.add(s.label()); continue; }
            settings.add(new SettingSummary(s, summariseSetting(s, finished, reports), finished, finished.size() < plan.seeds().size()));
        }
        if (settings.isEmpty()) throw new IOException(out + ": no run of the plan has finished yet (no <setting>/seed-<s>/report.json)");
        Summary summary = new Summary(plan.seeds(), MEASURE, settings, notRun);
        AtomicFiles.writeString(out.resolve("comparison.json"), JSON.writeValueAsString(summary.toJson()));
        AtomicFiles.writeString(out.resolve("comparison.md"), markdown(summary));
        Charts.writePng(chart(settings), out.resolve("comparison.png"));
        return summary;
    }

    /** one setting's rows: methods in report order after the dense reference; gaps paired by seed */
    static List<Row> summariseSetting(Setting s, List<Long> seeds, List<JsonNode> reports) {
        Map<String, double[]> geo = new LinkedHashMap<>(), before = new LinkedHashMap<>();
        Map<String, Long> active = new LinkedHashMap<>(), total = new LinkedHashMap<>(), tokens = new LinkedHashMap<>();
        for (int i = 0; i < reports.size(); i++) {
            JsonNode r = reports.get(i);
            put(geo, "dense", i, reports.size(), geometricMean(ppl(r.path("dense").path("ppl"), "dense", seeds.get(i))));
            active.put("dense", r.path("dense").path("params_active").asLong());
            total.put("dense", r.path("dense").path("params_total").asLong());
            tokens.put("dense", 0L);
            var methods = r.path("methods").properties();
            for (var m : methods) {
                put(geo, m.getKey(), i, reports.size(), geometricMean(ppl(m.getValue().path("ppl_after_retraining"), m.getKey(), seeds.get(i))));
                JsonNode trainingFree = m.getValue().path("ppl_before_retraining");
                if (trainingFree.isObject()) put(before, m.getKey(), i, reports.size(), geometricMean(ppl(trainingFree, m.getKey(), seeds.get(i))));
                active.put(m.getKey(), m.getValue().path("params_active").asLong());
                total.put(m.getKey(), m.getValue().path("params_total").asLong());
                tokens.put(m.getKey(), m.getValue().path("training_tokens").asLong());
            }
        }
        if (!geo.containsKey("dive")) throw new IllegalArgumentException(s.label() + ": the runs have no dive entry");
        List<Row> rows = new ArrayList<>();
        double[] dive = geo.get("dive");
        for (var e : geo.entrySet()) {
            double[] v = e.getValue();
            for (int i = 0; i < v.length; i++)
                if (Double.isNaN(v[i])) throw new IllegalArgumentException(s.label() + ": method " + e.getKey() + " is missing from the run of seed " + seeds.get(i));
            double[] b = before.get(e.getKey());  // training-free: the built model before any retraining, every seed
            Spread trainingFree = b != null && java.util.Arrays.stream(b).noneMatch(Double::isNaN) ? Spread.of(b) : null;
            Spread gap = null;
            String verdict = null;
            if (!e.getKey().equals("dive")) {
                double[] g = new double[v.length];
                for (int i = 0; i < v.length; i++) g[i] = v[i] / dive[i] - 1;
                gap = Spread.of(g);
                verdict = e.getKey().equals("dense") ? "reference (dense model)" : verdict(gap);
            }
            rows.add(new Row(e.getKey(), v, Spread.of(v), trainingFree, gap, verdict, active.get(e.getKey()), total.get(e.getKey()),
                    tokens.get(e.getKey())));
        }
        return rows;
    }

    /**
     * What a method's paired gap to DIVE (method / DIVE − 1 per seed) says: it "exceeds the seed spread" when every seed
     * agrees on its sign and |mean| > 2 · std / √n (the mean's ~95 % interval excludes 0); with one seed nothing can be said.
     */
    static String verdict(Spread gap) {
        if (gap.n() < 2) return "one seed: no spread";
        String who = gap.mean() > 0 ? "DIVE better" : "DIVE worse";
        boolean sameSign = gap.min() > 0 || gap.max() < 0;
        if (sameSign && Math.abs(gap.mean()) > 2 * gap.std() / Math.sqrt(gap.n())) return who + " (exceeds the seed spread)";
        if (sameSign) return who + " on every seed (within 2 standard errors)";
        return "within the seed spread";
    }

    private static void put(Map<String, double[]> geo, String method, int run, int runs, double value) {
        geo.computeIfAbsent(method, k -> { double[] a = new double[runs]; java.util.Arrays.fill(a, Double.NaN); return a; })[run] = value;
    }

    private static Map<String, Double> ppl(JsonNode node, String method, long seed) {
        if (!node.isObject() || node.isEmpty()) throw new IllegalArgumentException("report of seed " + seed + ": method " + method + " has no per-dataset perplexity");
        Map<String, Double> m = new LinkedHashMap<>();
        node.properties().forEach(e -> m.put(e.getKey(), e.getValue().asDouble()));
        return m;
    }

    private static Map<String, Object> spreadJson(Spread s) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("mean", s.mean());
        m.put("std", s.std());
        m.put("min", s.min());
        m.put("max", s.max());
        return m;
    }

    static String markdown(Summary summary) {
        StringBuilder b = new StringBuilder("# DIVE vs baselines: held-out perplexity over seeds " + summary.seeds() + "\n\n");
        b.append(summary.measure()).append(". Mean ± sample standard deviation over the seeds, [min, max] in brackets. A gap 'exceeds the seed spread' when "
                + "every seed agrees on its sign and |mean gap| > 2 · std / √seeds.\n\n![comparison](comparison.png)\n");
        for (SettingSummary s : summary.settings()) {
            b.append("\n## ").append(s.setting().label());
            if (s.incomplete()) b.append(" — incomplete: seeds ").append(s.seeds()).append(" of ").append(summary.seeds());
            b.append("\n\n| method | geo-mean ppl | per seed | gap to DIVE | verdict | before retraining | active params | training tokens |\n|---|---:|---|---:|---|---:|---:|---:|\n");
            for (Row row : s.methods()) {
                Spread p = row.ppl(), g = row.gapToDive(), tf = row.beforeRetraining();
                StringBuilder seeds = new StringBuilder();
                for (double v : row.perSeed()) seeds.append(seeds.isEmpty() ? "" : ", ").append(String.format(Locale.ROOT, "%.2f", v));
                b.append(String.format(Locale.ROOT, "| %s | %.2f ± %.2f [%.2f, %.2f] | %s | %s | %s | %s | %,d | %,d |%n", row.method(),
                        p.mean(), p.std(), p.min(), p.max(), seeds,
                        g == null ? "—" : String.format(Locale.ROOT, "%+.1f%% ± %.1f%%", 100 * g.mean(), 100 * g.std()),
                        row.verdict() == null ? "reference" : row.verdict(),
                        tf == null ? "—" : String.format(Locale.ROOT, "%.2f ± %.2f", tf.mean(), tf.std()),
                        row.paramsActive(), row.trainingTokens()));
            }
        }
        if (!summary.notRunYet().isEmpty()) b.append("\nNot run yet: ").append(String.join(", ", summary.notRunYet())).append(".\n");
        return b.toString();
    }

    /**
     * comparison.png: per setting and method the geometric-mean perplexity after retraining (mean over seeds, whiskers
     * min..max) and, beside it, before retraining (training-free) where the runs measured it; an axis whose values span
     * more than 10× is logarithmic.
     */
    static java.awt.image.BufferedImage chart(List<SettingSummary> settings) {
        List<String> methods = new ArrayList<>();
        for (SettingSummary s : settings)
            for (Row row : s.methods())
                if (!methods.contains(row.method())) methods.add(row.method());
        List<String> labels = settings.stream().map(s -> s.setting().label()).toList();
        java.awt.image.BufferedImage after = panel("After retraining: geo-mean held-out ppl (mean, min..max over seeds)",
                settings, methods, labels, Row::ppl);
        boolean anyBefore = settings.stream().flatMap(s -> s.methods().stream()).anyMatch(r -> r.beforeRetraining() != null);
        if (!anyBefore) return after;
        java.awt.image.BufferedImage before = panel("Before retraining (training-free), the same",
                settings, methods, labels, Row::beforeRetraining);
        return Charts.grid(List.of(after, before), 2);
    }

    /** one panel of {@link #chart}: {@code spread} of every (setting, method), missing ones left empty */
    private static java.awt.image.BufferedImage panel(String title, List<SettingSummary> settings, List<String> methods, List<String> labels,
                                                      java.util.function.Function<Row, Spread> spread) {
        double[][] mean = new double[labels.size()][methods.size()], low = new double[labels.size()][methods.size()], high = new double[labels.size()][methods.size()];
        double min = Double.POSITIVE_INFINITY, max = 0;
        for (int i = 0; i < settings.size(); i++) {
            java.util.Arrays.fill(mean[i], Double.NaN);
            java.util.Arrays.fill(low[i], Double.NaN);
            java.util.Arrays.fill(high[i], Double.NaN);
            for (Row row : settings.get(i).methods()) {
                Spread v = spread.apply(row);
                if (v == null) continue;
                int j = methods.indexOf(row.method());
                mean[i][j] = v.mean();
                low[i][j] = v.min();
                high[i][j] = v.max();
                min = Math.min(min, v.min());
                max = Math.max(max, v.max());
            }
        }
        return Charts.bars(title, "perplexity", methods, labels, mean, low, high, max > 10 * min);
    }
}
