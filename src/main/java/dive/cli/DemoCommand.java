package dive.cli;

import dive.api.Bench;
import dive.api.DefaultModel;
import dive.api.Engine;
import dive.model.GenerateOptions;
import dive.model.Perplexity;
import dive.util.Progress;
import picocli.CommandLine.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "The main job on the embedded default model and sample text: load, perplexity, generation, throughput.")
final class DemoCommand implements Callable<Integer> {
    @Mixin CommonOptions common;

    @Override
    public Integer call() throws Exception {
        Path dir = DefaultModel.extract();
        String text = Files.readString(dir.resolve(DefaultModel.SAMPLE_TEXT));
        try (Engine engine = common.load(dir)) {
            var c = engine.config();
            System.out.printf("model    embedded default (%s): hidden %d, %d layers, %d heads / %d KV heads, FFN %d, vocab %d%n",
                    dir, c.hiddenSize(), c.numHiddenLayers(), c.numAttentionHeads(), c.numKeyValueHeads(), c.intermediateSize(), c.vocabSize());
            System.out.println("backend  " + engine.model().backend().name());
            Perplexity.Result r = engine.perplexity(text, 128);
            System.out.printf("ppl      %.3f over %d predicted tokens of sample.txt (window 128)%n", r.perplexity(), r.predictedTokens());
            String prompt = text.substring(0, Math.min(40, text.length()));
            System.out.println("generate " + (prompt + engine.generate(prompt, GenerateOptions.greedy(32))).replace('\n', ' '));
            Bench.Result b;
            try (Progress p = new Progress("bench", 3, "repeats", !common.quiet)) {
                b = Bench.run(engine.model(), 1, 128, 32, 3, () -> p.step(1));
            }
            System.out.printf("speed    prefill %.0f tokens/s, decode %.0f tokens/s (batch 1, prompt 128, 32 new)%n",
                    b.prefillTokensPerSecond(), b.decodeTokensPerSecond());
        }
        return 0;
    }
}
