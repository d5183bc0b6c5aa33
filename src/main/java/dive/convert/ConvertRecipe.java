package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The settings of {@code ./dive convert} beyond (E, k, r), from a YAML or JSON file; every key is optional, unknown
 * keys are rejected (naming the key and the allowed ones). Example (the defaults):
 * <pre>
 * datasets: []                 # dataset names; empty = every dataset of the corpus
 * score: wifv                  # wifv, ifv, wifn, wanda, taylor
 * linkage: average             # average, complete, ward
 * calibration_windows: 16      # per dataset, from its CALIB split
 * eval_windows: 8              # affinity-evaluation windows per dataset (first half of EVAL)
 * final_eval_windows: 8        # final-evaluation windows per dataset (second half of EVAL)
 * seqlen: 256                  # tokens per calibration / evaluation window
 * seed: 0                      # sampling, grouping, router init and training seed
 * bias_compensation: false
 * output_scale: false         # fold a least-squares output scale into every pruned FFN's down projection: DIVE's
 *                              # experts and every baseline's (beyond the spec; see {@link OutputScale})
 * grouping: affinity           # affinity | random | file
 * groups_file: null            # for grouping: file — JSON {"groups": [["name", ...], ...]} (affinity.json works)
 * nsamples: 0                  # windows per expert from its group's pool; 0 = the whole pool
 * router_init_std: 0.02
 * aux_loss_coef: 0             # Mixtral load-balancing loss coefficient during retraining
 * checkpoint_every: 20         # training steps between checkpoints
 * train_eval_windows: 4        # windows per dataset the trainer evaluates (loss curves, expert load)
 * train_evals: 4               # trainer evaluations per stage after the one at step 0 (the last at the stage's end)
 * stage0: {tokens: 100000, lr: 1.0e-4, batch_size: 8, seq_len: 256}          # + temperature (default 0.05 / 0.5 for k = 1 / 2)
 * stage1: {tokens: 200000, lr: 1.0e-4, batch_size: 8, seq_len: 256, warmup: 0.03, lora_r: 8, lora_alpha: 16, lora_dropout: 0.1}
 * stage2: {tokens: 0, lr: 1.0e-5, ...}                                        # optional; constant lr
 * export_dtype: auto           # dtype of the exported models: auto (the dense checkpoint's: BF16 in, BF16 out), F32,
 *                              # BF16 or F16 (convert's --dtype sets it)
 * methods: [dive]              # dive plus any baselines of {@link Methods} (flap, llm_pruner,
 *                              # llama_moe_random, llama_moe_kmeans, dive_random_groups, dive_shared, cmoe), each in OUT/&lt;method&gt;/
 * shared_share: 0.5            # dive_shared: the share of the active FFN width in its shared expert ({@link SharedExpertSplit})
 * keep_intermediate: false     # keep every method's built model and each stage's final model once its export and
 *                              # evaluations are written (false: their weights are removed — at 1.1B each is a full model
 *                              # copy; not a setting of the results, so a rerun may change it)
 * </pre>
 */
