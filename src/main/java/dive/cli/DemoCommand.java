package dive.cli;

import dive.api.DefaultModel;
import dive.api.Engine;
import dive.convert.ConversionReport;
import dive.convert.ConversionResult;
import dive.convert.ConvertRecipe;
import dive.convert.DiveConversion;
import dive.model.GenerateOptions;
import dive.model.Perplexity;
import picocli.CommandLine.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "demo", mixinStandardHelpOptions = true,
        description = {"The whole DIVE pipeline and its baselines on the embedded default model and data.",
                "DIVE, FLAP, LLM-Pruner (Taylor), LLaMA-MoE random and k-means, DIVE with random",
                "groups and the dense model, on the bundled corpus sample; one seed, small budgets",
                "(the bundled demo recipe). Prints the results table; writes OUT/report.json,",
                "report.md, ppl.png, routing.png, loss.png, affinity/affinity.png. Rerun to resume."})
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--out", defaultValue = "demo-out", paramLabel = "DIR",
            description = "output folder: new, empty, or an earlier demo run to resume (default: ${DEFAULT-VALUE})") Path out;
    @Option(names = "--recipe", paramLabel = "FILE", description = "YAML or JSON convert recipe instead of the bundled demo recipe") Path recipe;
    @Option(names = "--experts", defaultValue = "8", paramLabel = "E", description = "number of experts (default: ${DEFAULT-VALUE})") int experts;
    @Option(names = "--top-k", defaultValue = "1", paramLabel = "K", description = "experts per token (default: ${DEFAULT-VALUE})") int topK;
    @Option(names = "--ratio", defaultValue = "0.5", paramLabel = "R",
            description = "share of FFN channels each expert removes (default: ${DEFAULT-VALUE})") double ratio;
    @Mixin CommonOptions common;

    @Override
    public Integer call() throws Exception {
        long start = System.nanoTime();
        ConvertRecipe r = recipe == null ? ConvertRecipe.bundled(ConvertRecipe.DEMO_RESOURCE) : ConvertRecipe.load(recipe);
        dive.backend.Backend backend = common.backend();  // the flags are checked before any work
        Path dir = DefaultModel.extract();
        try (Engine engine = Engine.load(dir, backend)) {  // the dense model at a glance: a second or two
            var c = engine.config();
            // --experts, --top-k and --ratio before anything is printed (the FFN width comes with the model)
            dive.convert.ExpertReconstruction.validate(experts, topK, ratio, c.intermediateSize(), Integer.MAX_VALUE);
            System.out.printf(Locale.ROOT, "model    embedded default (%s): hidden %d, %d layers, %d heads / %d KV heads, FFN %d, vocab %d%n",
                    dir, c.hiddenSize(), c.numHiddenLayers(), c.numAttentionHeads(), c.numKeyValueHeads(), c.intermediateSize(), c.vocabSize());
            String text = Files.readString(dir.resolve(DefaultModel.SAMPLE_TEXT));
            Perplexity.Result p = engine.perplexity(text, 128);
            System.out.printf(Locale.ROOT, "ppl      %.3f over %d predicted tokens of sample.txt (window 128)%n", p.perplexity(), p.predictedTokens());
            String prompt = text.substring(0, Math.min(40, text.length()));
            System.out.println("generate " + (prompt + engine.generate(prompt, GenerateOptions.greedy(24))).replace('\n', ' '));
        }
        Path outDir = out.toAbsolutePath().normalize();
        System.out.printf(Locale.ROOT, "convert  %d experts, top-%d, ratio %s, methods %s → %s%n", experts, topK, ratio, r.methods(), outDir);
        String command = "./dive demo --out " + out + (recipe == null ? "" : " --recipe " + recipe)
                + (experts == 8 && topK == 1 && ratio == 0.5 ? "" : " --experts " + experts + " --top-k " + topK + " --ratio " + ratio);
        ConversionResult report = DiveConversion.run(
                new DiveConversion.Request(dir, "bundled", experts, topK, ratio, r, outDir, !common.quiet, command), backend);
        System.out.print(ConversionReport.textTables(report, outDir));
        String headline = headline(report.pplGeomeans(), topK);
        if (headline != null) System.out.println(headline);
        System.out.println("report → " + outDir.resolve("report.md") + " (report.json, ppl.png, routing.png, loss.png, affinity/affinity.png beside it)");
        System.out.printf(Locale.ROOT, "done in %.1f min%n", (System.nanoTime() - start) / 6e10);
        return 0;
    }

    /**
     * The ordering this run found between DIVE, FLAP and DIVE's random-group ablation (held-out geometric-mean
     * perplexity, lower is better), beside the claim of the README's three-seed comparison at top-1; null when the run
     * lacks one of the three. {@code pplGeomeans}: method → its geometric-mean perplexity after retraining.
     */
    static String headline(Map<String, Double> pplGeomeans, int topK) {
        double dive = pplGeomeans.getOrDefault("dive", Double.NaN), flap = pplGeomeans.getOrDefault("flap", Double.NaN),
                random = pplGeomeans.getOrDefault("dive_random_groups", Double.NaN);
        if (Double.isNaN(dive) || Double.isNaN(flap) || Double.isNaN(random)) return null;
        boolean ahead = dive < flap && dive < random;
        String found = String.format(Locale.ROOT, "ordering DIVE %.2f, FLAP %.2f (%+.1f %%), DIVE with random groups %.2f (%+.1f %%): DIVE %s",
                dive, flap, 100 * (flap / dive - 1), random, 100 * (random / dive - 1),
                ahead ? "ahead of both" : dive < flap ? "ahead of FLAP, not of its random-group ablation"
                        : dive < random ? "ahead of its random-group ablation, not of FLAP" : "behind both");
        String readme = topK == 1
                ? (ahead ? "; as in the README's three-seed comparison at top-1 (DIVE ahead of both on every seed)"
                         : "; unlike the README's three-seed comparison at top-1 (DIVE ahead of both on every seed)")
                : "; the README's three-seed comparison at top-2 has DIVE ahead of its ablation and behind FLAP";
        return found + readme + " (one seed)";
    }
}
