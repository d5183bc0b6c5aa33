package dive.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.api.Engine;
import dive.model.Perplexity;
import dive.util.Progress;
import picocli.CommandLine.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "ppl", mixinStandardHelpOptions = true,
        description = "Perplexity of a text file: exp(mean NLL) over non-overlapping windows (the HF convention).")
final class PplCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR") Path modelDir;
    @Option(names = "--text", required = true, paramLabel = "FILE", description = "UTF-8 text file") Path textFile;
    @Option(names = "--window", defaultValue = "256", paramLabel = "N", description = "tokens per window (default ${DEFAULT-VALUE})") int window;
    @Option(names = "--json", description = "print {\"ppl\": …, \"tokens\": …}") boolean json;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        if (window < 2) throw new IllegalArgumentException("--window " + window + ": expected ≥ 2 tokens");
        byte[] bytes = dive.util.FileErrors.readAllBytes(textFile);
        if (bytes.length == 0) throw new IllegalArgumentException(textFile + ": empty text, nothing to score");
        dive.backend.Backend backend = common.backend();  // the flags are checked before the plan
        dive.model.Perplexity.checkWindow(dive.model.LlamaConfig.load(modelDir), "--window", window);  // before any work or output
        MemoryPlans.state(MemoryPlans.inference("ppl", modelDir, Math.max(window, MemoryPlans.BATCH_ROWS), Math.max(window, MemoryPlans.BATCH_ROWS), window), common.quiet || json);
        try (Engine engine = Engine.load(modelDir, backend, loadFlags.options())) {
            int[] ids = engine.requireTokenizer().encode(bytes, true);
            Perplexity.Result r;
            try (Progress bar = new Progress("ppl", Perplexity.windowCount(ids.length, window), "windows", !common.quiet && !json)) {
                r = Perplexity.compute(engine.model(), ids, window, bar::step);
            }
            if (json) {
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("ppl", r.perplexity());
                out.put("tokens", r.predictedTokens());
                out.put("mean_nll", r.meanNll());
                out.put("window", window);
                System.out.println(new ObjectMapper().writeValueAsString(out));
            } else {
                System.out.printf("ppl %.4f over %d predicted tokens (window %d)%n", r.perplexity(), r.predictedTokens(), window);
            }
        }
        return 0;
    }
}
