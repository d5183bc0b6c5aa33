package dive.cli;

import dive.backend.Backend;
import dive.train.Recipe;
import dive.train.Trainer;
import dive.train.TrainingRun;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
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
    @Mixin CommonOptions common;

    @Override
    public Integer call() throws Exception {
        Backend backend = common.backend();  // the flags are checked before any work (cuda without a GPU: the reason)
        Recipe recipe = Recipe.load(recipeFile);
        Path runDir = out != null ? out : Path.of("runs", stem(recipeFile));
        if (exportLatest != null && Boolean.getBoolean(MemoryPlans.PLAN_HEAP)) return 0;  // the launcher's planning pass: no plan
        if (exportLatest != null) {
            TrainingRun run = TrainingRun.prepare(recipe, runDir, true, false, backend);
            System.out.println("exported step " + run.trainer().step() + " of " + runDir + " to " + run.exportLatest(exportLatest));
            return 0;
        }
        MemoryPlans.state(MemoryPlans.train(recipe), common.quiet);
        TrainingRun run = TrainingRun.prepare(recipe, runDir, resume, !common.quiet, backend);
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