public record ConvertRecipe(List<String> datasets, String score, Clustering.Linkage linkage, int calibrationWindows, int evalWindows,
                            int finalEvalWindows, int seqlen, long seed, boolean biasCompensation, boolean outputScale, String grouping, Path groupsFile,
                            int nsamples, double routerInitStd, double auxLossCoef, int checkpointEvery, int trainEvalWindows,
                            int trainEvals, Stage stage0, Stage stage1, Stage stage2, List<String> methods, String exportDtype, double sharedShare,
                            boolean keepIntermediate) {

    /** one retraining stage; tokens 0 = skipped; temperature NaN = the paper's for k (stage 0 only) */
    public record Stage(long tokens, double lr, int batchSize, int seqLen, double warmup, double temperature, int loraR,
                        double loraAlpha, double loraDropout) {}

    public static final Set<String> KEYS = Set.of("datasets", "score", "linkage", "calibration_windows", "eval_windows", "final_eval_windows",
            "seqlen", "seed", "bias_compensation", "output_scale", "grouping", "groups_file", "nsamples", "router_init_std", "aux_loss_coef",
            "checkpoint_every", "train_eval_windows", "train_evals", "stage0", "stage1", "stage2", "methods", "export_dtype", "shared_share", "keep_intermediate");
    /** the most tokens one stage may train on (far beyond any run; a larger value is a typo) */
    static final long MAX_STAGE_TOKENS = 1L << 50;
    static final Set<String> STAGE_KEYS = Set.of("tokens", "lr", "batch_size", "seq_len", "warmup", "temperature", "lora_r", "lora_alpha", "lora_dropout");

    public static ConvertRecipe defaults() { return parse(new ObjectMapper().createObjectNode(), "(defaults)", Path.of(".")); }

    public static ConvertRecipe load(Path file) throws IOException {
        String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
        ObjectMapper mapper = name.endsWith(".yaml") || name.endsWith(".yml") ? new YAMLMapper() : new ObjectMapper();
        JsonNode root;
        try { root = mapper.readTree(dive.util.FileErrors.readAllBytes(file)); }
        catch (com.fasterxml.jackson.core.JacksonException e) { throw new IllegalArgumentException(file + ": not valid " + (mapper instanceof YAMLMapper ? "YAML" : "JSON") + ": " + e.getOriginalMessage()); }
        if (root == null || root.isMissingNode() || root.isNull()) root = new ObjectMapper().createObjectNode();
        return parse(root, file.toString(), file.toAbsolutePath().getParent());
    }

    /** the recipe {@code ./dive demo} uses, bundled in the jar */
    public static final String DEMO_RESOURCE = "/dive/demo-recipe.yaml";

    /** a recipe bundled in the jar (YAML), e.g. {@link #DEMO_RESOURCE} */
    public static ConvertRecipe bundled(String resource) throws IOException {
        try (var in = ConvertRecipe.class.getResourceAsStream(resource)) {
            if (in == null) throw new IOException("the jar has no bundled recipe " + resource + " (rebuild with ./dive build)");
            JsonNode root = new YAMLMapper().readTree(in);
            return parse(root == null ? new ObjectMapper().createObjectNode() : root, resource + " (bundled)", Path.of("."));
        }
    }

    public static ConvertRecipe parse(JsonNode root, String source, Path baseDir) {
        Reader r = new Reader(root, source, "");
        r.allowOnly(KEYS);
        List<String> datasets = r.strings("datasets");
        if (new java.util.HashSet<>(datasets).size() != datasets.size()) throw r.error("datasets", "a dataset is named twice: " + datasets);
        String score = r.text("score", "wifv").toLowerCase(Locale.ROOT);
        if (!score.equals("taylor")) ChannelScore.parse(score, source + ": score");
        Clustering.Linkage linkage = Clustering.Linkage.parse(r.text("linkage", "average"), source + ": linkage");
        int calibration = (int) r.integer("calibration_windows", 16, 1, 1 << 20);
        int eval = (int) r.integer("eval_windows", 8, 1, 1 << 20);
        int finalEval = (int) r.integer("final_eval_windows", 8, 1, 1 << 20);
        int seqlen = (int) r.integer("seqlen", 256, 2, 1 << 20);
        long seed = r.integer("seed", 0, Long.MIN_VALUE, Long.MAX_VALUE);
        boolean bias = r.bool("bias_compensation", false);
        boolean outputScale = r.bool("output_scale", false);
        String grouping = r.text("grouping", "affinity");
        if (!Set.of("affinity", "random", "file").contains(grouping)) throw r.error("grouping", "expected affinity, random or file, found '" + grouping + "'");
        String groupsFile = r.text("groups_file", null);
        if (grouping.equals("file") && groupsFile == null) throw r.error("groups_file", "missing: grouping: file needs a groups file");
        if (!grouping.equals("file") && groupsFile != null) throw r.error("groups_file", "only for grouping: file");
        int nsamples = (int) r.integer("nsamples", 0, 0, 1 << 24);
        double routerStd = r.number("router_init_std", ExpertReconstruction.DEFAULT_ROUTER_INIT_STD);
        if (!(routerStd > 0) || Double.isInfinite(routerStd)) throw r.error("router_init_std", routerStd + ": expected a finite value > 0");
        double aux = r.number("aux_loss_coef", 0);
        if (!(aux >= 0) || Double.isInfinite(aux)) throw r.error("aux_loss_coef", aux + ": expected a finite value ≥ 0");
        int checkpointEvery = (int) r.integer("checkpoint_every", 20, 1, Integer.MAX_VALUE);
        int trainEval = (int) r.integer("train_eval_windows", 4, 0, 1 << 20);
        int trainEvals = (int) r.integer("train_evals", 4, 1, 1 << 20);
        Stage s0 = stage(r, "stage0", 100_000, 1e-4, true);
        Stage s1 = stage(r, "stage1", 200_000, 1e-4, false);
        Stage s2 = stage(r, "stage2", 0, 1e-5, false);
        List<String> methods = r.has("methods") ? r.strings("methods") : List.of("dive");
        if (new java.util.HashSet<>(methods).size() != methods.size()) throw r.error("methods", "a method is named twice: " + methods);
        if (!methods.contains("dive")) throw r.error("methods", "must contain dive (the conversion itself; baselines run beside it): " + methods);
        for (String m : methods) Methods.byName(m, source + ": methods");
        double sharedShare = r.number("shared_share", 0.5);
        if (!(sharedShare > 0 && sharedShare < 1)) throw r.error("shared_share", sharedShare + ": expected the share of the active width in dive_shared's shared expert, in (0, 1)");
        return new ConvertRecipe(datasets, score, linkage, calibration, eval, finalEval, seqlen, seed, bias, outputScale, grouping,
                groupsFile == null ? null : baseDir.resolve(groupsFile).toAbsolutePath().normalize(), nsamples, routerStd, aux,
                checkpointEvery, trainEval, trainEvals, s0, s1, s2, List.copyOf(methods), exportDtype(r.text("export_dtype", "auto"), source + ": export_dtype"),
                sharedShare, r.bool("keep_intermediate", false));
    }

    /** "auto", "F32", "BF16" or "F16" (case-insensitive in, canonical out), or an error naming {@code what} */
    public static String exportDtype(String value, String what) {
        String v = value.toUpperCase(Locale.ROOT);
        if (v.equals("AUTO")) return "auto";
        if (v.equals("F32") || v.equals("BF16") || v.equals("F16")) return v;
        throw new IllegalArgumentException(what + ": '" + value + "': expected auto, F32, BF16 or F16");
    }

    /** these settings with the exported models' dtype set ("auto", "F32", "BF16", "F16") */
    public ConvertRecipe withExportDtype(String dtype) {
        return new ConvertRecipe(datasets, score, linkage, calibrationWindows, evalWindows, finalEvalWindows, seqlen, seed, biasCompensation,
                outputScale, grouping, groupsFile, nsamples, routerInitStd, auxLossCoef, checkpointEvery, trainEvalWindows, trainEvals, stage0, stage1, stage2,
                methods, exportDtype(dtype, "export_dtype"), sharedShare, keepIntermediate);
    }

    /** the exported models' dtype for a dense checkpoint whose weights are {@code denseDtype} */
    public dive.tensor.DType exportDtype(dive.tensor.DType denseDtype) {
        return exportDtype.equals("auto") ? denseDtype : dive.tensor.DType.valueOf(exportDtype);
    }

    private static Stage stage(Reader root, String key, long tokens, double lr, boolean stage0) {
        Reader s = root.child(key);
        s.allowOnly(STAGE_KEYS);
        long t = s.integer("tokens", tokens, 0, MAX_STAGE_TOKENS);
        double rate = s.number("lr", lr);
        if (!(rate > 0) || Double.isInfinite(rate)) throw s.error("lr", rate + ": expected a finite value > 0");
        int batch = (int) s.integer("batch_size", 8, 1, 1 << 16);
        int seqLen = (int) s.integer("seq_len", 256, 1, 1 << 20);
        double warmup = s.number("warmup", stage0 ? 0 : key.equals("stage1") ? 0.03 : 0);
        if (!(warmup >= 0 && warmup < 1)) throw s.error("warmup", warmup + ": expected a share of the stage's steps in [0, 1)");
        double temperature = s.number("temperature", Double.NaN);
        if (!stage0 && s.has("temperature")) throw s.error("temperature", "only stage 0 routes softly");
        if (s.has("temperature") && !(temperature > 0 && temperature < Double.POSITIVE_INFINITY)) throw s.error("temperature", temperature + ": expected > 0");
        for (String k : List.of("lora_r", "lora_alpha", "lora_dropout"))
            if (stage0 && s.has(k)) throw s.error(k, "stage 0 trains the routers only (no LoRA)");
        int loraR = (int) s.integer("lora_r", 8, 1, 1 << 16);
        double alpha = s.number("lora_alpha", 16);
        if (!(alpha > 0)) throw s.error("lora_alpha", alpha + ": expected a finite value > 0");
        double dropout = s.number("lora_dropout", 0.1);
        if (!(dropout >= 0 && dropout < 1)) throw s.error("lora_dropout", dropout + ": expected 0 ≤ dropout < 1");
        return new Stage(t, rate, batch, seqLen, warmup, temperature, loraR, alpha, dropout);
    }

    /** these settings with another grouping (no groups file) and only the method dive: the dive_random_groups ablation */
    public ConvertRecipe withRandomGroupingOnly() {
        return new ConvertRecipe(datasets, score, linkage, calibrationWindows, evalWindows, finalEvalWindows, seqlen, seed, biasCompensation,
                outputScale, "random", null, nsamples, routerInitStd, auxLossCoef, checkpointEvery, trainEvalWindows, trainEvals, stage0, stage1, stage2, List.of("dive"), exportDtype, sharedShare, keepIntermediate);
    }

    /** these settings with another seed (the multi-seed comparison) */
    public ConvertRecipe withSeed(long newSeed) {
        return new ConvertRecipe(datasets, score, linkage, calibrationWindows, evalWindows, finalEvalWindows, seqlen, newSeed, biasCompensation,
                outputScale, grouping, groupsFile, nsamples, routerInitStd, auxLossCoef, checkpointEvery, trainEvalWindows, trainEvals, stage0, stage1, stage2, methods, exportDtype, sharedShare, keepIntermediate);
    }

    /** the settings as a JSON tree (recorded in the output folder: a rerun must use the same) */
    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("datasets", datasets);
        m.put("score", score);
        m.put("linkage", linkage.toString());
        m.put("calibration_windows", calibrationWindows);
        m.put("eval_windows", evalWindows);
        m.put("final_eval_windows", finalEvalWindows);
        m.put("seqlen", seqlen);
        m.put("seed", seed);
        m.put("bias_compensation", biasCompensation);
        if (outputScale) m.put("output_scale", true);  // absent when off: earlier runs' settings stay valid
        if (!exportDtype.equals("auto")) m.put("export_dtype", exportDtype);  // absent when auto, likewise
        if (sharedShare != 0.5) m.put("shared_share", sharedShare);  // absent at the default, likewise
        m.put("grouping", grouping);
        m.put("groups_file", groupsFile == null ? null : groupsFile.toString());
        m.put("nsamples", nsamples);
        m.put("router_init_std", routerInitStd);
        m.put("aux_loss_coef", auxLossCoef);
        m.put("checkpoint_every", checkpointEvery);
        m.put("train_eval_windows", trainEvalWindows);
        if (trainEvals != 4) m.put("train_evals", trainEvals);  // absent at the default: earlier runs' settings stay valid
        for (int i = 0; i < 3; i++) {
            Stage s = List.of(stage0, stage1, stage2).get(i);
            Map<String, Object> sm = new LinkedHashMap<>();
            sm.put("tokens", s.tokens());
            sm.put("lr", s.lr());
            sm.put("batch_size", s.batchSize());
            sm.put("seq_len", s.seqLen());
            sm.put("warmup", s.warmup());
            if (i == 0) sm.put("temperature", Double.isNaN(s.temperature()) ? null : s.temperature());
            else { sm.put("lora_r", s.loraR()); sm.put("lora_alpha", s.loraAlpha()); sm.put("lora_dropout", s.loraDropout()); }
            m.put("stage" + i, sm);
        }
        if (!methods.equals(List.of("dive"))) m.put("methods", methods);  // absent for dive alone: earlier runs' settings stay valid
        return m;
    }

    /** a JSON node with its key path, for messages */
    private record Reader(JsonNode node, String source, String path) {
        IllegalArgumentException error(String key, String what) { return new IllegalArgumentException(source + ": " + key(key) + ": " + what); }
        private String key(String k) { return path.isEmpty() ? k : path + "." + k; }
        Reader child(String k) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return new Reader(new ObjectMapper().createObjectNode(), source, key(k));
            if (!v.isObject()) throw error(k, "expected a mapping of keys, found " + v);
            return new Reader(v, source, key(k));
        }
        boolean has(String k) { return node.has(k) && !node.get(k).isNull(); }
        void allowOnly(Set<String> allowed) {
            if (!node.isObject()) throw new IllegalArgumentException(source + ": expected a mapping of keys at the top level, found " + node);
            node.fieldNames().forEachRemaining(k -> { if (!allowed.contains(k)) throw error(k, "unknown key (expected one of " + new TreeSet<>(allowed) + ")"); });
        }
        String text(String k, String def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isTextual()) throw error(k, "expected text, found " + v);
            return v.asText();
        }
        double number(String k, double def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isNumber()) throw error(k, "expected a number, found " + v);
            if (!Double.isFinite(v.asDouble())) throw error(k, "expected a finite number, found " + v.asText());
            return v.asDouble();
        }
        long integer(String k, long def, long min, long max) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isIntegralNumber() || !v.canConvertToLong()) throw error(k, "expected an integer, found " + v);
            long x = v.asLong();
            if (x < min || x > max) throw error(k, x + ": expected " + min + " … " + max);
            return x;
        }
        boolean bool(String k, boolean def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isBoolean()) throw error(k, "expected true or false, found " + v);
            return v.asBoolean();
        }
        List<String> strings(String k) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return List.of();
            if (!v.isArray()) throw error(k, "expected a list of names, found " + v);
            List<String> out = new ArrayList<>();
            for (JsonNode e : v) { if (!e.isTextual()) throw error(k, "expected names, found " + e); out.add(e.asText()); }
            return List.copyOf(out);
        }
    }
}
