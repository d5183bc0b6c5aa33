package dive.bench;

import dive.backend.VectorBackend;
import dive.model.KVCache;
import dive.model.LlamaModel;
import org.openjdk.jmh.annotations.*;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * Mixtral (MoE) prefill and decode of a checkpoint on disk, the one that transformers reads in
 * benchmarks/peers/hf_mixtral.py (written by {@code hf_mixtral.py --make DIR}: hidden 256, 4 layers, 8 heads / 4 KV
 * heads, vocab 4096, 8 experts of width 256, top-2, F32). The weights are memory-mapped read-only, as the CLI loads
 * them. Same shapes as the peer: batch 1.
 * <ul>
 * <li>{@code prefill}: one forward of {@code promptLen} tokens → tokens/s = score × promptLen</li>
 * <li>{@code decode}: {@code gen} greedy steps after a {@code promptLen}-token prompt (the prefill runs in the untimed
 *     per-invocation setup) → tokens/s = score × gen</li>
 * </ul>
 * {@code -p model=DIR} (default target/bench-mixtral), {@code -p threads=N} (default 2).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@Warmup(iterations = 4, time = 2)
@Measurement(iterations = 5, time = 2)
public class MixtralBenchmark {
    @Param({"target/bench-mixtral"}) public String model;
    @Param({"2"}) public int threads;
    @Param({"128"}) public int promptLen;
    @Param({"64"}) public int gen;

    LlamaModel llm;
    int[] prompt;

    @Setup(Level.Trial)
    public void setup() throws IOException {
        Path dir = Path.of(model);
        if (!Files.isRegularFile(dir.resolve("config.json")))
            throw new IllegalArgumentException("MixtralBenchmark: no config.json in '" + dir.toAbsolutePath()
                    + "'; write the model with: python benchmarks/peers/hf_mixtral.py --make " + dir);
        llm = LlamaModel.load(dir, new VectorBackend(threads));
        prompt = Greedy.prompt(llm, promptLen);
    }

    /** a freshly prefilled cache per decode invocation (untimed) */
    @State(Scope.Thread)
    public static class Prefilled {
        KVCache cache;
        float[] lastLogits;

        @Setup(Level.Invocation)
        public void prefill(MixtralBenchmark b) {
            cache = b.llm.newCache(b.promptLen + b.gen);
            lastLogits = b.llm.forwardLast(b.prompt, cache);
        }
    }

    @Benchmark
    public float[] prefill() {
        return llm.forwardLast(prompt, llm.newCache(promptLen));
    }

    @Benchmark
    public float[] decode(Prefilled p) {
        return Greedy.decode(llm, p.lastLogits, p.cache, gen);
    }
}
