package dive.bench.gpu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Turns the JSON of a JMH run of the GPU benchmarks ({@code -rf json}) into markdown: every result, then the issue's
 * targets with their ratios —
 * (a) grouped BF16 matmul TFLOP/s ÷ cuBLAS BF16 GEMM TFLOP/s at the same rows and width, target ≥ 0.60;
 * (b) routing + permutation GB/s ÷ device copy GB/s at the same tokens, target ≥ 0.50;
 * (c) MoE layer time ÷ dense FFN time (= dense ops/s ÷ MoE ops/s) at the same tokens, target ≤ 1.3;
 * (d) calibration tokens/s (no target).
 * A benchmark that was skipped for want of a GPU has a zero secondary result; its rows say "skipped".
 *
 * <p>{@code java dive.bench.gpu.GpuBenchReport [--out report.md] [--merged all.json] results.json...}
 */
public final class GpuBenchReport {
    private GpuBenchReport() {}

    static final String PKG = "dive.bench.gpu.";

    /** one JMH result: benchmark class.method, its parameters, primary score (ops/s) and secondary scores */
    record Result(String benchmark, Map<String, String> params, double opsPerSecond, Map<String, Double> secondary) {
        double secondary(String name) { return secondary.getOrDefault(name, 0.0); }
        String param(String name) { return params.getOrDefault(name, "?"); }
    }

    /** one target check: what is compared, the two sides, their ratio, the bound, and whether it was met */
    record Target(String name, String key, double measured, double baseline, double ratio, String bound, boolean met) {}

