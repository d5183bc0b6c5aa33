package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dive.backend.Backend;
import dive.data.Corpus;
import dive.data.Manifest;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.MixtralExport;
import dive.tensor.DType;
import dive.tensor.TensorArena;
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
 * The whole DIVE pipeline ({@code ./dive convert}): dense Llama → windows → groups (affinity mining, random or a file)
 * → experts (reconstruction) → retraining stages 0, 1 (and 2) → Mixtral export → evaluation and report.
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

    private DiveConversion() {}

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

    /** the report's numbers for one method */
    public record MethodResult(Map<String, Double> pplBefore, Map<String, Double> pplAfter, long paramsTotal, long paramsActive,
                               long trainingTokens, Path export) {}

    /** runs (or resumes) the conversion {@code q}, every model on {@code backend}; returns the report (report.json) */
    public static Map<String, Object> run(Request q, Backend backend) throws Exception {
        ConvertRecipe recipe = q.recipe();
        Path out = q.outDir().toAbsolutePath().normalize();
        Path modelDir = q.modelDir().toAbsolutePath().normalize();
        // ---- every check before any work
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
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("model", modelDir.toString());
        settings.put("data", q.data().equals("bundled") ? "bundled" : Path.of(q.data()).toAbsolutePath().normalize().toString());
        settings.put("experts", q.experts());
        settings.put("top_k", q.topK());
        settings.put("ratio", q.ratio());
        settings.put("recipe", recipe.toJson());
        claimOutput(out, settings);
        Map<String, Double> timings = readTimings(out);
        Tokenizer tokenizer = Tokenizer.load(tokenizerJson);

        Path expertsDir = out.resolve("experts");
        List<DatasetWindows> windows;
        int[] groups;
        DType exportDtype;
        try (LlamaModel dense = LlamaModel.load(modelDir, backend, q.load())) {
            exportDtype = recipe.exportDtype(dense.namedWeights().get("model.embed_tokens.weight").dtype());
            // ---- windows (deterministic: recomputed on every run)
            long t0 = System.nanoTime();
            windows = windows(corpus, names, tokenizer, recipe.calibrationWindows(), recipe.evalWindows(), recipe.finalEvalWindows(),
                    recipe.seqlen(), recipe.seed());
            timings.putIfAbsent("windows", seconds(t0));

            // ---- groups
            List<CalibrationStatistics> perDataset = null;
            Path groupsFile = out.resolve("groups.json");
            if (Files.isRegularFile(groupsFile)) {
                groups = readGroups(groupsFile, names, q.experts());
            } else {
                long t1 = System.nanoTime();
                groups = switch (recipe.grouping()) {
                    case "random" -> ExpertReconstruction.randomGroups(names.size(), q.experts(), recipe.seed());
                    case "file" -> readGroups(recipe.groupsFile(), names, q.experts());
                    default -> {
                        AffinityMining.Options options = new AffinityMining.Options(names, q.ratio(), recipe.score(), recipe.calibrationWindows(),
                                recipe.evalWindows(), recipe.seqlen(), recipe.seed(), recipe.linkage(), q.experts(), recipe.biasCompensation());
                        AffinityMining.AffinityResult r;
                        try (Progress bar = new Progress("affinity", AffinityMining.progressUnits(names.size(), options), "windows", q.progress())) {
                            r = AffinityMining.run(dense, windows, options, out.resolve("affinity"), bar);
                        }
                        perDataset = r.statistics();
                        yield r.groups();
                    }
                };
                writeGroups(groupsFile, recipe.grouping(), names, groups, q.experts());
                timings.put("grouping", seconds(t1));
            }

            // ---- experts
            if (!Files.isDirectory(expertsDir)) {
                long t2 = System.nanoTime();
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
                        scores.add(options.score() != null ? options.score()
                                : TaylorScore.compute(dense, expertWindows.get(g)));
                        bar.step(1);
                    }
                }
                try (TensorArena arena = TensorArena.shared()) {  // the experts, freed once written
                    ExpertReconstruction.Result built = ExpertReconstruction.reconstruct(dense, groupStats, scores, options, arena);
                    if (recipe.outputScale()) {
                        double[][] scales = new double[q.experts()][];
                        built = OutputScale.apply(dense, built, expertWindows, scales);
                        OutputScale.write(out, scales);
                    }
                    MixtralExport.write(expertsDir, built.config(), built.weights(),
                            MixtralExport.Options.defaults().withTokenizerFrom(modelDir).withExpertBias(true));
                }
                timings.put("reconstruction", seconds(t2));
                writeTimings(out, timings);
            }
            // ---- the dense reference
            evaluateOnce(dense, windows, out.resolve("eval/dense.json"), "eval dense", q.progress(), timings, "eval_dense");
        }
        try (LlamaModel before = LlamaModel.load(expertsDir, backend)) {
            evaluateOnce(before, windows, out.resolve("eval/before.json"), "eval before", q.progress(), timings, "eval_before");
        }
        writeTimings(out, timings);

        // ---- retraining
        Path previous = expertsDir;
        long trainingTokens = 0;
        List<ConvertRecipe.Stage> stages = List.of(recipe.stage0(), recipe.stage1(), recipe.stage2());
        for (int s = 0; s < 3; s++) {
            ConvertRecipe.Stage stage = stages.get(s);
            if (stage.tokens() == 0) continue;
            Path dir = out.resolve("stage" + s);
            trainingTokens += runStage(s, stage, q, recipe, previous, tokenizerJson, names, dir, timings, backend);
            previous = dir.resolve(Trainer.FINAL_DIR);
            writeTimings(out, timings);
        }

        // ---- export
        Path export = out.resolve("model");
        if (!Files.isDirectory(export)) {
            long t = System.nanoTime();
            try (LlamaModel last = LlamaModel.load(previous, backend)) {
                MixtralExport.write(export, last, MixtralExport.Options.defaults().withTokenizerFrom(modelDir).withExpertBias(true)
                        .withDtype(exportDtype));
            }
            timings.put("export", seconds(t));
        }
        JsonNode denseEval, beforeEval, afterEval;
        long[] denseParams, moeParams;
        try (LlamaModel after = LlamaModel.load(export, backend)) {
            evaluateOnce(after, windows, out.resolve("eval/after.json"), "eval after", q.progress(), timings, "eval_after");
            moeParams = ExpertReconstruction.parameterCounts(after);
        }
        try (LlamaModel dense = LlamaModel.load(modelDir, backend, q.load())) { denseParams = ExpertReconstruction.parameterCounts(dense); }
        writeTimings(out, timings);
        denseEval = JSON.readTree(out.resolve("eval/dense.json").toFile());
        beforeEval = JSON.readTree(out.resolve("eval/before.json").toFile());
        afterEval = JSON.readTree(out.resolve("eval/after.json").toFile());

        // ---- report
        Map<String, Object> report = new LinkedHashMap<>();
        report.put("model", modelDir.toString());
        report.put("data", settings.get("data"));
        report.put("datasets", names);
        report.put("experts", q.experts());
        report.put("top_k", q.topK());
        report.put("ratio", q.ratio());
        report.put("expert_width", width);
        report.put("evaluation", "perplexity on each dataset's final-evaluation windows (second half of its EVAL split), "
                + recipe.finalEvalWindows() + " windows of " + recipe.seqlen() + " tokens at most");
        Map<String, Object> denseEntry = new LinkedHashMap<>();
        denseEntry.put("ppl", JSON.convertValue(denseEval.get("ppl"), Map.class));
        denseEntry.put("params_total", denseParams[0]);
        denseEntry.put("params_active", denseParams[1]);
        report.put("dense", denseEntry);
        Map<String, Object> dive = new LinkedHashMap<>();
        dive.put("grouping", recipe.grouping());
        dive.put("groups", groupNames(names, groups, q.experts()));
        dive.put("bias_compensation", recipe.biasCompensation());
        if (recipe.outputScale()) dive.put("output_scale", "least squares against the dense FFN on each expert's windows, per expert and layer: " + OutputScale.FILE);
        dive.put("ppl_before_retraining", JSON.convertValue(beforeEval.get("ppl"), Map.class));
        dive.put("ppl_after_retraining", JSON.convertValue(afterEval.get("ppl"), Map.class));
        dive.put("params_total", moeParams[0]);
        dive.put("params_active", moeParams[1]);
        dive.put("training_tokens", trainingTokens);
        dive.put("routing_share_before_retraining", JSON.convertValue(beforeEval.get("routing_share"), Map.class));
        dive.put("routing_share", JSON.convertValue(afterEval.get("routing_share"), Map.class));
        dive.put("export", export.toString());
        dive.put("export_format", recipe.biasCompensation() ? "mixtral with dive_expert_bias (this engine's extension) unless all biases are zero" : "stock Mixtral");
        Map<String, Object> methods = new LinkedHashMap<>();
        methods.put("dive", dive);
        for (String m : recipe.methods()) {
            if (m.equals("dive")) continue;
            methods.put(m, BaselineConversion.run(m, q, modelDir, tokenizerJson, names, windows, out.resolve(m), backend, timings, exportDtype));
            writeTimings(out, timings);
        }
        // every model's geometric-mean perplexity; the MoE methods' expert load while training (last eval of each stage)
        denseEntry.put("ppl_geomean", ConversionReport.geomean(denseEval.get("ppl")));
        for (Map.Entry<String, Object> m : methods.entrySet()) {
            @SuppressWarnings("unchecked") Map<String, Object> entry = (Map<String, Object>) m.getValue();
            entry.put("ppl_geomean", ConversionReport.geomean(JSON.valueToTree(entry.get("ppl_after_retraining"))));
            if (entry.get("routing_share") != null)
                entry.put("expert_load_during_training", ConversionReport.trainingExpertLoad(ConversionReport.methodDir(out, m.getKey())));
        }
        report.put("methods", methods);
        AtomicFiles.writeString(out.resolve("report.json"), JSON.writeValueAsString(report) + "\n");
        ConversionReport.write(out, report, q.command());
        return report;
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

    /** one stage: skipped when its done marker exists, resumed from its latest checkpoint, else started; returns its tokens */
    static long runStage(int s, ConvertRecipe.Stage stage, Request q, ConvertRecipe recipe, Path from, Path tokenizerJson,
                         List<String> names, Path dir, Map<String, Double> timings, Backend backend) throws IOException {
        return runStage(s, stage, q, recipe, from, tokenizerJson, names, dir, timings, backend, false, "");
    }

    /**
     * as above; {@code dense}: a Llama model (flap, llm_pruner) gets LoRA on gate/up/down and trains every RMSNorm;
     * {@code phasePrefix} names the method in timings.json ("" for DIVE, "flap_" …)
     */
    static long runStage(int s, ConvertRecipe.Stage stage, Request q, ConvertRecipe recipe, Path from, Path tokenizerJson,
                         List<String> names, Path dir, Map<String, Double> timings, Backend backend, boolean dense,
                         String phasePrefix) throws IOException {
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
            r.put("train", TrainableLlama.STAGE0_TRAIN);
            moe.put("routing", "soft");
            if (!Double.isNaN(stage.temperature())) moe.put("temperature", stage.temperature());
        } else {
            r.put("train", TrainableLlama.STAGE1_TRAIN);
            r.put("lora", Map.of("r", stage.loraR(), "alpha", stage.loraAlpha(), "dropout", stage.loraDropout(),
                    "targets", List.copyOf(new java.util.TreeSet<>(TrainableLlama.STAGE1_LORA_TARGETS))));
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

    /** a groups file: {"groups": [["dataset", ...], ...]} (affinity.json and groups.json have this key) */
    static int[] readGroups(Path file, List<String> names, int experts) throws IOException {
        JsonNode root;
        try { root = JSON.readTree(file.toFile()); }
        catch (com.fasterxml.jackson.core.JacksonException e) { throw new IllegalArgumentException(file + ": not valid JSON: " + e.getOriginalMessage()); }
        JsonNode list = root == null ? null : root.get("groups");
        if (list == null || !list.isArray()) throw new IllegalArgumentException(file + ": groups: expected a list of lists of dataset names");
        if (list.size() != experts) throw new IllegalArgumentException(file + ": groups: " + list.size() + " groups for --experts " + experts);
        int[] groups = new int[names.size()];
        java.util.Arrays.fill(groups, -1);
        for (int g = 0; g < list.size(); g++) {
            if (!list.get(g).isArray() || list.get(g).isEmpty()) throw new IllegalArgumentException(file + ": groups[" + g + "]: expected a non-empty list of dataset names");
            for (JsonNode n : list.get(g)) {
                int i = names.indexOf(n.asText());
                if (i < 0) throw new IllegalArgumentException(file + ": groups[" + g + "]: '" + n.asText() + "' is not one of the run's datasets " + names);
                if (groups[i] >= 0) throw new IllegalArgumentException(file + ": dataset '" + n.asText() + "' is in groups " + groups[i] + " and " + g);
                groups[i] = g;
            }
        }
        for (int i = 0; i < groups.length; i++)
            if (groups[i] < 0) throw new IllegalArgumentException(file + ": dataset '" + names.get(i) + "' is in no group");
        return groups;
    }

    static void writeGroups(Path file, String grouping, List<String> names, int[] groups, int experts) throws IOException {
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("grouping", grouping);
        json.put("datasets", names);
        json.put("groups", groupNames(names, groups, experts));
        json.put("group_of_dataset", groups);
        AtomicFiles.writeString(file, JSON.writeValueAsString(json) + "\n");
    }

    static List<List<String>> groupNames(List<String> names, int[] groups, int experts) {
        List<List<String>> out = new ArrayList<>();
        for (int g = 0; g < experts; g++) out.add(new ArrayList<>());
        for (int i = 0; i < groups.length; i++) out.get(groups[i]).add(names.get(i));
        return out;
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
