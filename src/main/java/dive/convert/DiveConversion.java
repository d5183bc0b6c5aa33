package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dive.backend.Backend;
import dive.data.Corpus;
import dive.data.Manifest;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.DType;
import dive.tokenizer.Tokenizer;
import dive.train.Recipe;
import dive.train.TrainState;
import dive.train.Trainer;
import dive.train.TrainableLlama;
import dive.train.TrainingRun;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.logging.Logger;
import java.util.stream.Stream;

/**
 * The conversion driver ({@code ./dive convert}): one run of the shared stages for every {@link Method} of the recipe —
 * windows → groups (methods that use them: affinity mining, random or a file) → build ({@link Method#build}) →
 * training-free evaluation → retraining stages 0, 1 (and 2) of the method's {@link Method.Family} → export → evaluation →
 * report entry ({@link MethodResult}) — then report.json ({@link ConversionResult}) and the pictures ({@link ConversionReport}).
 * DIVE ({@link DiveMethod}) runs in OUT, every other method in OUT/&lt;method&gt; (the same layout, with build/ for experts/).
 *
 * <p>Output folder (every file written atomically; each step's result is reused by a rerun, so a stopped run
 * continues where it stopped and ends with the same bytes):
 * <pre>
 * convert.json        the settings (model, data, E, k, r, recipe); a rerun with other settings is refused
 * affinity/           affinity.json + affinity.png (grouping: affinity)
 * groups.json         the groups (dataset names per expert)
 * experts/            the reconstructed Mixtral before retraining (HF folder; dive_expert_bias with bias compensation)
 * stage0/ stage1/ stage2/   training runs (recipe.json, checkpoints/, train-log.jsonl, loss.png, final/, done)
 * model/              the exported Mixtral (tokenizer files of MODEL_DIR copied)
 * eval/               dense.json, before.json, after.json: per-dataset perplexity on the final-evaluation windows, routing share
 * report.json, report.md, ppl.png, routing.png, loss.png   results ({@link ConversionReport}); timings.json  seconds per
 *                     phase (kept apart: they differ between runs)
 * &lt;method&gt;/            each other method of the recipe: build/ (its model before retraining), kept_channels.json,
 *                     stage folders, model/, eval/before.json and eval/after.json; dive_random_groups a whole DIVE run
 * </pre>
 */