    static List<Result> parse(Path json) throws IOException {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(json.toFile());
        } catch (IOException e) {
            throw new IOException("JMH results " + json + ": not readable as JSON (" + e.getMessage() + ")", e);
        }
        if (root == null || !root.isArray())
            throw new IOException("JMH results " + json + ": expected a JSON array of results (JMH -rf json)");
        List<Result> results = new ArrayList<>();
        for (JsonNode r : root) {
            JsonNode name = r.get("benchmark"), primary = r.get("primaryMetric");
            if (name == null || primary == null || primary.get("score") == null)
                throw new IOException("JMH results " + json + ": an entry lacks 'benchmark' or 'primaryMetric.score'");
            Map<String, String> params = new TreeMap<>();
            if (r.has("params")) r.get("params").properties().forEach(e -> params.put(e.getKey(), e.getValue().asText()));
            Map<String, Double> secondary = new LinkedHashMap<>();
            if (r.has("secondaryMetrics"))
                r.get("secondaryMetrics").properties().forEach(e -> secondary.put(e.getKey(), e.getValue().path("score").asDouble()));
            String b = name.asText();
            results.add(new Result(b.startsWith(PKG) ? b.substring(PKG.length()) : b, params, primary.get("score").asDouble(), secondary));
        }
        return results;
    }

    private static Result find(List<Result> results, String benchmark, Map<String, String> params) {
        for (Result r : results)
            if (r.benchmark.equals(benchmark) && params.entrySet().stream().allMatch(e -> e.getValue().equals(r.params.get(e.getKey()))))
                return r;
        return null;
    }

    /** the target ratios over whatever results are present; pairs with a skipped (zero) side are left out */
    static List<Target> targets(List<Result> results) {
        List<Target> targets = new ArrayList<>();
        for (Result g : results) {
            if (g.benchmark.equals("GroupedMatmulGpuBenchmark.groupedMatmulBf16")) {
                Result c = find(results, "CublasGemmGpuBenchmark.cublasGemmBf16", Map.of("rows", g.param("rows"), "expertWidth", g.param("expertWidth")));
                double grouped = g.secondary("teraFlop"), cublas = c == null ? 0 : c.secondary("teraFlop");
                if (grouped > 0 && cublas > 0)
                    targets.add(new Target("(a) grouped BF16 ÷ cuBLAS BF16 TFLOP/s",
                            "rows " + g.param("rows") + ", N " + g.param("expertWidth") + ", " + g.param("routing"),
                            grouped, cublas, grouped / cublas, "≥ 0.60", grouped / cublas >= 0.60));
            }
        }
        for (Result r : results) {
            if (r.benchmark.equals("RoutingGpuBenchmark.routeSortGather")) {
                Result c = find(results, "RoutingGpuBenchmark.deviceCopy", Map.of("tokens", r.param("tokens")));
                double routing = r.secondary("gigabytes"), copy = c == null ? 0 : c.secondary("gigabytes");
                if (routing > 0 && copy > 0)
                    targets.add(new Target("(b) route + sort + gather ÷ d2d copy GB/s", "tokens " + r.param("tokens"),
                            routing, copy, routing / copy, "≥ 0.50", routing / copy >= 0.50));
            }
        }
        for (Result m : results) {
            if (m.benchmark.equals("MoeLayerGpuBenchmark.moeLayer")) {
                Result d = find(results, "MoeLayerGpuBenchmark.denseFfn", Map.of("tokens", m.param("tokens")));
                double moeTokens = m.secondary("tokens"), denseTokens = d == null ? 0 : d.secondary("tokens");
                if (moeTokens > 0 && denseTokens > 0) {
                    double timeRatio = d.opsPerSecond / m.opsPerSecond;
                    targets.add(new Target("(c) MoE layer time ÷ dense FFN time (tokens/s shown)", "tokens " + m.param("tokens"),
                            moeTokens, denseTokens, timeRatio, "≤ 1.3", timeRatio <= 1.3));
                }
            }
        }
        return targets;
    }

    static String markdown(List<Result> results) {
        StringBuilder md = new StringBuilder();
        md.append("### Targets\n\n");
        List<Target> targets = targets(results);
        if (targets.isEmpty()) {
            md.append("No target could be computed: every GPU benchmark was skipped or missing (see the SKIPPED lines of the JMH log).\n\n");
        } else {
            md.append("| check | case | measured | baseline | ratio | target | met |\n|---|---|---:|---:|---:|---|---|\n");
            for (Target t : targets)
                md.append(String.format(Locale.ROOT, "| %s | %s | %.1f | %.1f | %.3f | %s | %s |%n",
                        t.name, t.key, t.measured, t.baseline, t.ratio, t.bound, t.met ? "yes" : "**no**"));
            md.append('\n');
        }
        for (Result r : results)
            if (r.benchmark.equals("CalibrationGpuBenchmark.calibrationBatch") && r.secondary("tokens") > 0)
                md.append(String.format(Locale.ROOT, "(d) calibration, 1B-class FFN (2048 → 8192), batch %s tokens: **%.0f tokens/s** per layer%n%n",
                        r.param("batchTokens"), r.secondary("tokens")));
        md.append("### All results\n\n| benchmark | params | ops/s | secondary |\n|---|---|---:|---|\n");
        for (Result r : results) {
            StringBuilder sec = new StringBuilder();
            r.secondary.forEach((k, v) -> sec.append(sec.isEmpty() ? "" : ", ").append(k).append(" ")
                    .append(v > 0 ? String.format(Locale.ROOT, "%.2f/s", v) : "0 (skipped)"));
            md.append(String.format(Locale.ROOT, "| %s | %s | %.2f | %s |%n", r.benchmark, r.params, r.opsPerSecond, sec));
        }
        return md.toString();
    }

    /**
     * {@code GpuBenchReport [--out report.md] [--merged all.json] results.json...}: the markdown of all the JMH result
     * files together (stdout without --out); --merged also writes their results as one JSON array. Files are written
     * atomically (temp + rename).
     */
    public static void main(String[] args) throws IOException {
        Path out = null, merged = null;
        List<Path> inputs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--out" -> out = Path.of(value(args, ++i, "--out"));
                case "--merged" -> merged = Path.of(value(args, ++i, "--merged"));
                default -> inputs.add(Path.of(args[i]));
            }
        }
        if (inputs.isEmpty()) {
            System.err.println("usage: GpuBenchReport [--out report.md] [--merged all.json] results.json...");
            System.exit(2);
        }
        List<Result> results = new ArrayList<>();
        ObjectMapper json = new ObjectMapper();
        var all = json.createArrayNode();
        for (Path p : inputs) {
            results.addAll(parse(p));
            json.readTree(p.toFile()).forEach(all::add);
        }
        if (merged != null) writeAtomically(merged, json.writerWithDefaultPrettyPrinter().writeValueAsString(all));
        String md = markdown(results);
        if (out == null) System.out.print(md);
        else writeAtomically(out, md);
    }

    private static String value(String[] args, int i, String flag) {
        if (i >= args.length) throw new IllegalArgumentException(flag + ": expected a file name after it");
        return args[i];
    }

    static void writeAtomically(Path file, String text) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
