package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.backend.Backends;
import dive.data.Corpus;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Diagnostics of a finished {@code ./dive convert} run (docs/routing-investigation.md): how much the learned routing
 * leaves on the table. For every Mixtral folder given, on one split of every dataset's held-out windows:
 * <ul>
 * <li>learned: the model as it is (top-k routing by its routers) and the share of the dataset's top-k assignments
 *     that go to the expert of its own group;</li>
 * <li>expert g everywhere: every expert slot of every layer replaced by expert g (so any routing gives expert g
 *     with weight 1 for k = 1): perplexity matrix P[g][dataset];</li>
 * <li>oracle: P[group of the dataset][dataset] (the routing DIVE's routers are meant to learn); best: min_g P[g][dataset].</li>
 * </ul>
 * Usage: {@code java -cp dive.jar dive.convert.RoutingDiagnostics [--device D] [--backend B] RUN_DIR affinity|final MODEL_DIR...}
 * (MODEL_DIR relative to RUN_DIR, e.g. experts stage0/final model; a run converted with the recipe key
 * keep_intermediate: true, which keeps the intermediate models' weights). The windows are rebuilt exactly as the run built
 * them (its convert.json); "affinity" = the affinity-evaluation windows (first half of each EVAL split, fit for choosing
 * settings), "final" = the final-evaluation windows (report only).
 */
public final class RoutingDiagnostics {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern EXPERT = Pattern.compile("(model\\.layers\\.\\d+\\.block_sparse_moe\\.experts\\.)(\\d+)(\\..+)");

    private RoutingDiagnostics() {}

    /**
     * One model's diagnostics. MoE: {@code learned} its perplexity per dataset, {@code forced}[g] the perplexity with expert
     * g in every slot, {@code ownShare}[j] the share of dataset j's top-k assignments that go to its group's expert. Dense:
     * {@code learned} only ({@code forced} and {@code ownShare} null).
     */
    public record Report(Path model, List<String> datasets, int[] group, double[] learned, double[][] forced, double[] ownShare) {
        public double oracle(int dataset) { return forced[group[dataset]][dataset]; }
    }

    /** the run's datasets, each dataset's group, and the held-out windows of one split, rebuilt as the run built them */
    public record Windows(List<String> datasets, int[] group, List<List<int[]>> windows) {
        public static Windows of(Path run, String split) throws java.io.IOException {
            if (!split.equals("affinity") && !split.equals("final"))
                throw new IllegalArgumentException("split '" + split + "': expected affinity or final");
            JsonNode settings = JSON.readTree(run.resolve(DiveConversion.SETTINGS_FILE).toFile());
            JsonNode groupsJson = JSON.readTree(run.resolve("groups.json").toFile());
            JsonNode recipe = settings.get("recipe");
            List<String> names = new ArrayList<>();
            groupsJson.get("datasets").forEach(n -> names.add(n.asText()));
            int[] group = new int[names.size()];
            for (int i = 0; i < group.length; i++) group[i] = groupsJson.get("group_of_dataset").get(i).asInt();
            Path modelDir = Path.of(settings.get("model").asText());
            Tokenizer tokenizer = Tokenizer.load(modelDir.resolve("tokenizer.json"));
            Corpus corpus = settings.get("data").asText().equals("bundled") ? Corpus.bundled() : Corpus.open(Path.of(settings.get("data").asText()));
            List<List<int[]>> windows = new ArrayList<>();
            for (DatasetWindows w : DiveConversion.windows(corpus, names, tokenizer, recipe.get("calibration_windows").asInt(),
                    recipe.get("eval_windows").asInt(), recipe.get("final_eval_windows").asInt(), recipe.get("seqlen").asInt(), recipe.get("seed").asLong()))
                windows.add(split.equals("affinity") ? w.affinityEval() : w.finalEval());
            return new Windows(names, group, windows);
        }
    }

    /** the diagnostics of the model folder {@code dir} on {@code w}'s windows */
    public static Report analyse(Path dir, Windows w, Backend backend) throws Exception {
        try (LlamaModel model = LlamaModel.load(dir, backend)) {
            HeldOutEvaluation.Result learned = HeldOutEvaluation.run(model, w.windows(), null);
            if (!model.isMoe()) return new Report(dir, w.datasets(), w.group(), learned.perplexity(), null, null);
            int experts = model.config().moe().numLocalExperts();
            double[][] p = new double[experts][];
            var weights = model.namedWeights();
            for (int g = 0; g < experts; g++) {
                final int only = g;
                Function<String, Tensor> everywhere = name -> {
                    Matcher x = EXPERT.matcher(name);
                    if (!x.matches()) return weights.get(name);
                    if (Integer.parseInt(x.group(2)) >= experts) return null;  // the loader probes for surplus experts
                    Tensor t = weights.get(x.group(1) + only + x.group(3));
                    return t == null ? null : new Tensor(name, t.dtype(), t.shape(), t.data());
                };
                LlamaModel forced = LlamaModel.fromWeights(model.config(), everywhere, dir + " (expert " + g + " everywhere)", backend, null);
                p[g] = HeldOutEvaluation.run(forced, w.windows(), null).perplexity();
            }
            double[] own = new double[w.datasets().size()];
            for (int j = 0; j < own.length; j++) own[j] = learned.routingShare()[j][w.group()[j]];
            return new Report(dir, w.datasets(), w.group(), learned.perplexity(), p, own);
        }
    }

    /** {@code [--device auto|cuda|cpu] [--backend auto|vector|scalar] RUN_DIR affinity|final MODEL_DIR...} (both default auto) */
    public static void main(String[] args) throws Exception {
        String device = "auto", cpuBackend = "auto";
        int first = 0;
        while (first + 1 < args.length && (args[first].equals("--device") || args[first].equals("--backend"))) {
            if (args[first].equals("--device")) device = args[first + 1]; else cpuBackend = args[first + 1];
            first += 2;
        }
        String[] rest = java.util.Arrays.copyOfRange(args, first, args.length);
        if (rest.length < 3 || !(rest[1].equals("affinity") || rest[1].equals("final")))
            throw new IllegalArgumentException("usage: RoutingDiagnostics [--device auto|cuda|cpu] [--backend auto|vector|scalar] "
                    + "RUN_DIR affinity|final MODEL_DIR... (MODEL_DIR relative to RUN_DIR)");
        Path run = Path.of(rest[0]);
        Windows windows = Windows.of(run, rest[1]);
        Backend backend = Backends.create(device, cpuBackend);
        for (int m = 2; m < rest.length; m++) print(analyse(run.resolve(rest[m]), windows, backend), rest[1]);
    }

    static void print(Report r, String split) {
        List<String> names = r.datasets();
        if (r.forced() == null) {  // a dense model (the base model, FLAP): its perplexities only
            double log = 0;
            for (double v : r.learned()) log += Math.log(v) / r.learned().length;
            System.out.printf(Locale.ROOT, "%n== %s  (%s windows, dense) GEOMEAN %.2f%n", r.model(), split, Math.exp(log));
            return;
        }
        int experts = r.forced().length;
        double[][] p = r.forced();
        System.out.printf(Locale.ROOT, "%n== %s  (%s windows)%n", r.model(), split);
        System.out.printf(Locale.ROOT, "%-22s %5s %9s %9s %9s %9s %9s %6s  %s%n", "dataset", "group", "learned", "oracle", "best", "best_g",
                "others", "own%", "P[g] for g = 0..E-1");
        double[] logs = new double[4];
        double ownShare = 0;
        for (int j = 0; j < names.size(); j++) {
            int best = 0, own = r.group()[j];
            double others = 0;
            for (int g = 0; g < experts; g++) {
                if (p[g][j] < p[best][j]) best = g;
                if (g != own) others += Math.log(p[g][j]) / (experts - 1);
            }
            ownShare += r.ownShare()[j] / names.size();
            StringBuilder row = new StringBuilder();
            for (int g = 0; g < experts; g++) row.append(String.format(Locale.ROOT, " %7.2f", p[g][j]));
            System.out.printf(Locale.ROOT, "%-22s %5d %9.2f %9.2f %9.2f %9d %9.2f %6.1f %s%n", names.get(j), own,
                    r.learned()[j], r.oracle(j), p[best][j], best, Math.exp(others), 100 * r.ownShare()[j], row);
            logs[0] += Math.log(r.learned()[j]) / names.size();
            logs[1] += Math.log(r.oracle(j)) / names.size();
            logs[2] += Math.log(p[best][j]) / names.size();
            logs[3] += others / names.size();
        }
        System.out.printf(Locale.ROOT, "%-22s %5s %9.2f %9.2f %9.2f %9s %9.2f %6.1f%n", "GEOMEAN", "", Math.exp(logs[0]), Math.exp(logs[1]),
                Math.exp(logs[2]), "", Math.exp(logs[3]), 100 * ownShare);
    }
}
