package dive.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.api.Engine;
import dive.convert.DatasetWindows;
import dive.convert.WindowPerplexity;
import dive.data.Corpus;
import dive.data.Manifest;
import dive.data.Split;
import dive.util.Progress;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.*;
import java.util.concurrent.Callable;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = {"Held-out perplexity per dataset on the corpus's EVAL splits.",
                "Each split (never trained on) is tokenized as the",
                "trainer does, cut into consecutive windows, every window scored on its own (the first token of a window",
                "is not predicted)."})
final class EvalCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR") Path modelDir;
    @Option(names = "--data", defaultValue = "bundled", paramLabel = "bundled|CORPUS_DIR", description = "corpus (default: the bundled sample)") String data;
    @Option(names = "--datasets", split = ",", paramLabel = "A,B", description = "datasets to score (default: all)") List<String> datasets;
    @Option(names = "--window", defaultValue = "256", paramLabel = "N", description = "tokens per window (default ${DEFAULT-VALUE})") int window;
    @Option(names = "--max-windows", defaultValue = "16", paramLabel = "N", description = "windows per dataset at most (default ${DEFAULT-VALUE})") int maxWindows;
    @Option(names = "--json", description = "print {dataset: {ppl, tokens}} as JSON") boolean json;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        if (window < 2) throw new IllegalArgumentException("--window " + window + ": expected ≥ 2 tokens");
        if (maxWindows < 1) throw new IllegalArgumentException("--max-windows " + maxWindows + ": expected ≥ 1");
        Corpus corpus = data.equals("bundled") ? Corpus.bundled() : Corpus.open(Path.of(data));
        List<String> known = corpus.datasets().stream().map(Manifest.Entry::name).toList();
        List<String> names = datasets == null ? known : datasets;
        for (String n : names)
            if (!known.contains(n)) throw new IllegalArgumentException("--datasets: '" + n + "' is not in the corpus " + corpus.location() + " (has " + known + ")");
        dive.backend.Backend backend = common.backend();  // the flags are checked before the plan
        dive.model.Perplexity.checkWindow(dive.model.LlamaConfig.load(modelDir), "--window", window);  // before any work or output
        MemoryPlans.state(MemoryPlans.inference("eval", modelDir, Math.max(window, MemoryPlans.BATCH_ROWS), Math.max(window, MemoryPlans.BATCH_ROWS), window), common.quiet || json);
        try (Engine engine = Engine.load(modelDir, backend, loadFlags.options())) {
            List<List<int[]>> windows = new ArrayList<>();
            int total = 0;
            for (String n : names) {
                int[] tokens = DatasetWindows.tokenize(engine.requireTokenizer(), corpus.texts(n, Split.EVAL));
                List<int[]> w = DatasetWindows.consecutive(tokens, 0, tokens.length, window, maxWindows);
                if (w.isEmpty()) throw new IllegalArgumentException("dataset '" + n + "': its eval split has " + tokens.length + " tokens, fewer than one --window " + window);
                windows.add(w);
                total += w.size();
            }
            double[] ppl;
            try (Progress bar = new Progress("eval", total, "windows", !common.quiet && !json)) {
                ppl = WindowPerplexity.perGroup(engine.model(), windows, bar::step);
            }
            Map<String, Map<String, Object>> out = new LinkedHashMap<>();
            for (int i = 0; i < names.size(); i++)
                out.put(names.get(i), Map.of("ppl", ppl[i], "tokens", windows.get(i).size() * (window - 1)));
            if (json) {
                System.out.println(new ObjectMapper().writeValueAsString(out));
            } else {
                System.out.printf("%-22s %10s %8s%n", "dataset", "ppl", "tokens");
                out.forEach((n, r) -> System.out.printf("%-22s %10.3f %8d%n", n, (double) r.get("ppl"), (int) r.get("tokens")));
            }
        }
        return 0;
    }
}
