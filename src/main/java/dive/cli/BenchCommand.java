package dive.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.api.Bench;
import dive.api.Engine;
import dive.util.Progress;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Prefill and decode tokens per second on random ids (medians over repeats, after a warm-up).")
final class BenchCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR") Path modelDir;
    @Option(names = "--batch", defaultValue = "1", paramLabel = "B", description = "sequences at once (default ${DEFAULT-VALUE})") int batch;
    @Option(names = "--prompt-len", defaultValue = "128", paramLabel = "T", description = "prompt tokens per sequence (default ${DEFAULT-VALUE})") int promptLen;
    @Option(names = "--gen", defaultValue = "64", paramLabel = "N", description = "tokens decoded per sequence (default ${DEFAULT-VALUE})") int gen;
    @Option(names = "--repeats", defaultValue = "5", paramLabel = "R", description = "timed repeats (default ${DEFAULT-VALUE})") int repeats;
    @Option(names = "--json", description = "print the result as JSON") boolean json;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        // every option before the model is loaded
        for (Object[] o : new Object[][] {{"--batch", batch}, {"--prompt-len", promptLen}, {"--gen", gen}, {"--repeats", repeats}})
            if ((int) o[1] < 1) throw new IllegalArgumentException(o[0] + " " + o[1] + ": expected ≥ 1");
        try (Engine engine = common.load(modelDir, loadFlags)) {
            dive.model.Generator.checkLength(engine.config(), promptLen, gen, "--gen");  // --prompt-len + --gen positions
            Bench.Result r;
            try (Progress p = new Progress("bench", repeats, "repeats", !common.quiet && !json)) {
                r = Bench.run(engine.model(), batch, promptLen, gen, repeats, () -> p.step(1));
            }
            if (json) {
                System.out.println(new ObjectMapper().writeValueAsString(r));
            } else {
                System.out.printf("backend %s, batch %d, prompt %d, gen %d, %d repeats (medians)%n", r.backend(), batch, promptLen, gen, repeats);
                System.out.printf("prefill %10.1f tokens/s%n", r.prefillTokensPerSecond());
                System.out.printf("decode  %10.1f tokens/s%n", r.decodeTokensPerSecond());
            }
        }
        return 0;
    }
}
