package dive.bench;

import dive.backend.Backends;
import dive.model.LlamaConfig;
import dive.train.AdamW;
import dive.train.Parameter;
import dive.train.TrainableLlama;
import org.openjdk.jmh.annotations.*;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * One full training step of a dense Llama of the benchmark shape (hidden 256, 4 layers, FFN 1024,
 * 8 heads / 4 KV heads, vocab 4096, untied) on a batch of 8 × 128 tokens: forward, backward, and the
 * trainer's AdamW update (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on every tensor, as
 * torch.optim.AdamW with its defaults). Score = steps/s;
 * tokens/s = score × batch × seqLen. Peer: benchmarks/peers/hf_train_step.py (same shape, torch.optim.AdamW).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@Warmup(iterations = 3, time = 4)
@Measurement(iterations = 5, time = 4)
public class TrainStepBenchmark {
    @Param({"vector"}) public String backend;
    @Param({"8"}) public int batch;
    @Param({"128"}) public int seqLen;

    TrainableLlama model;
    int[][] tokens;   // (batch, seqLen + 1)
    AdamW optimizer;

    @Setup
    public void setup() {
        LlamaConfig config = InferenceBenchmark.config();
        model = TrainableLlama.initialize(config, Backends.create(backend), 42);
        SplittableRandom rnd = new SplittableRandom(7);
        tokens = new int[batch][seqLen + 1];
        for (int[] row : tokens) for (int t = 0; t <= seqLen; t++) row[t] = rnd.nextInt(config.vocabSize());
        // as torch.optim.AdamW(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01): decay on every tensor
        optimizer = new AdamW(new AdamW.Options(0.9, 0.999, 1e-8, 0.01, true), model.backend());
    }

    @Benchmark
    public double trainStep() {
        for (Parameter p : model.parameters()) p.zeroGrad();
        double loss = model.lossAndGradients(tokens, 1f);
        optimizer.step(model.parameters(), 1e-4);
        return loss;
    }
}
