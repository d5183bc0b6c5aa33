package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.report.Charts;
import dive.report.Plot;
import dive.util.AtomicFiles;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A conversion's results as people read them, from its report.json tree and its stages' {@code train-log.jsonl}:
 * <ul>
 * <li>the summary table (per method: geometric-mean held-out perplexity, active / total parameters, training tokens,
 *     exported folder; the dense model first) and the per-dataset perplexity table, as text for the console or as
 *     Markdown;
 * <li>{@code report.md} (both tables, the groups, the pictures by relative path, the command that made it);
 * <li>{@code ppl.png} (per-dataset perplexity of the dense model and every method after retraining),
 *     {@code routing.png} (one panel per MoE method: routing share per dataset and expert after retraining),
 *     {@code loss.png} (training loss of every method's stages against its training tokens so far).
 * </ul>
 * A method's folder is OUT for dive and OUT/&lt;method&gt; for the baselines; its stages are stage0/, stage1/, stage2/.
 */
public final class ConversionReport {
    private ConversionReport() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /** where a method's stages and export live */
    static Path methodDir(Path out, String method) { return method.equals(DiveMethod.NAME) ? out : out.resolve(method); }

    /** the geometric mean of the values of a {dataset: perplexity} object */
    public static double geomean(JsonNode ppl) {
        double logSum = 0;
        int n = 0;
        for (JsonNode v : ppl) { logSum += Math.log(v.asDouble()); n++; }
        if (n == 0) throw new IllegalArgumentException("geometric mean of no perplexity");
        return Math.exp(logSum / n);
    }

    /**
     * An MoE method's expert load while training: per stage, the last evaluation's {dataset: share of top-k assignments
     * per expert} from its train-log.jsonl; empty when the log has none (dense models, train_eval_windows: 0)
     */
    static Map<String, Map<String, JsonNode>> trainingExpertLoad(Path methodDir) throws IOException {
        Map<String, Map<String, JsonNode>> stages = new LinkedHashMap<>();
        for (int s = 0; s < 3; s++) {
            Path log = methodDir.resolve("stage" + s).resolve(dive.train.Trainer.LOG_FILE);
            if (!Files.isRegularFile(log)) continue;
            JsonNode last = null;
            for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
                if (line.isBlank()) continue;
                JsonNode eval = JSON.readTree(line).path("eval");
                if (eval.isObject() && eval.properties().stream().anyMatch(e -> e.getValue().has("expert_load"))) last = eval;
            }
            if (last == null) continue;
            Map<String, JsonNode> perDataset = new LinkedHashMap<>();
            last.properties().forEach(e -> { if (e.getValue().has("expert_load")) perDataset.put(e.getKey(), e.getValue().get("expert_load")); });
            stages.put("stage" + s, perDataset);
        }
        return stages;
    }

    /** the summary: header + one row per model (dense first, then the methods in report order) */
    static List<List<String>> summaryRows(JsonNode report, Path out) {
        List<List<String>> rows = new ArrayList<>();
        rows.add(List.of("method", "ppl (geo. mean)", "before retraining", "active params", "total params", "training tokens", "model"));
        JsonNode dense = report.get("dense");
        rows.add(List.of("dense", fixed(geomean(dense.get("ppl"))), "—", count(dense.get("params_active")), count(dense.get("params_total")),
                "0", report.get("model").asText()));
        report.get("methods").properties().forEach(m -> {
            JsonNode e = m.getValue(), trainingFree = e.get("ppl_before_retraining");
            rows.add(List.of(m.getKey(), fixed(geomean(e.get("ppl_after_retraining"))),
                    trainingFree != null && trainingFree.isObject() ? fixed(geomean(trainingFree)) : "—", count(e.get("params_active")),
                    count(e.get("params_total")), count(e.get("training_tokens")), relative(out, e.get("export").asText())));
        });
        return rows;
    }

    /** the held-out perplexity per dataset: header (dataset, dense, methods …) + one row per dataset */
    static List<List<String>> perDatasetRows(JsonNode report) {
        List<List<String>> rows = new ArrayList<>();
        List<String> header = new ArrayList<>(List.of("dataset", "dense"));
        report.get("methods").fieldNames().forEachRemaining(header::add);
        rows.add(header);
        for (JsonNode d : report.get("datasets")) {
            String name = d.asText();
            List<String> row = new ArrayList<>(List.of(name, fixed(report.get("dense").get("ppl").get(name).asDouble())));
            report.get("methods").properties().forEach(m -> row.add(fixed(m.getValue().get("ppl_after_retraining").get(name).asDouble())));
            rows.add(row);
        }
        return rows;
    }

    /** both tables as fixed-width text (the console) */
    public static String textTables(ConversionResult report, Path out) {
        JsonNode tree = JSON.valueToTree(report.toJson());
        return "held-out perplexity after retraining (and of the built model before any retraining), geometric mean over "
                + tree.get("datasets").size() + " datasets\n"
                + render(summaryRows(tree, out), false) + "\nper dataset\n" + render(perDatasetRows(tree), false);
    }

    /** rows as aligned text columns (first column left, the others right) or as a Markdown table */
    static String render(List<List<String>> rows, boolean markdown) {
        int columns = rows.getFirst().size();
        int[] width = new int[columns];
        for (List<String> r : rows) for (int c = 0; c < columns; c++) width[c] = Math.max(width[c], r.get(c).length());
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < rows.size(); i++) {
            List<String> r = rows.get(i);
            for (int c = 0; c < columns; c++) {
                String cell = r.get(c);
                if (markdown) sb.append("| ").append(cell).append(' ');
                else {
                    String pad = " ".repeat(width[c] - cell.length());
                    sb.append(c == 0 ? cell + pad : pad + cell).append(c + 1 < columns ? "  " : "");
                }
            }
            sb.append(markdown ? "|\n" : "\n");
            if (markdown && i == 0) {
                for (int c = 0; c < columns; c++) sb.append(c == 0 ? "|---" : "|---:");
                sb.append("|\n");
            }
        }
        return sb.toString();
    }

    /** writes report.md, ppl.png, routing.png and loss.png into {@code out} (atomically, each) */
    static void write(Path out, ConversionResult report, String command) throws IOException {
        JsonNode tree = JSON.valueToTree(report.toJson());
        List<String> names = new ArrayList<>();
        tree.get("datasets").forEach(d -> names.add(d.asText()));
        List<String> methods = new ArrayList<>();
        tree.get("methods").fieldNames().forEachRemaining(methods::add);

        // ppl.png: the dense model and every method after retraining
        List<String> series = new ArrayList<>(List.of("dense"));
        series.addAll(methods);
        double[][] ppl = new double[series.size()][names.size()];
        for (int s = 0; s < series.size(); s++) {
            JsonNode values = s == 0 ? tree.get("dense").get("ppl") : tree.get("methods").get(series.get(s)).get("ppl_after_retraining");
            for (int i = 0; i < names.size(); i++) ppl[s][i] = values.get(names.get(i)).asDouble();
        }
        Charts.writePng(Charts.bars("Held-out perplexity per dataset (final-evaluation windows), every method after retraining", "perplexity",
                names, series, ppl), out.resolve("ppl.png"));

        // routing.png: one panel per MoE method with more than one expert (its own expert count; one expert routes nothing)
        List<BufferedImage> panels = new ArrayList<>();
        for (String m : methods) {
            JsonNode entry = tree.get("methods").get(m), share = entry.get("routing_share");
            if (share == null || share.isNull() || share.get(names.getFirst()).size() < 2) continue;
            int experts = share.get(names.getFirst()).size();
            List<String> columns = new ArrayList<>();
            for (int e = 0; e < experts; e++) columns.add("e" + e);
            Map<String, Integer> ownExpert = new LinkedHashMap<>();  // DIVE: each dataset's group = the expert built from it
            JsonNode groups = entry.get("groups");
            if (groups != null) for (int g = 0; g < groups.size(); g++) for (JsonNode d : groups.get(g)) ownExpert.put(d.asText(), g);
            double[][] values = new double[names.size()][experts];
            List<String> rows = new ArrayList<>();
            for (int i = 0; i < names.size(); i++) {
                for (int e = 0; e < experts; e++) values[i][e] = share.get(names.get(i)).get(e).asDouble();
                Integer own = ownExpert.get(names.get(i));
                rows.add(names.get(i) + (own == null ? "" : "  (e" + own + ")"));
            }
            panels.add(Charts.matrix(m + ": routing share per dataset (rows" + (groups == null ? "" : "; its group's expert in brackets")
                    + ") and expert, all layers", rows, columns, values));
        }
        if (!panels.isEmpty()) Charts.writePng(Charts.grid(panels, 2), out.resolve("routing.png"));

        // loss.png: every method's training loss over its stages
        Plot loss = new Plot("Training loss of every method, its stages one after another (MoE: stage 0 routers, then stage 1)",
                "training tokens of the method so far", "loss (nats)").size(1000, 560);
        for (String m : methods) {
            List<double[]> points = lossCurve(methodDir(out, m));
            if (points.isEmpty()) continue;
            loss.add(m, points.stream().mapToDouble(p -> p[0]).toArray(), points.stream().mapToDouble(p -> p[1]).toArray());
        }
        if (!loss.series().isEmpty()) loss.writePng(out.resolve("loss.png"));

        AtomicFiles.writeString(out.resolve("report.md"), markdown(tree, out, command, !panels.isEmpty(), !loss.series().isEmpty()));
    }

    /** (tokens so far, loss) of every training step of a method's stages, stage after stage */
    static List<double[]> lossCurve(Path methodDir) throws IOException {
        List<double[]> points = new ArrayList<>();
        double offset = 0;
        for (int s = 0; s < 3; s++) {
            Path log = methodDir.resolve("stage" + s).resolve(dive.train.Trainer.LOG_FILE);
            if (!Files.isRegularFile(log)) continue;
            double last = 0;
            for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
                if (line.isBlank()) continue;
                JsonNode n = JSON.readTree(line);
                if (!n.has("loss")) continue;
                last = n.get("tokens").asDouble();
                points.add(new double[] {offset + last, n.get("loss").asDouble()});
            }
            offset += last;
        }
        return points;
    }

    private static String markdown(JsonNode tree, Path out, String command, boolean routing, boolean loss) {
        StringBuilder md = new StringBuilder();
        md.append("# DIVE conversion report\n\n");
        md.append("Made by `").append(command == null ? "DiveConversion.run (library call)" : command).append("`.\n\n");
        md.append(String.format(Locale.ROOT, "Model `%s`, data `%s` (%d datasets), %d experts, top-%d, ratio %s (expert width %d).%n%n",
                tree.get("model").asText(), tree.get("data").asText(), tree.get("datasets").size(), tree.get("experts").asInt(),
                tree.get("top_k").asInt(), tree.get("ratio").asText(), tree.get("expert_width").asInt()));
        md.append("Held-out perplexity after retraining: ").append(tree.get("evaluation").asText()).append(".\n\n");
        md.append(render(summaryRows(tree, out), true)).append('\n');
        md.append("## Per dataset\n\n").append(render(perDatasetRows(tree), true)).append('\n');
        md.append("![perplexity per dataset](ppl.png)\n\n");
        JsonNode dive = tree.get("methods").get("dive");
        md.append("## Groups (").append(dive.get("grouping").asText()).append(")\n\n");
        for (int g = 0; g < dive.get("groups").size(); g++) {
            List<String> members = new ArrayList<>();
            dive.get("groups").get(g).forEach(d -> members.add(d.asText()));
            md.append("- expert ").append(g).append(": ").append(String.join(", ", members)).append('\n');
        }
        md.append('\n');
        if (Files.isRegularFile(out.resolve("affinity/affinity.png")))
            md.append("![affinity heatmap with dendrogram](affinity/affinity.png)\n\n");
        if (routing) md.append("## Routing\n\n![routing share per dataset and expert](routing.png)\n\n");
        if (loss) md.append("## Training\n\n![loss curves](loss.png)\n\n");
        tree.get("methods").properties().forEach(m -> {
            if (m.getValue().has("variant")) md.append("- ").append(m.getKey()).append(": ").append(m.getValue().get("variant").asText()).append('\n');
        });
        return md.toString();
    }

    private static String fixed(double v) { return String.format(Locale.ROOT, "%.2f", v); }

    private static String count(JsonNode v) { return String.format(Locale.ROOT, "%,d", v.asLong()); }

    private static String relative(Path out, String path) {
        Path p = Path.of(path);
        return p.startsWith(out) ? out.relativize(p).toString() : path;
    }
}
