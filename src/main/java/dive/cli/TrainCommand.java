package dive.cli;

import dive.train.Recipe;
import dive.train.Trainer;
import dive.train.TrainingRun;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "train", mixinStandardHelpOptions = true,
        description = {"Train or fine-tune a model from a recipe (YAML or JSON).",
                "AdamW, warm-up + cosine/constant schedule,",
                "clipping, gradient accumulation, held-out eval per dataset, atomic checkpoints, exact resume.",
                "Writes RUN_DIR/{train-log.jsonl, loss.png, checkpoints/, final/}."})
final class TrainCommand implements Callable<Integer> {
    @Option(names = "--recipe", required = true, paramLabel = "FILE", description = "recipe file (.yaml, .yml or .json)") Path recipeFile;
    @Option(names = "--out", paramLabel = "RUN_DIR", description = "run folder (default: runs/<recipe name>)") Path out;
    @Option(names = "--resume", description = "continue the run in RUN_DIR from its latest checkpoint") boolean resume;
    @Option(names = "--export-latest", paramLabel = "DIR",
            description = "do not train: export the model of RUN_DIR's latest checkpoint as a Hugging Face folder DIR (must not exist)") Path exportLatest;
    @Option(names = {"-q", "--quiet"}, description = "no progress bar or log lines") boolean quiet;
    @Option(names = "--device", paramLabel = "auto|cuda|cpu", defaultValue = "${sys:dive.device:-auto}",
            description = "where to compute: auto (default: the GPU when one works, else the CPU, saying why once), cuda, cpu") String device;

    @Override
    public Integer call() throws Exception {
        Main.quietLogs(quiet);
        dive.backend.Backends.create(device, System.getProperty("dive.backend", "auto"));  // checks --device (cuda without a GPU: the reason)
        String before = System.getProperty("dive.device");
        System.setProperty("dive.device", device);  // the training code uses Backends.select()
        try {
            return train();
        } finally {
            if (before == null) System.clearProperty("dive.device"); else System.setProperty("dive.device", before);
        }
    }

    private int train() throws Exception {
        Recipe recipe = Recipe.load(recipeFile);
        Path runDir = out != null ? out : Path.of("runs", stem(recipeFile));
        if (exportLatest != null && Boolean.getBoolean(MemoryPlans.PLAN_HEAP)) return 0;  // the launcher's planning pass: no plan
        if (exportLatest != null) {
            TrainingRun run = TrainingRun.prepare(recipe, runDir, true, false);
            System.out.println("exported step " + run.trainer().step() + " of " + runDir + " to " + run.exportLatest(exportLatest));
            return 0;
        }
        MemoryPlans.state(MemoryPlans.train(recipe), quiet);
        TrainingRun run = TrainingRun.prepare(recipe, runDir, resume, !quiet);
        Trainer.Result r = run.run();
        System.out.printf("trained %d steps (%,d tokens): last loss %.4f%s; model in %s%n", r.steps(), r.tokensSeen(), r.lastLoss(),
                r.evalLoss().isEmpty() ? "" : ", eval " + r.evalLoss().entrySet().stream()
                        .map(e -> String.format("%s %.4f", e.getKey(), e.getValue())).toList(), r.finalDir());
        return 0;
    }

    static String stem(Path file) {
        String name = file.getFileName().toString();
        int dot = name.lastIndexOf('.');
        return dot > 0 ? name.substring(0, dot) : name;
    }
}
