package dive.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.convert.ConvertRecipe;
import dive.convert.DiveConversion;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
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
    @Mixin CommonOptions common;

    @Override
    public Integer call() throws Exception {
        ConvertRecipe r = recipe == null ? ConvertRecipe.defaults() : ConvertRecipe.load(recipe);
        common.backend();  // applies --threads and --quiet, checks the device and backend names
        Map<String, Object> report = common.withSelection(  // the conversion code uses Backends.select()
                () -> DiveConversion.run(new DiveConversion.Request(modelDir, data, experts, topK, ratio, r, out, !common.quiet)));
        @SuppressWarnings("unchecked") Map<String, Object> dense = (Map<String, Object>) report.get("dense");
        @SuppressWarnings("unchecked") Map<String, Object> dive = (Map<String, Object>) ((Map<String, Object>) report.get("methods")).get("dive");
        @SuppressWarnings("unchecked") Map<String, Number> d = (Map<String, Number>) dense.get("ppl");
        @SuppressWarnings("unchecked") Map<String, Number> b = (Map<String, Number>) dive.get("ppl_before_retraining");
        @SuppressWarnings("unchecked") Map<String, Number> a = (Map<String, Number>) dive.get("ppl_after_retraining");
        System.out.printf(Locale.ROOT, "%-24s %10s %10s %10s%n", "dataset", "dense", "before", "after");
        for (String name : d.keySet())
            System.out.printf(Locale.ROOT, "%-24s %10.2f %10.2f %10.2f%n", name, d.get(name).doubleValue(), b.get(name).doubleValue(), a.get(name).doubleValue());
        System.out.printf(Locale.ROOT, "params: dense %,d; DIVE %,d total, %,d active; %,d training tokens%n", ((Number) dense.get("params_total")).longValue(),
                ((Number) dive.get("params_total")).longValue(), ((Number) dive.get("params_active")).longValue(), ((Number) dive.get("training_tokens")).longValue());
        @SuppressWarnings("unchecked") Map<String, Object> methods = (Map<String, Object>) report.get("methods");
        for (Map.Entry<String, Object> m : methods.entrySet()) {
            if (m.getKey().equals("dive")) continue;
            com.fasterxml.jackson.databind.JsonNode e = new com.fasterxml.jackson.databind.ObjectMapper().valueToTree(m.getValue());
            StringBuilder ppl = new StringBuilder();
            e.get("ppl_after_retraining").properties().forEach(kv -> ppl.append(String.format(Locale.ROOT, " %s %.2f", kv.getKey(), kv.getValue().asDouble())));
            System.out.printf(Locale.ROOT, "%-20s after:%s; %,d active; %,d training tokens → %s%n", m.getKey(), ppl,
                    e.get("params_active").asLong(), e.get("training_tokens").asLong(), e.get("export").asText());
        }
        System.out.println("model → " + dive.get("export") + "\nreport → " + out.resolve("report.json"));
        return 0;
    }
}
