package dive.cli;

import dive.convert.ConversionReport;
import dive.convert.ConversionResult;
import dive.convert.ConvertRecipe;
import dive.convert.DiveConversion;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "convert", mixinStandardHelpOptions = true,
        description = {"DIVE: a dense Llama model → a retrained Mixtral (HF checkpoint + report).",
                "Windows → groups (affinity mining, random or a file) →",
                "experts (each group's pooled calibration windows prune the dense FFN) → retraining (stage 0: routers, soft routing;",
                "stage 1: LoRA on experts + routers + norms, top-k; optional stage 2) → OUT/model (HF Mixtral) and OUT/report.json.",
                "Resumable: run the same command again and it continues where it stopped."})
final class ConvertCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR", description = "dense Hugging Face Llama folder with tokenizer.json") Path modelDir;
    @Option(names = "--data", defaultValue = "bundled", paramLabel = "bundled|CORPUS_DIR", description = "corpus (default: the bundled sample)") String data;
    @Option(names = "--experts", required = true, paramLabel = "E", description = "number of experts") int experts;
    @Option(names = "--top-k", required = true, paramLabel = "K", description = "experts per token") int topK;
    @Option(names = "--ratio", required = true, paramLabel = "R", description = "share of FFN channels each expert removes, in (0, 1)") double ratio;
    @Option(names = "--out", required = true, paramLabel = "OUT_DIR", description = "output folder (new, empty, or an earlier run of the same settings)") Path out;
    @Option(names = "--recipe", paramLabel = "FILE", description = "YAML or JSON settings (datasets, score, grouping, windows, stage budgets …)") Path recipe;
    @Option(names = "--dtype", paramLabel = "auto|F32|BF16|F16", description = "dtype of the exported models (default: the recipe's export_dtype, auto = the dense checkpoint's)") String dtype;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        ConvertRecipe loaded = recipe == null ? ConvertRecipe.defaults() : ConvertRecipe.load(recipe);
        ConvertRecipe r = dtype == null ? loaded : loaded.withExportDtype(dtype);
        dive.backend.Backend backend = common.backend();  // the flags are checked before the plan
        MemoryPlans.state(MemoryPlans.convert(modelDir, r, experts, topK, ratio), common.quiet);
        ConversionResult report = DiveConversion.run(
                new DiveConversion.Request(modelDir, data, experts, topK, ratio, r, out, !common.quiet, commandLine(), loadFlags.options()), backend);
        Path dir = out.toAbsolutePath().normalize();
        System.out.print(ConversionReport.textTables(report, dir));
        System.out.println("report → " + dir.resolve("report.md") + " (report.json, ppl.png, routing.png, loss.png beside it)");
        return 0;
    }

    /** the command as typed (for report.md) */
    private String commandLine() {
        StringBuilder sb = new StringBuilder("./dive convert " + modelDir + " --data " + data + " --experts " + experts + " --top-k " + topK
                + " --ratio " + ratio + " --out " + out);
        if (recipe != null) sb.append(" --recipe ").append(recipe);
        if (dtype != null) sb.append(" --dtype ").append(dtype);
        return sb.toString();
    }
}