public final class DiveConversion {
    private static final Logger LOG = Logger.getLogger(DiveConversion.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    public static final String SETTINGS_FILE = "convert.json", DONE_FILE = "done";

    /**
     * A run's windows of every dataset (dataset i seeded with {@link AffinityMining#datasetSeed}(seed, i)): calibration,
     * the first {@code evalWindows} affinity-evaluation and the first {@code finalEvalWindows} final-evaluation windows.
     * Deterministic, so a finished run's windows can be rebuilt from its settings (RoutingDiagnostics does).
     */
    static List<DatasetWindows> windows(Corpus corpus, List<String> names, Tokenizer tokenizer, int calibrationWindows, int evalWindows,
                                        int finalEvalWindows, int seqlen, long seed) throws IOException {
        List<DatasetWindows> windows = new ArrayList<>();
        for (int i = 0; i < names.size(); i++) {
            DatasetWindows w = DatasetWindows.of(corpus, names.get(i), tokenizer, calibrationWindows, Math.max(evalWindows, finalEvalWindows),
                    seqlen, AffinityMining.datasetSeed(seed, i));
            windows.add(new DatasetWindows(w.dataset(), w.seqlen(), w.calibrationSeed(), w.calibrationOffsets(), w.calibration(),
                    w.affinityEval().subList(0, Math.min(evalWindows, w.affinityEval().size())),
                    w.finalEval().subList(0, Math.min(finalEvalWindows, w.finalEval().size())), w.calibTokens(), w.evalTokens()));
        }
        return windows;
    }

    /**
     * @param data    "bundled" or a corpus folder
     * @param command the command line that asked for it, for report.md (null: a library call)
     */
    public record Request(Path modelDir, String data, int experts, int topK, double ratio, ConvertRecipe recipe, Path outDir, boolean progress,
                          String command, dive.model.LoadOptions load) {
        public Request(Path modelDir, String data, int experts, int topK, double ratio, ConvertRecipe recipe, Path outDir, boolean progress,
                       String command) {
            this(modelDir, data, experts, topK, ratio, recipe, outDir, progress, command, dive.model.LoadOptions.DEFAULT);
        }

        public Request(Path modelDir, String data, int experts, int topK, double ratio, ConvertRecipe recipe, Path outDir, boolean progress) {
            this(modelDir, data, experts, topK, ratio, recipe, outDir, progress, null);
        }
    }

    /** runs (or resumes) the conversion {@code q} with the methods of its recipe, every model on {@code backend}; returns the report (report.json) */
    public static ConversionResult run(Request q, Backend backend) throws Exception {
        return run(q, backend, Methods.of(q.recipe()));
    }

    /**
     * runs (or resumes) the conversion {@code q} with {@code methods} (the recipe's {@code methods} are not read): the first,
     * DIVE, in OUT, every other in OUT/&lt;name&gt;, each through the same stages; returns the report (report.json)
     */
    public static ConversionResult run(Request q, Backend backend, List<Method> methods) throws Exception {
        if (methods.isEmpty() || !methods.getFirst().name().equals(DiveMethod.NAME) || methods.getFirst().grouping(q.recipe()) == null)
            throw new IllegalArgumentException("methods " + methods.stream().map(Method::name).toList() + ": the first must be dive (the conversion itself; the others run beside it)");
        if (methods.stream().map(Method::name).distinct().count() != methods.size())
            throw new IllegalArgumentException("methods " + methods.stream().map(Method::name).toList() + ": a method is named twice (each has its folder and report entry)");
        ConvertRecipe recipe = q.recipe();
        Path out = q.outDir().toAbsolutePath().normalize();
        Path modelDir = q.modelDir().toAbsolutePath().normalize();
        Inputs in = check(q, modelDir);
        for (Method m : methods) m.check(q, in.denseConfig());
        String data = q.data().equals("bundled") ? "bundled" : Path.of(q.data()).toAbsolutePath().normalize().toString();
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("model", modelDir.toString());
        settings.put("data", data);
        settings.put("experts", q.experts());
        settings.put("top_k", q.topK());
        settings.put("ratio", q.ratio());
        settings.put("recipe", recipe.toJson());
        claimOutput(out, settings);
        DiveConversion run = new DiveConversion(q, backend, out, modelDir, in.denseConfig(), in.tokenizerJson(), in.datasets(), readTimings(out));

        // ---- windows (deterministic: recomputed on every run)
        long t0 = System.nanoTime();
        run.windows = windows(in.corpus(), in.datasets(), Tokenizer.load(in.tokenizerJson()), recipe.calibrationWindows(), recipe.evalWindows(),
                recipe.finalEvalWindows(), recipe.seqlen(), recipe.seed());
        run.timings.putIfAbsent("windows", seconds(t0));

        // ---- every method through the same stages: the first (dive) in OUT, the others in OUT/<name>
        Map<String, MethodResult> results = new LinkedHashMap<>();
        for (Method m : methods) {
            boolean primary = m == methods.getFirst();
            results.put(m.name(), run.runMethod(m, primary ? out : out.resolve(m.name()), primary));
            writeTimings(out, run.timings);
        }

        // ---- report
        ConversionResult report = new ConversionResult(modelDir.toString(), data, in.datasets(), q.experts(), q.topK(), q.ratio(), in.expertWidth(),
                "perplexity on each dataset's final-evaluation windows (second half of its EVAL split), "
                        + recipe.finalEvalWindows() + " windows of " + recipe.seqlen() + " tokens at most",
                new ConversionResult.Dense(Evaluation.read(out.resolve("eval/dense.json")).ppl(), run.denseParams[0], run.denseParams[1]), results);
        AtomicFiles.writeString(out.resolve("report.json"), JSON.writeValueAsString(report.toJson()) + "\n");
        ConversionReport.write(out, report, q.command());
        return report;
    }

    /** what the checks found: the dense config, its tokenizer, the corpus, the run's datasets and the expert width */
    private record Inputs(LlamaConfig denseConfig, Path tokenizerJson, Corpus corpus, List<String> datasets, int expertWidth) {}

    /** every check before any work: the model, its tokenizer, the datasets, (E, k, r) and the recipe's lengths */
    private static Inputs check(Request q, Path modelDir) throws IOException {
        ConvertRecipe recipe = q.recipe();
        LlamaConfig dc = LlamaConfig.load(modelDir);
        if (dc.moe() != null || !dc.modelType().equals("llama"))
            throw new IllegalArgumentException(modelDir + ": convert needs a dense llama model, found model_type '" + dc.modelType() + "'");
        if (dc.mlpBias())
            throw new IllegalArgumentException(modelDir + ": config.json has mlp_bias: true; convert needs a bias-free Llama MLP "
                    + "(Mixtral experts have no gate/up/down biases), expected mlp_bias false");
        Path tokenizerJson = modelDir.resolve("tokenizer.json");
        if (!Files.isRegularFile(tokenizerJson)) throw new java.nio.file.NoSuchFileException(tokenizerJson + " (MODEL_DIR needs its tokenizer.json)");
        Corpus corpus = q.data().equals("bundled") ? Corpus.bundled() : Corpus.open(Path.of(q.data()));
        List<String> all = corpus.datasets().stream().map(Manifest.Entry::name).toList();
        List<String> names = recipe.datasets().isEmpty() ? all : recipe.datasets();
        for (String n : names) if (!all.contains(n)) throw new IllegalArgumentException("recipe datasets: '" + n + "' is not a dataset of " + corpus.location() + " " + all);
        int width = ExpertReconstruction.validate(q.experts(), q.topK(), q.ratio(), dc.intermediateSize(), names.size());
        for (ConvertRecipe.Stage s : List.of(recipe.stage0(), recipe.stage1(), recipe.stage2()))
            if (s.seqLen() > dc.maxPositionEmbeddings()) throw new IllegalArgumentException("recipe stage seq_len " + s.seqLen() + " exceeds the model's max_position_embeddings " + dc.maxPositionEmbeddings());
        if (recipe.seqlen() > dc.maxPositionEmbeddings()) throw new IllegalArgumentException("recipe seqlen " + recipe.seqlen() + " exceeds the model's max_position_embeddings " + dc.maxPositionEmbeddings());
        return new Inputs(dc, tokenizerJson, corpus, names, width);
    }

    private final Request q;
    private final Backend backend;
    private final ConvertRecipe recipe;
    private final Path out, modelDir, tokenizerJson;
    private final LlamaConfig denseConfig;
    private final List<String> names;
    private final Map<String, Double> timings;  // phase → seconds (timings.json)
    private List<DatasetWindows> windows;
    private DType exportDtype;  // of the dense checkpoint (known once the primary method loaded it) or the recipe's
    private long[] denseParams;  // total, active

    private DiveConversion(Request q, Backend backend, Path out, Path modelDir, LlamaConfig denseConfig, Path tokenizerJson, List<String> names,
                           Map<String, Double> timings) {
        this.q = q;
        this.backend = backend;
        this.recipe = q.recipe();
        this.out = out;
        this.modelDir = modelDir;
        this.denseConfig = denseConfig;
        this.tokenizerJson = tokenizerJson;
        this.names = names;
        this.timings = timings;
    }

    /**
     * One method's stages in {@code dir}, each skipped when its result is there: groups (groups.json) → build → (primary:
     * the dense model's evaluation) → evaluation before retraining (eval/before.json) → stages 0, 1, 2 → export (model/) →
     * evaluation after retraining (eval/after.json). The primary method's phases in timings.json have no prefix (its
     * build is "reconstruction"), the others' are prefixed with the method's name.
     */
    private MethodResult runMethod(Method m, Path dir, boolean primary) throws Exception {
        Method.Context c = new Method.Context(q, modelDir, denseConfig, tokenizerJson, names, windows, dir, backend);
        ConvertRecipe own = m.ownConversion(recipe);
        if (own != null) {
            ConversionResult nested = run(new Request(modelDir, q.data(), q.experts(), q.topK(), q.ratio(), own, dir, q.progress(), null, q.load()), backend);
            return nested.methods().get(own.methods().getFirst()).withVariant(m.variant(c));
        }
        String prefix = primary ? "" : m.name() + "_", label = primary ? "eval" : m.name();
        Files.createDirectories(dir);
        Path build = dir.resolve(m.buildFolder());
        String grouping = m.grouping(recipe);
        Groups groups = null;
        try (LlamaModel dense = LlamaModel.load(modelDir, backend, q.load())) {
            if (exportDtype == null) exportDtype = recipe.exportDtype(dense.namedWeights().get("model.embed_tokens.weight").dtype());
            // ---- groups
            if (grouping != null) {
                // a method beside the primary with the primary's grouping takes its groups (the same windows and seed
                // give the same groups: affinity mining runs once per conversion)
                Path primaryGroups = out.resolve(Groups.FILE);
                if (!primary && grouping.equals(Groups.grouping(primaryGroups)) && !Files.exists(dir.resolve(Groups.FILE)))
                    AtomicFiles.writeString(dir.resolve(Groups.FILE), Files.readString(primaryGroups));
                boolean made = !Files.isRegularFile(dir.resolve(Groups.FILE));
                long t = System.nanoTime();
                groups = Groups.readOrMake(dir, grouping, dense, windows, q, names);
                if (made) timings.put(prefix + "grouping", seconds(t));
            }
            // ---- build
            if (!Method.isBuilt(build)) {
                long t = System.nanoTime();
                dive.util.MemoryPlan.enterStage(m.name() + " build");
                m.build(new Method.BuildContext(c, dense, groups, build));
                timings.put(prefix + (primary ? "reconstruction" : "build"), seconds(t));
                writeTimings(out, timings);
            }
            m.checkBuilt(build, c);
            // ---- the dense reference
            if (primary) {
                evaluateOnce(dense, windows, out.resolve("eval/dense.json"), "eval dense", q.progress(), timings, "eval_dense");
                denseParams = ExpertReconstruction.parameterCounts(dense);
            }
        }
        // ---- training-free evaluation (skipped once written: a finished method's build may hold no weights any more)
        if (!Files.isRegularFile(dir.resolve("eval/before.json")))
            try (LlamaModel before = LlamaModel.load(build, backend)) {
                evaluateOnce(before, windows, dir.resolve("eval/before.json"), label + " before", q.progress(), timings, prefix + "eval_before");
            }
        writeTimings(out, timings);
        // ---- retraining
        Trained trained = retrain(m.family(), build, dir, prefix);
        // ---- export
        Path export = dir.resolve("model");
        if (!Files.isDirectory(export)) {
            long t = System.nanoTime();
            m.export(trained.checkpoint(), export, c, exportDtype);
            timings.put(prefix + "export", seconds(t));
        }
        // ---- evaluation
        long[] params;
        try (LlamaModel after = LlamaModel.load(export, backend)) {
            evaluateOnce(after, windows, dir.resolve("eval/after.json"), label + " after", q.progress(), timings, prefix + "eval_after");
            params = ExpertReconstruction.parameterCounts(after);
        }
        // ---- report entry
        Evaluation before = Evaluation.read(dir.resolve("eval/before.json")), after = Evaluation.read(dir.resolve("eval/after.json"));
        MethodResult.Grouping g = groups == null ? null : new MethodResult.Grouping(grouping, groups.names(q.experts()), recipe.biasCompensation(),
                recipe.outputScale() ? "least squares against the dense FFN on each expert's windows, per expert and layer: " + OutputScale.FILE : null);
        MethodResult result = new MethodResult(g, m.variant(c), before.ppl(), after.ppl(), params[0], params[1], trained.tokens(),
                g == null ? null : before.routingShare(), after.routingShare(), export, m.exportFormat(c),
                after.routingShare() == null ? null : ConversionReport.trainingExpertLoad(dir));
        if (!recipe.keepIntermediate()) removeIntermediateWeights(dir, build);
        return result;
    }

    /** written where a finished method's intermediate weights were removed */
    static final String WEIGHTS_REMOVED_FILE = "WEIGHTS-REMOVED.txt";

    /**
     * A finished method (its export and both evaluations written) needs its intermediate models no more: removes the
     * weights (model*.safetensors and their index) of its build and of each stage's final model, keeping their
     * config.json (what a rerun checks), logs and markers, and says so in {@value #WEIGHTS_REMOVED_FILE}. At 1.1B each
     * is a full model copy (3.5 GB in BF16), three of every method's four. Recipe keep_intermediate: true keeps them.
     */
    static void removeIntermediateWeights(Path dir, Path build) throws IOException {
        List<Path> folders = new ArrayList<>(List.of(build));
        for (int s = 0; s < 3; s++) folders.add(dir.resolve("stage" + s).resolve(Trainer.FINAL_DIR));
        for (Path f : folders) {
            if (!Files.isDirectory(f)) continue;
            List<Path> weights;
            try (Stream<Path> files = Files.list(f)) {
                weights = files.filter(p -> {
                    String n = p.getFileName().toString();
                    return n.startsWith("model") && (n.endsWith(".safetensors") || n.endsWith(".safetensors.index.json"));
                }).toList();
            }
            if (weights.isEmpty()) continue;
            AtomicFiles.writeString(f.resolve(WEIGHTS_REMOVED_FILE), "The weights of this intermediate model were removed once the method's "
                    + "export (model/) and its evaluations were written; convert with the recipe key keep_intermediate: true to keep them.\n");
            for (Path w : weights) Files.delete(w);
        }
    }

    /** an empty or new folder gets the settings; a folder of an earlier run must have the same settings; anything else is refused */
    static void claimOutput(Path out, Map<String, Object> settings) throws IOException {
        String text = JSON.writeValueAsString(settings) + "\n";
        Path file = out.resolve(SETTINGS_FILE);
        if (Files.isRegularFile(file)) {
            JsonNode old = JSON.readTree(file.toFile()), now = JSON.readTree(text);
            if (!old.equals(now)) {
                List<String> differ = new ArrayList<>();
                now.fieldNames().forEachRemaining(k -> { if (!now.get(k).equals(old.get(k))) differ.add(k); });
                throw new IllegalArgumentException(out + " holds a conversion with other settings (" + String.join(", ", differ)
                        + " differ from " + file + "): choose another output folder or rerun with the same settings to resume");
            }
            return;
        }
        if (Files.exists(out)) {
            if (!Files.isDirectory(out)) throw new IllegalArgumentException("--out " + out + " is a file (expected a new or empty folder)");
            try (Stream<Path> s = Files.list(out)) {
                if (s.findAny().isPresent())
                    throw new IllegalArgumentException("--out " + out + " holds something else (no " + SETTINGS_FILE + "): choose a new or empty folder; nothing was overwritten");
            }
        }
        Files.createDirectories(out);
        AtomicFiles.writeString(file, text);
    }

    /** the last retraining stage's checkpoint (the build when every stage is skipped) and the tokens of all stages */
    private record Trained(Path checkpoint, long tokens) {}

    /** the retraining stages of {@code family} from the build {@code from}, in {@code dir}/stage0 … stage2 */
    private Trained retrain(Method.Family family, Path from, Path dir, String phasePrefix) throws IOException {
        Path previous = from;
        long tokens = 0;
        List<ConvertRecipe.Stage> stages = family.stages(recipe);
        for (int s = 0; s < 3; s++) {
            ConvertRecipe.Stage stage = stages.get(s);
            if (stage == null || stage.tokens() == 0) continue;
            Path stageDir = dir.resolve("stage" + s);
            tokens += runStage(s, stage, previous, stageDir, family == Method.Family.DENSE, phasePrefix);
            previous = stageDir.resolve(Trainer.FINAL_DIR);
            writeTimings(out, timings);
        }
        return new Trained(previous, tokens);
    }

    /**
     * one retraining stage: skipped when its done marker exists, resumed from its latest checkpoint, else started; returns
     * its tokens. {@code dense}: a Llama model (flap, llm_pruner) gets LoRA on gate/up/down and trains every RMSNorm;
     * {@code phasePrefix} names the method in timings.json ("" for DIVE, "flap_" …)
     */
    private long runStage(int s, ConvertRecipe.Stage stage, Path from, Path dir, boolean dense, String phasePrefix) throws IOException {
        Path done = dir.resolve(DONE_FILE);
        if (Files.isRegularFile(done)) return JSON.readTree(done.toFile()).path("tokens").asLong();
        long start = System.nanoTime();
        long tokensPerStep = (long) stage.batchSize() * stage.seqLen();
        long steps = (stage.tokens() + tokensPerStep - 1) / tokensPerStep;
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("model", Map.of("checkpoint", from.toString()));
        r.put("tokenizer", tokenizerJson.toString());
        r.put("data", Map.of("corpus", q.data().equals("bundled") ? "bundled" : Path.of(q.data()).toAbsolutePath().normalize().toString(),
                "datasets", names, "eval_windows", recipe.trainEvalWindows()));
        Map<String, Object> schedule = new LinkedHashMap<>();
        boolean cosine = s == 1;  // stage 0 and 2: constant (the paper)
        schedule.put("kind", cosine ? "cosine" : "constant");
        schedule.put("lr", stage.lr());
        schedule.put("warmup", Math.round(stage.warmup() * steps));
        schedule.put("min_lr", cosine ? 0.0 : stage.lr());
        r.put("schedule", schedule);
        r.put("optimizer", Map.of("weight_decay", 0.0));
        r.put("batch_size", stage.batchSize());
        r.put("seq_len", stage.seqLen());
        r.put("max_steps", steps);
        int evals = recipe.trainEvals();  // at most that many evals after step 0, the last at the end
        r.put("eval_every", recipe.trainEvalWindows() > 0 ? Math.max(1, (steps + evals - 1) / evals) : 0);
        r.put("checkpoint_every", recipe.checkpointEvery());
        r.put("keep_checkpoints", 1);
        r.put("seed", recipe.seed() + s);
        Map<String, Object> moe = new LinkedHashMap<>();
        if (dense) {
            r.put("train", List.of("*.lora_*", "*norm.weight"));
            r.put("lora", Map.of("r", stage.loraR(), "alpha", stage.loraAlpha(), "dropout", stage.loraDropout(),
                    "targets", List.of("down_proj", "gate_proj", "up_proj")));
        } else if (s == 0) {
            r.put("train", TrainableLlama.stage0Train(LlamaConfig.load(from)));
            moe.put("routing", "soft");
            if (!Double.isNaN(stage.temperature())) moe.put("temperature", stage.temperature());
        } else {
            LlamaConfig built = LlamaConfig.load(from);  // the trained parameters' names follow the built architecture
            r.put("train", TrainableLlama.stage1Train(built));
            r.put("lora", Map.of("r", stage.loraR(), "alpha", stage.loraAlpha(), "dropout", stage.loraDropout(),
                    "targets", List.copyOf(new java.util.TreeSet<>(TrainableLlama.stage1LoraTargets(built)))));
            moe.put("routing", "top_k");
        }
        moe.put("aux_loss_coef", recipe.auxLossCoef());
        if (!dense) r.put("moe", moe);
        r.put("output", "keep");  // frozen weights in the checkpoint's dtype, trained ones F32; the export casts
        Files.createDirectories(dir);
        Path recipeFile = dir.resolve("recipe.json");
        AtomicFiles.writeString(recipeFile, JSON.writeValueAsString(r) + "\n");
        Recipe parsed = Recipe.load(recipeFile);
        boolean resume = TrainState.latest(dir) != null;
        if (resume) LOG.info("stage " + s + ": resuming " + dir);
        Trainer.Result result;
        try (TrainingRun run = TrainingRun.prepare(parsed, dir, resume, q.progress(), backend)) {  // its memory freed at once after
            result = run.run();
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(dir + ": " + e.getMessage(), e);
        }
        Map<String, Object> marker = new LinkedHashMap<>();
        marker.put("stage", s);
        marker.put("steps", result.steps());
        marker.put("tokens", result.tokensSeen());
        marker.put("last_loss", result.lastLoss());
        AtomicFiles.writeString(done, JSON.writeValueAsString(marker) + "\n");
        String phase = phasePrefix + "stage" + s;
        timings.put(phase, seconds(start));  // this run's part of the stage (a resumed stage: since the restart)
        return result.tokensSeen();
    }

    /** evaluates {@code model} on every dataset's final-evaluation windows unless {@code file} exists already */
    static void evaluateOnce(LlamaModel model, List<DatasetWindows> windows, Path file, String label, boolean progress,
                             Map<String, Double> timings, String phase) throws IOException {
        if (Files.isRegularFile(file)) return;
        long start = System.nanoTime();
        List<List<int[]>> groups = windows.stream().map(DatasetWindows::finalEval).toList();
        HeldOutEvaluation.Result r;
        try (Progress bar = new Progress(label, groups.stream().mapToLong(List::size).sum(), "windows", progress)) {
            r = HeldOutEvaluation.run(model, groups, bar::step);
        }
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("model", model.source());
        Map<String, Double> ppl = new LinkedHashMap<>();
        Map<String, double[]> share = new LinkedHashMap<>();
        for (int i = 0; i < windows.size(); i++) {
            ppl.put(windows.get(i).dataset(), r.perplexity()[i]);
            if (r.routingShare() != null) share.put(windows.get(i).dataset(), r.routingShare()[i]);
        }
        json.put("ppl", ppl);
        json.put("routing_share", r.routingShare() == null ? null : share);
        Files.createDirectories(file.getParent());
        AtomicFiles.writeString(file, JSON.writeValueAsString(json) + "\n");
        timings.put(phase, seconds(start));
    }

    static Map<String, Double> readTimings(Path out) throws IOException {
        Path file = out.resolve("timings.json");
        Map<String, Double> timings = new LinkedHashMap<>();
        if (Files.isRegularFile(file)) JSON.readTree(file.toFile()).properties().forEach(e -> timings.put(e.getKey(), e.getValue().asDouble()));
        return timings;
    }

    static void writeTimings(Path out, Map<String, Double> timings) throws IOException {
        AtomicFiles.writeString(out.resolve("timings.json"), JSON.writeValueAsString(timings) + "\n");
    }

    private static double seconds(long startNanos) { return Math.round((System.nanoTime() - startNanos) / 1e7) / 100.0; }
}
