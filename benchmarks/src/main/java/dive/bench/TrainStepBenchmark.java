package dive.bench;

import dive.backend.Backends;
import dive.model.LlamaConfig;
import dive.train.Parameter;
import dive.train.TrainableLlama;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * One full training step of a dense Llama of the benchmark shape (hidden 256, 4 layers, FFN 1024,
 * 8 heads / 4 KV heads, vocab 4096, untied) on a batch of 8 × 128 tokens: forward, backward, and a plain
 * AdamW update (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.01, as torch.optim.AdamW) written inline
 * here because the trainer's optimizer was not on main when this was written. Score = steps/s;
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
    float[][] m, v;   // AdamW moments per parameter
    int step;

    @Setup
    public void setup() {
        LlamaConfig config = InferenceBenchmark.config();
        model = TrainableLlama.initialize(config, Backends.create(backend), 42);
        SplittableRandom rnd = new SplittableRandom(7);
        tokens = new int[batch][seqLen + 1];
        for (int[] row : tokens) for (int t = 0; t <= seqLen; t++) row[t] = rnd.nextInt(config.vocabSize());
        m = new float[model.parameters().size()][];
        v = new float[model.parameters().size()][];
        for (int i = 0; i < m.length; i++) {
            m[i] = new float[Math.toIntExact(model.parameters().get(i).numel())];
            v[i] = new float[m[i].length];
        }
    }

    @Benchmark
    public double trainStep() {
        for (Parameter p : model.parameters()) p.zeroGrad();
        double loss = model.lossAndGradients(tokens, 1f);
        adamW(1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f);
        return loss;
    }

    /** torch.optim.AdamW: p −= lr·wd·p; m, v moments; p −= lr · m̂ / (√v̂ + eps) */
    void adamW(float lr, float beta1, float beta2, float eps, float weightDecay) {
        step++;
        float bc1 = 1 - (float) Math.pow(beta1, step), bc2 = 1 - (float) Math.pow(beta2, step);
        for (int i = 0; i < m.length; i++) {
            Parameter p = model.parameters().get(i);
            if (!p.trainable()) continue;
            float[] g = p.grad(), mi = m[i], vi = v[i];
            MemorySegment w = p.value().data();
            for (int j = 0; j < g.length; j++) {
                mi[j] = beta1 * mi[j] + (1 - beta1) * g[j];
                vi[j] = beta2 * vi[j] + (1 - beta2) * g[j] * g[j];
                float value = w.getAtIndex(Tensor.F32, j) * (1 - lr * weightDecay);
                value -= lr * (mi[j] / bc1) / ((float) Math.sqrt(vi[j] / bc2) + eps);
                w.setAtIndex(Tensor.F32, j, value);
            }
        }
    }
}
