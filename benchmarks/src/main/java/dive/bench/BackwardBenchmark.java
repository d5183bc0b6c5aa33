package dive.bench;

import dive.backend.CpuBackend;
import dive.backend.VectorBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;

/**
 * Training backward GEMMs of a linear layer out (M, N) = x (M, K) · w (N, K)ᵀ: {@link Backend#matmulBackwardInput}
 * dx (M, K) = dOut (M, N) · w, w frozen in its dtype (BF16 over a read-only segment, as a mapped checkpoint gives it),
 * and {@link Backend#matmulBackwardWeight} dw (N, K) += dOut (M, N)ᵀ · x (M, K) (activations only). One op = one call,
 * 2·M·N·K floating-point operations. Shapes "MxNxK": a 1.1B Llama's (hidden 2048, FFN 5632, vocab 32000) training
 * step of 256 rows: gate/up (256x5632x2048), down (256x2048x5632), LM head (256x32000x2048):
 * {@code ./dive jmh BackwardBenchmark -f 1 -wi 3 -i 5}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class BackwardBenchmark {
    @Param({"256x5632x2048", "256x2048x5632", "256x32000x2048"})
    public String shape;

    @Param({"BF16"})
    public String dtype;

    @Param({"2"})
    public int threads;

    private Arena arena;
    private CpuBackend b;
    private Tensor w;
    private float[] x, dOut, dx, dw;
    private int m, n, k;

    @Setup
    public void setup() {
        int[] mnk = BenchWeights.shape(shape);
        m = mnk[0]; n = mnk[1]; k = mnk[2];
        arena = Arena.ofShared();
        w = BenchWeights.weight(arena, DType.valueOf(dtype), n, k, 1);
        w = new Tensor(w.name(), w.dtype(), w.shape(), w.data().asReadOnly());
        x = BenchWeights.activations(m * k, 2);
        dOut = BenchWeights.activations(m * n, 3);
        dx = new float[m * k];
        dw = new float[n * k];
        b = new VectorBackend(threads);
    }

    @TearDown
    public void tearDown() { arena.close(); }

    @Benchmark
    public float[] backwardInput() {
        b.matmulBackwardInput(dx, dOut, m, w);
        return dx;
    }

    @Benchmark
    public float[] backwardWeight() {
        b.matmulBackwardWeight(dw, dOut, x, m, n, k);
        return dw;
    }
}
