package dive.cli;

import dive.convert.Comparison;
import picocli.CommandLine.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "compare", mixinStandardHelpOptions = true,
        description = {"The multi-seed comparison of DIVE and its baselines: every (E, k, r) setting × every seed of the plan is one",
                "'convert' run in OUT/<setting>/seed-<s>/; then OUT/comparison.md, comparison.json and comparison.png give, per",
                "setting and method, the geometric-mean held-out perplexity (mean ± spread over seeds) and the paired gap to DIVE.",
                "Resumable: run the same command again and it continues where it stopped."})
final class CompareCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR", description = "dense Hugging Face Llama folder with tokenizer.json") Path modelDir;
    @Option(names = "--plan", required = true, paramLabel = "FILE", description = "settings, seeds and the convert recipe (e.g. src/main/recipes/comparison.yaml)") Path plan;
    @Option(names = "--data", defaultValue = "bundled", paramLabel = "bundled|CORPUS_DIR", description = "corpus (default: the bundled sample)") String data;
    @Option(names = "--out", required = true, paramLabel = "OUT_DIR", description = "output folder (new, or an earlier run of the same plan)") Path out;
    @Option(names = "--summary-only", description = "only summarise the runs finished so far (no training; settings with unfinished seeds are marked incomplete)") boolean summaryOnly;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        if (!Files.isRegularFile(plan)) throw new java.nio.file.NoSuchFileException(plan + " (--plan)");
        Comparison.Plan p = Comparison.Plan.load(plan);
        dive.backend.Backend backend = common.backend();  // the flags are checked before the plan
        if (!summaryOnly) {  // the runs are one after another: the plan is the largest setting's
            dive.util.MemoryPlan largest = null;
            for (Comparison.Setting s : p.settings()) {
                dive.util.MemoryPlan one = MemoryPlans.convert(modelDir, p.convert(), s.experts(), s.topK(), s.ratio());
                if (largest == null || one.peakBytes() > largest.peakBytes()) largest = one;
            }
            MemoryPlans.state(largest, common.quiet);
        }
        if (summaryOnly) Comparison.summarise(p, out, true);
        else Comparison.run(modelDir, data, p, out, !common.quiet,
                "./dive compare " + modelDir + " --plan " + plan + " --data " + data + " --out " + out, backend, loadFlags.options());
        System.out.print(Files.readString(out.resolve("comparison.md")));
        System.out.println("\nsummary → " + out.resolve("comparison.md"));
        return 0;
    }
}
