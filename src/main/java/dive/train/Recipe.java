package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dive.tensor.DType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A training recipe, read from YAML ({@code .yaml}/{@code .yml}) or JSON. Every key is checked: an unknown key or
 * an impossible value fails here, naming the key, before any work starts. Relative paths are resolved against
 * the recipe's folder. Fields (defaults in brackets):
 * <pre>
 * model:      {config: {…LlamaConfig fields…} | "config.json"}  or  {checkpoint: MODEL_DIR}  (or a registered kind, e.g. {toy: {…}})
 * tokenizer:  "tokenizer.json"  or  {train: {vocab_size: N, datasets: [..] [all of data], min_frequency: [2]}}
 * data:       {corpus: bundled | CORPUS_DIR, datasets: [a, b] | {a: 3, b: 1} [weights ∝ tokens], eval_windows: [16]}
 * schedule:   {kind: cosine | constant [cosine], lr: [3e-4], warmup: [0] steps, min_lr: [lr/10 for cosine, lr for constant]}
 * optimizer:  {betas: [[0.9, 0.95]], eps: [1e-8], weight_decay: [0.1], decay_norms: [false], clip: [1.0] (0 = none)}
 * batch_size, seq_len, grad_accum [1], max_steps | max_tokens, eval_every [0 = at the end], checkpoint_every [0 = at the end],
 * keep_checkpoints [2], seed [0], freeze: [globs], train: [globs], lora: {r, alpha, dropout [0], targets},
 * output: auto | F32 | BF16 | F16 | keep [auto: the checkpoint's dtype (BF16 in, BF16 out), F32 for a fresh model; keep: each
 *         weight in its own dtype, frozen ones as stored, trained ones F32]
 * moe:        {routing: top_k | soft [top_k], temperature: [0.05 for k = 1, else 0.5] (soft only), aux_loss_coef: [the
 *              checkpoint's router_aux_loss_coef when its output_router_logits is true, else 0]}   (Mixtral models only)
 * </pre>
 * DIVE's stages (docs in {@link TrainableLlama}): stage 0 = {@code train: ["*.block_sparse_moe.gate.weight"]},
 * {@code moe: {routing: soft}}; stage 1/2 = {@code lora: {r: 8, alpha: 16, dropout: 0.1, targets: [w1, w2, w3]}},
 * {@code train: ["*.lora_*", "*.block_sparse_moe.gate.weight", "*norm.weight"]}.
 */
public record Recipe(Path source, Path baseDir, String sha256, Model model, TokenizerSpec tokenizer, Data data,
                     LrSchedule.Kind scheduleKind, double lr, long warmupSteps, double minLr,
                     AdamW.Options optimizer, double clip,
                     int batchSize, int seqLen, int gradAccum, long maxSteps, int evalEvery, int checkpointEvery,
                     int keepCheckpoints, long seed, List<String> freeze, List<String> train, Lora lora, String output, Moe moe) {

    /**
     * the dtype the final model is written in for a model whose weights came as {@code sourceDtype} (F32 for a fresh
     * model); null for {@code keep} (each weight in its own dtype)
     */
    public DType outputDtype(DType sourceDtype) {
        return switch (output) {
            case "AUTO" -> sourceDtype;
            case "KEEP" -> null;
            default -> DType.valueOf(output);
        };
    }

    /** {@link #outputDtype(DType)} of a model that came as F32 (fresh or F32 weights) */
    public DType outputDtype() { return outputDtype(DType.F32); }

    /** exactly one of the model kinds: {@code kind} = config | checkpoint | a registered kind; {@code spec} = its value */
    public record Model(String kind, JsonNode spec, Path path) {}
    /** {@code file} to load, or (file null) train one with BpeTrainer */
    public record TokenizerSpec(Path file, int vocabSize, List<String> datasets, int minFrequency) {}
    /** weights: dataset → mix weight, or null for "proportional to size" */
    public record Data(String corpus, List<String> datasets, double[] weights, int evalWindows) {}
    public record Lora(int r, double alpha, double dropout, List<String> targets) {}
    /** soft: stage-0 routing over all experts at {@code temperature} (NaN = the paper's default for k); auxLossCoef NaN = from the config */
    public record Moe(boolean soft, double temperature, double auxLossCoef) {}

    /** the most tokens (or steps) a recipe may ask for: far beyond any run, so a larger value is a typo */
    static final long MAX_TOKENS = 1L << 50;

    public static final Set<String> KEYS = Set.of("model", "tokenizer", "data", "schedule", "optimizer", "batch_size", "seq_len",
            "grad_accum", "max_tokens", "max_steps", "eval_every", "checkpoint_every", "keep_checkpoints", "seed", "freeze",
            "train", "lora", "output", "moe");

    public static Recipe load(Path file) throws IOException {
        String name = file.getFileName().toString().toLowerCase(java.util.Locale.ROOT);
        ObjectMapper mapper = name.endsWith(".yaml") || name.endsWith(".yml") ? new YAMLMapper() : new ObjectMapper();
        JsonNode root;
        try { root = mapper.readTree(dive.util.FileErrors.readAllBytes(file)); }
        catch (com.fasterxml.jackson.core.JacksonException e) { throw new IllegalArgumentException(file + ": not valid " + (mapper instanceof YAMLMapper ? "YAML" : "JSON") + ": " + e.getOriginalMessage()); }
        Path dir = file.toAbsolutePath().getParent();
        return parse(root, file.toString(), dir);
    }

    public static Recipe parse(JsonNode root, String source, Path baseDir) {
        Node r = new Node(root, source, "");
        r.requireObject().allowOnly(KEYS);

        // model
        Node m = r.child("model").requireObject();
        List<String> kinds = m.keys();
        if (kinds.size() != 1) throw r.error("model", "expected exactly one of config, checkpoint (or a registered model kind), found " + kinds);
        String kind = kinds.getFirst();
        JsonNode spec = m.node.get(kind);
        Path path = null;
        if (kind.equals("checkpoint") || (kind.equals("config") && spec.isTextual())) {
            if (!spec.isTextual()) throw r.error("model." + kind, "expected a path");
            path = baseDir.resolve(spec.asText());
        } else if (kind.equals("config") && !spec.isObject()) {
            throw r.error("model.config", "expected the config fields inline or a path to config.json");
        }
        Model model = new Model(kind, spec, path);

        // data
        Node d = r.child("data").requireObject().allowOnly(Set.of("corpus", "datasets", "eval_windows"));
        String corpus = d.text("corpus", null);
        if (corpus == null) throw r.error("data.corpus", "missing: expected bundled or a corpus folder");
        JsonNode ds = d.node.get("datasets");
        List<String> names = new ArrayList<>();
        double[] weights = null;
        if (ds == null || ds.isNull()) throw r.error("data.datasets", "missing: expected a list of dataset names or a map name → weight");
        if (ds.isArray()) {
            for (JsonNode n : ds) { if (!n.isTextual()) throw r.error("data.datasets", "expected names, found " + n); names.add(n.asText()); }
        } else if (ds.isObject()) {
            weights = new double[ds.size()];
            int i = 0;
            for (Iterator<Map.Entry<String, JsonNode>> it = ds.fields(); it.hasNext(); i++) {
                var e = it.next();
                if (!e.getValue().isNumber() || !(e.getValue().asDouble() >= 0)) throw r.error("data.datasets." + e.getKey(), "expected a mix weight ≥ 0, found " + e.getValue());
                names.add(e.getKey());
                weights[i] = e.getValue().asDouble();
            }
            double total = 0; for (double w : weights) total += w;
            if (!(total > 0)) throw r.error("data.datasets", "the mix weights are all 0");
        } else throw r.error("data.datasets", "expected a list of dataset names or a map name → weight");
        if (names.isEmpty()) throw r.error("data.datasets", "expected at least one dataset");
        if (new java.util.HashSet<>(names).size() != names.size()) throw r.error("data.datasets", "a dataset is named twice: " + names);
        int evalWindows = (int) d.integer("eval_windows", 16, 0, 1_000_000);
        Data data = new Data(corpus, List.copyOf(names), weights, evalWindows);

        // tokenizer
        JsonNode tn = root.get("tokenizer");
        TokenizerSpec tokenizer;
        if (tn == null) throw r.error("tokenizer", "missing: expected a path to tokenizer.json or {train: {vocab_size: N}}");
        if (tn.isTextual()) tokenizer = new TokenizerSpec(baseDir.resolve(tn.asText()), 0, List.of(), 0);
        else {
            Node t = r.child("tokenizer").requireObject().allowOnly(Set.of("train"));
            Node tt = t.child("train").requireObject().allowOnly(Set.of("vocab_size", "datasets", "min_frequency"));
            int vocab = (int) tt.integer("vocab_size", -1, 258, 1 << 24);
            if (vocab < 0) throw r.error("tokenizer.train.vocab_size", "missing");
            List<String> tds = tt.strings("datasets", data.datasets());
            for (String n : tds) if (!names.contains(n)) throw r.error("tokenizer.train.datasets", "'" + n + "' is not one of data.datasets " + names);
            tokenizer = new TokenizerSpec(null, vocab, tds, (int) tt.integer("min_frequency", 2, 1, Integer.MAX_VALUE));
        }

        // schedule and optimizer
        Node s = r.child("schedule").orEmpty().allowOnly(Set.of("kind", "lr", "warmup", "min_lr"));
        String kindName = s.text("kind", "cosine");
        LrSchedule.Kind scheduleKind = switch (kindName) {
            case "cosine" -> LrSchedule.Kind.COSINE;
            case "constant" -> LrSchedule.Kind.CONSTANT;
            default -> throw r.error("schedule.kind", "expected cosine or constant, found '" + kindName + "'");
        };
        double lr = s.number("lr", 3e-4);
        if (!(lr > 0) || Double.isInfinite(lr)) throw r.error("schedule.lr", lr + ": expected a finite value > 0");
        long warmup = s.integer("warmup", 0, 0, Long.MAX_VALUE);
        double minLr = s.number("min_lr", scheduleKind == LrSchedule.Kind.COSINE ? lr / 10 : lr);
        if (!(minLr >= 0) || minLr > lr) throw r.error("schedule.min_lr", minLr + ": expected 0 ≤ min_lr ≤ lr (" + lr + ")");

        Node o = r.child("optimizer").orEmpty().allowOnly(Set.of("betas", "eps", "weight_decay", "decay_norms", "clip"));
        JsonNode betas = o.node.get("betas");
        double beta1 = 0.9, beta2 = 0.95;
        if (betas != null) {
            if (!betas.isArray() || betas.size() != 2 || !betas.get(0).isNumber() || !betas.get(1).isNumber()) throw r.error("optimizer.betas", "expected [β1, β2]");
            beta1 = betas.get(0).asDouble(); beta2 = betas.get(1).asDouble();
        }
        AdamW.Options options;
        try {
            options = new AdamW.Options(beta1, beta2, o.number("eps", 1e-8), o.number("weight_decay", 0.1), o.bool("decay_norms", false));
        } catch (IllegalArgumentException e) { throw new IllegalArgumentException(source + ": " + e.getMessage()); }
        double clip = o.number("clip", 1.0);
        if (!(clip >= 0)) throw r.error("optimizer.clip", clip + ": expected ≥ 0 (0 = no clipping)");

        // sizes and cadence
        int batch = (int) r.integer("batch_size", -1, 1, 1 << 20);
        if (batch < 0) throw r.error("batch_size", "missing");
        int seqLen = (int) r.integer("seq_len", -1, 1, 1 << 24);
        if (seqLen < 0) throw r.error("seq_len", "missing");
        int accum = (int) r.integer("grad_accum", 1, 1, 1 << 20);
        long tokensPerStep = (long) batch * seqLen * accum;
        boolean hasSteps = root.has("max_steps"), hasTokens = root.has("max_tokens");
        if (hasSteps == hasTokens) throw r.error("max_steps", "give exactly one of max_steps and max_tokens");
        long maxSteps = hasSteps ? r.integer("max_steps", 0, 1, MAX_TOKENS)
                : (r.integer("max_tokens", 0, 1, MAX_TOKENS) + tokensPerStep - 1) / tokensPerStep;
        int evalEvery = (int) r.integer("eval_every", 0, 0, Integer.MAX_VALUE);
        int checkpointEvery = (int) r.integer("checkpoint_every", 0, 0, Integer.MAX_VALUE);
        int keep = (int) r.integer("keep_checkpoints", 2, 0, Integer.MAX_VALUE);
        long seed = r.integer("seed", 0, Long.MIN_VALUE, Long.MAX_VALUE);
        List<String> freeze = r.strings("freeze", List.of()), train = r.strings("train", List.of());
        for (String p : freeze) ParameterPatterns.compile(p, "freeze");
        for (String p : train) ParameterPatterns.compile(p, "train");

        Lora lora = null;
        if (root.has("lora")) {
            Node l = r.child("lora").requireObject().allowOnly(Set.of("r", "alpha", "dropout", "targets"));
            int rank = (int) l.integer("r", -1, 1, 1 << 16);
            if (rank < 0) throw r.error("lora.r", "missing");
            double alpha = l.number("alpha", rank);
            if (!(alpha > 0)) throw r.error("lora.alpha", alpha + ": expected a finite value > 0");
            double dropout = l.number("dropout", 0);
            if (!(dropout >= 0 && dropout < 1)) throw r.error("lora.dropout", dropout + ": expected 0 ≤ dropout < 1");
            List<String> targets = l.strings("targets", List.of());
            if (targets.isEmpty()) throw r.error("lora.targets", "expected the projections to adapt, e.g. [q_proj, v_proj]");
            lora = new Lora(rank, alpha, dropout, targets);
        }
        Moe moe = null;
        if (root.has("moe")) {
            Node mo = r.child("moe").requireObject().allowOnly(Set.of("routing", "temperature", "aux_loss_coef"));
            String routing = mo.text("routing", "top_k");
            if (!routing.equals("top_k") && !routing.equals("soft")) throw r.error("moe.routing", "expected top_k or soft, found '" + routing + "'");
            double temperature = mo.number("temperature", Double.NaN);
            if (!Double.isNaN(temperature) && !(temperature > 0 && temperature < Double.POSITIVE_INFINITY))
                throw r.error("moe.temperature", temperature + ": expected a positive number");
            if (!Double.isNaN(temperature) && routing.equals("top_k")) throw r.error("moe.temperature", "only for routing: soft");
            double aux = mo.number("aux_loss_coef", Double.NaN);
            if (!Double.isNaN(aux) && !(aux >= 0 && aux < Double.POSITIVE_INFINITY)) throw r.error("moe.aux_loss_coef", aux + ": expected ≥ 0");
            moe = new Moe(routing.equals("soft"), temperature, aux);
        }
        String output = r.text("output", "auto").toUpperCase(java.util.Locale.ROOT);
        if (!Set.of("AUTO", "KEEP", "F32", "BF16", "F16").contains(output))
            throw r.error("output", "expected auto, F32, BF16, F16 or keep, found '" + r.text("output", "") + "'");
        return new Recipe(Path.of(source), baseDir, canonicalSha256(root), model, tokenizer, data, scheduleKind, lr, warmup, minLr,
                options, clip, batch, seqLen, accum, maxSteps, evalEvery, checkpointEvery, keep, seed, freeze, train, lora, output, moe);
    }

    public LrSchedule schedule() { return new LrSchedule(scheduleKind, lr, warmupSteps, minLr, maxSteps); }

    public long tokensPerStep() { return (long) batchSize * seqLen * gradAccum; }

    /** SHA-256 of the recipe tree written as JSON with sorted keys: equal recipes hash equal whatever their format */
    static String canonicalSha256(JsonNode root) {
        try {
            ObjectMapper sorted = new ObjectMapper().configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true);
            return TokenShard.sha256(sorted.writeValueAsBytes(sorted.convertValue(root, Object.class)));
        } catch (IOException e) { throw new IllegalStateException(e); }
    }

    /** a node with its key path, for messages */
    private record Node(JsonNode node, String source, String path) {
        IllegalArgumentException error(String key, String what) { return new IllegalArgumentException(source + ": " + key + ": " + what); }
        private String key(String k) { return path.isEmpty() ? k : path + "." + k; }

        Node requireObject() {
            if (node == null || !node.isObject()) throw error(path.isEmpty() ? "(top level)" : path, node == null ? "missing" : "expected a mapping of keys, found " + node);
            return this;
        }
        Node orEmpty() { return node == null ? new Node(com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.objectNode(), source, path) : requireObject(); }
        Node child(String k) { return new Node(node.get(k), source, key(k)); }
        List<String> keys() { List<String> out = new ArrayList<>(); node.fieldNames().forEachRemaining(out::add); return out; }
        Node allowOnly(Set<String> allowed) {
            for (String k : keys()) if (!allowed.contains(k)) throw error(key(k), "unknown key (expected one of " + new java.util.TreeSet<>(allowed) + ")");
            return this;
        }
        String text(String k, String def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isTextual()) throw error(key(k), "expected text, found " + v);
            return v.asText();
        }
        double number(String k, double def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isNumber()) throw error(key(k), "expected a number, found " + v);
            if (!Double.isFinite(v.asDouble())) throw error(key(k), "expected a finite number, found " + v.asText());
            return v.asDouble();
        }
        long integer(String k, long def, long min, long max) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isIntegralNumber() || !v.canConvertToLong()) throw error(key(k), "expected an integer, found " + v);
            long x = v.asLong();
            if (x < min || x > max) throw error(key(k), x + ": expected " + (max == Long.MAX_VALUE || max == Integer.MAX_VALUE ? "≥ " + min : min + " … " + max));
            return x;
        }
        boolean bool(String k, boolean def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (!v.isBoolean()) throw error(key(k), "expected true or false, found " + v);
            return v.asBoolean();
        }
        List<String> strings(String k, List<String> def) {
            JsonNode v = node.get(k);
            if (v == null || v.isNull()) return def;
            if (v.isTextual()) return List.of(v.asText());
            if (!v.isArray()) throw error(key(k), "expected a list of text, found " + v);
            List<String> out = new ArrayList<>();
            for (JsonNode e : v) { if (!e.isTextual()) throw error(key(k), "expected text, found " + e); out.add(e.asText()); }
            return List.copyOf(out);
        }
    }

    /** the mix weights by name in {@link Data#datasets()} order, or null */
    public Map<String, Double> mix() {
        if (data.weights() == null) return null;
        Map<String, Double> out = new LinkedHashMap<>();
        for (int i = 0; i < data.datasets().size(); i++) out.put(data.datasets().get(i), data.weights()[i]);
        return out;
    }
}
