package dive.cli;

import dive.api.Engine;
import dive.model.GenerateOptions;
import dive.model.Generator;
import dive.tokenizer.Tokenizer;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Continue a prompt: greedy by default, or sampled with --temperature/--top-p and a --seed.")
final class GenerateCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR") Path modelDir;
    @Option(names = "--prompt", required = true, paramLabel = "TEXT", description = "the prompt text") String prompt;
    @Option(names = "--max-tokens", defaultValue = "64", paramLabel = "N", description = "most new tokens (default ${DEFAULT-VALUE})") int maxTokens;
    @Option(names = "--temperature", defaultValue = "0", paramLabel = "T", description = "0 = greedy (default), else sampling temperature") float temperature;
    @Option(names = "--top-p", defaultValue = "1", paramLabel = "P", description = "nucleus mass in (0, 1] (default ${DEFAULT-VALUE})") float topP;
    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "sampling seed (default ${DEFAULT-VALUE})") long seed;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens " + maxTokens + ": expected ≥ 0");
        if (!(temperature >= 0 && Float.isFinite(temperature)))
            throw new IllegalArgumentException("--temperature " + temperature + ": expected a finite value ≥ 0 (0 = greedy)");
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("--top-p " + topP + ": expected in (0, 1]");
        int maxPositions = dive.model.LlamaConfig.load(modelDir).maxPositionEmbeddings();
        if (maxTokens >= maxPositions)  // before loading: a prompt has at least one token
            throw new IllegalArgumentException("--max-tokens " + maxTokens + " plus the prompt exceeds the model's max_position_embeddings "
                    + maxPositions + " (config.json): at most " + (maxPositions - 1) + " new tokens after a one-token prompt");
        try (Engine engine = common.load(modelDir, loadFlags)) {
            Tokenizer tok = engine.requireTokenizer();
            int[] promptIds = tok.encode(prompt);
            Generator.checkLength(engine.config(), promptIds.length, maxTokens, "--max-tokens");  // before any output
            GenerateOptions opts = new GenerateOptions(maxTokens, temperature, topP, seed, null);
            List<Integer> produced = new ArrayList<>();
            String[] printed = {""};
            System.out.print(prompt);
            // stream text as it forms: decode everything so far, print what is new (keeps multi-token characters whole)
            Generator.generate(engine.model(), promptIds, opts, engine.decodableIds(), id -> {
                produced.add(id);
                String text = tok.decode(produced.stream().mapToInt(Integer::intValue).toArray(), true);
                if (text.startsWith(printed[0]) && !text.endsWith("\uFFFD")) {
                    System.out.print(text.substring(printed[0].length()));
                    System.out.flush();
                    printed[0] = text;
                }
            });
            String all = tok.decode(produced.stream().mapToInt(Integer::intValue).toArray(), true);
            if (all.startsWith(printed[0])) System.out.print(all.substring(printed[0].length()));
            System.out.println();
        }
        return 0;
    }
}
