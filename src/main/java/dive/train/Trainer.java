package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.report.Plot;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.logging.Logger;

/**
 * The training loop. One optimizer step = {@code gradAccum} micro-batches of (B, T + 1) tokens, each adding
 * (1/gradAccum)·∂loss/∂p into the gradients; then the global gradient norm is clipped, the learning rate read
 * from the schedule and AdamW applied. Every {@code evalEvery} steps the fixed eval windows of each dataset are
 * scored; every {@code checkpointEvery} steps (and at the end) a checkpoint is written ({@link TrainState}).
 * <p>Run folder: {@code train-log.jsonl} (one JSON object per step: step, tokens, lr, loss, grad_norm,
 * tokens_per_second, and eval = {dataset: {loss, ppl, expert_load}} on eval steps; expert_load, for an MoE model: each
 * expert's share of the dataset's top-k assignments, all MoE layers pooled), {@code loss.png} (train and eval loss
 * against tokens, rewritten at each eval and checkpoint), {@code checkpoints/}, and {@code final/} (the export).
 * <p>Resuming from a checkpoint restores parameters, moments, step count and data-loader state, so a resumed run
 * computes exactly the same bytes as one that never stopped (given a deterministic model).
 */
public final class Trainer {
    private static final Logger LOG = Logger.getLogger(Trainer.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();
    public static final String LOG_FILE = "train-log.jsonl", PLOT_FILE = "loss.png", FINAL_DIR = "final";

    public record Settings(int gradAccum, long maxSteps, int evalEvery, int checkpointEvery, int keepCheckpoints,
                           double clipNorm, LrSchedule schedule, AdamW.Options optimizer, String recipeSha256, boolean progress) {
        public Settings {
            if (gradAccum < 1) throw new IllegalArgumentException("grad_accum = " + gradAccum + ": expected ≥ 1");
            if (maxSteps < 1) throw new IllegalArgumentException("max_steps = " + maxSteps + ": expected ≥ 1");
            if (evalEvery < 0) throw new IllegalArgumentException("eval_every = " + evalEvery + ": expected ≥ 0 (0 = only at the end)");
            if (checkpointEvery < 0) throw new IllegalArgumentException("checkpoint_every = " + checkpointEvery + ": expected ≥ 0 (0 = only at the end)");
            if (!(clipNorm >= 0)) throw new IllegalArgumentException("optimizer.clip = " + clipNorm + ": expected ≥ 0 (0 = no clipping)");
        }
    }

    /** writes the trained model into an (empty, existing) folder */
    public interface Export { void save(Path dir) throws IOException; }

    public record Result(long steps, long tokensSeen, double lastLoss, Map<String, Double> evalLoss, Path finalDir) {}

    private final TrainableModel model;
    private final List<Parameter> parameters;
    private final DataLoader loader;
    private final List<EvalSet> evalSets;
    private final Path runDir;
    private final Settings settings;
    private final AdamW optimizer;
    private long step, tokensSeen;
    private final List<double[]> trainCurve = new ArrayList<>();              // {tokens, loss}
    private final Map<String, List<double[]>> evalCurves = new LinkedHashMap<>(); // dataset → {tokens, loss}
    private final Map<String, double[]> lastExpertShare = new LinkedHashMap<>();    // MoE: dataset → share of top-k assignments per expert (last eval)

    public Trainer(TrainableModel model, DataLoader loader, List<EvalSet> evalSets, Path runDir, Settings settings) throws IOException {
        this.model = model;
        this.parameters = model.parameters();
        this.loader = loader;
        this.evalSets = List.copyOf(evalSets);
        this.runDir = runDir;
        this.settings = settings;
        this.optimizer = new AdamW(settings.optimizer(), model.backend());
        Files.createDirectories(runDir);
    }

    public long step() { return step; }
    public AdamW optimizer() { return optimizer; }

    /**
     * Restores the run's latest checkpoint (checked in full before anything changes): returns its step.
     * Fails when there is none, when it was written for another recipe, or when it does not fit the model.
     */
    public long resume() throws IOException {
        Path dir = TrainState.latest(runDir);
        if (dir == null) throw new IOException(runDir + ": no checkpoint to resume from (" + TrainState.DIR + "/" + TrainState.LATEST + " is missing)");
        TrainState.Info info = TrainState.readInfo(dir);
        if (!info.recipeSha256().equals(settings.recipeSha256())) {
            throw new IOException(dir + ": written for another recipe (sha256 " + info.recipeSha256() + ", this recipe " + settings.recipeSha256() + ")");
        }
        if (info.step() > settings.maxSteps()) throw new IOException(dir + ": step " + info.step() + " is past max_steps " + settings.maxSteps());
        TrainState.restore(dir, info, parameters, optimizer);
        loader.restore(info.loader());
        step = info.step();
        tokensSeen = info.tokensSeen();
        model.restoreTrainingCalls(step * settings.gradAccum());
        reloadLog();
        LOG.info("resumed from " + dir + " at step " + step);
        return step;
    }

    /** trains up to max_steps, then writes the final checkpoint and exports the model into RUN_DIR/final */
    public Result run(Export export) throws IOException {
        if (step == 0) {
            Files.deleteIfExists(runDir.resolve(LOG_FILE));
            if (!evalSets.isEmpty() && settings.evalEvery() > 0) appendLog(logLine(Double.NaN, Double.NaN, Double.NaN, 0, evaluate()));
        }
        long tokensPerStep = (long) settings.gradAccum() * loader.batchSize() * loader.seqLen();
        double lastLoss = Double.NaN;
        Map<String, Double> lastEval = Map.of();
        try (Progress progress = new Progress("train", settings.maxSteps() - step, "steps", settings.progress())) {
            while (step < settings.maxSteps()) {
                long start = System.nanoTime();
                Gradients.zero(parameters);
                double loss = 0;
                for (int micro = 0; micro < settings.gradAccum(); micro++) {
                    double microLoss = model.lossAndGradients(loader.nextBatch(), 1f / settings.gradAccum());
                    if (!Double.isFinite(microLoss)) {
                        throw diverged("loss is " + microLoss + " (micro-batch " + (micro + 1) + " of " + settings.gradAccum() + ")");
                    }
                    loss += microLoss / settings.gradAccum();
                }
                String bad = Gradients.firstNonFinite(parameters, model.backend());
                if (bad != null) throw diverged("the gradient of parameter '" + bad + "' is NaN or infinite");
                double gradNorm = Gradients.clipByGlobalNorm(parameters, settings.clipNorm(), model.backend());
                double lr = settings.schedule().at(step);
                optimizer.step(parameters, lr);
                step++;
                tokensSeen += tokensPerStep;
                lastLoss = loss;
                double tokensPerSecond = tokensPerStep / Math.max(1e-9, (System.nanoTime() - start) / 1e9);

                boolean last = step == settings.maxSteps();
                boolean evalNow = !evalSets.isEmpty() && (last || (settings.evalEvery() > 0 && step % settings.evalEvery() == 0));
                Map<String, Double> eval = evalNow ? evaluate() : Map.of();
                if (evalNow) lastEval = eval;
                appendLog(logLine(lr, loss, gradNorm, tokensPerSecond, eval));
                trainCurve.add(new double[] {tokensSeen, loss});
                boolean checkpointNow = last || (settings.checkpointEvery() > 0 && step % settings.checkpointEvery() == 0);
                if (checkpointNow) {
                    TrainState.save(runDir, parameters, optimizer,
                            new TrainState.Info(step, tokensSeen, optimizer.stepCount(), loader.state(), settings.recipeSha256()),
                            settings.keepCheckpoints());
                }
                if (evalNow || checkpointNow) writePlot();
                progress.setStatus(String.format(Locale.ROOT, "loss %.4f  lr %.2e  %.0f tokens/s", loss, lr, tokensPerSecond));
                progress.step(1);
            }
        }
        Path finalDir = runDir.resolve(FINAL_DIR);
        Path temp = runDir.resolve("." + FINAL_DIR + ".tmp"), old = runDir.resolve("." + FINAL_DIR + ".old");
        TrainState.deleteTree(temp);
        Files.createDirectories(temp);
        export.save(temp);
        TrainState.deleteTree(old);
        if (Files.exists(finalDir)) Files.move(finalDir, old, StandardCopyOption.ATOMIC_MOVE);
        Files.move(temp, finalDir, StandardCopyOption.ATOMIC_MOVE);
        TrainState.deleteTree(old);
        return new Result(step, tokensSeen, lastLoss, lastEval, finalDir);
    }

    private TrainingDivergedException diverged(String what) throws IOException {
        Path last = TrainState.latest(runDir);
        return new TrainingDivergedException("step " + (step + 1) + ": " + what + "; training stopped, "
                + (last == null ? "no checkpoint was written yet" : "the last good checkpoint " + last + " is left as it was"));
    }

    /** mean eval loss per dataset, in the order of the eval sets */
    public Map<String, Double> evaluate() {
        Map<String, Double> out = new LinkedHashMap<>();
        lastExpertShare.clear();
        for (EvalSet set : evalSets) {
            EvalSet.Result r = set.evaluate(model);
            double loss = r.loss();
            if (r.expertShare() != null) lastExpertShare.put(set.dataset(), r.expertShare());
            out.put(set.dataset(), loss);
            evalCurves.computeIfAbsent(set.dataset(), k -> new ArrayList<>()).add(new double[] {tokensSeen, loss});
        }
        return out;
    }

    private ObjectNode logLine(double lr, double loss, double gradNorm, double tokensPerSecond, Map<String, Double> eval) {
        ObjectNode line = JSON.createObjectNode();
        line.put("step", step);
        line.put("tokens", tokensSeen);
        if (step > 0) {
            line.put("lr", lr);
            line.put("loss", loss);
            line.put("grad_norm", gradNorm);
            line.put("tokens_per_second", Math.round(tokensPerSecond * 10) / 10.0);
        }
        if (!eval.isEmpty()) {
            ObjectNode e = line.putObject("eval");
            eval.forEach((name, l) -> {
                ObjectNode d = e.putObject(name).put("loss", l).put("ppl", Math.exp(l));
                double[] share = lastExpertShare.get(name);
                if (share != null) for (double v : share) d.withArray("expert_load").add(Math.round(v * 1e6) / 1e6);
            });
        }
        return line;
    }

    private void appendLog(ObjectNode line) throws IOException {
        Path file = runDir.resolve(LOG_FILE);
        try {
            Files.writeString(file, JSON.writeValueAsString(line) + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw dive.util.FileErrors.wrap("appending to", file, e);
        }
    }

    /** on resume: keep the log lines up to the checkpoint's step (later ones are about to be redone) and rebuild the curves */
    private void reloadLog() throws IOException {
        Path file = runDir.resolve(LOG_FILE);
        StringBuilder kept = new StringBuilder();
        if (Files.isRegularFile(file)) {
            for (String text : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                if (text.isBlank()) continue;
                JsonNode line;
                try { line = JSON.readTree(text); } catch (IOException e) { continue; } // a torn last line
                if (line == null || line.path("step").asLong(Long.MAX_VALUE) > step) continue;
                kept.append(text).append('\n');
                double tokens = line.path("tokens").asDouble();
                if (line.has("loss")) trainCurve.add(new double[] {tokens, line.get("loss").asDouble()});
                line.path("eval").properties().forEach(e ->
                        evalCurves.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(new double[] {tokens, e.getValue().path("loss").asDouble()}));
            }
        }
        AtomicFiles.writeString(file, kept.toString());
    }

    /** more eval datasets than this: the picture shows their mean and range, the log keeps each one */
    static final int MAX_EVAL_CURVES = 6;

    private void writePlot() throws IOException {
        Plot plot = new Plot("loss", "tokens", "loss (nats per token)");
        plot.add("train", column(trainCurve, 0), column(trainCurve, 1));
        if (evalCurves.size() <= MAX_EVAL_CURVES) {
            evalCurves.forEach((name, points) -> plot.add("eval " + name, column(points, 0), column(points, 1)));
        } else {
            // every dataset is evaluated at the same steps: mean, min and max over datasets at each of them
            int n = evalCurves.values().stream().mapToInt(List::size).min().orElse(0);
            double[] x = new double[n], mean = new double[n], lo = new double[n], hi = new double[n];
            java.util.Arrays.fill(lo, Double.POSITIVE_INFINITY);
            java.util.Arrays.fill(hi, Double.NEGATIVE_INFINITY);
            for (List<double[]> points : evalCurves.values())
                for (int i = 0; i < n; i++) {
                    double loss = points.get(i)[1];
                    x[i] = points.get(i)[0];
                    mean[i] += loss / evalCurves.size();
                    lo[i] = Math.min(lo[i], loss);
                    hi[i] = Math.max(hi[i], loss);
                }
            plot.add("eval, mean of " + evalCurves.size() + " datasets", x, mean);
            plot.add("eval, lowest dataset", x, lo);
            plot.add("eval, highest dataset", x, hi);
        }
        plot.writePng(runDir.resolve(PLOT_FILE));
    }

    private static double[] column(List<double[]> points, int i) {
        double[] out = new double[points.size()];
        for (int k = 0; k < out.length; k++) out[k] = points.get(k)[i];
        return out;
    }
}
