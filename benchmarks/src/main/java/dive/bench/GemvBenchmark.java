package dive.bench;

import dive.backend.CpuBackend;
import dive.backend.VectorBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;

/**
 * Decode GEMV: out (1, N) = x (1, K) · w (N, K)ᵀ, the per-token matmul of generation; memory bound, so
 * read it as weight bytes per second: GB/s = ops/s · N·K·bytes(dtype) / 1e9 (GFLOP/s = ops/s · 2·N·K / 1e9).
 * Shapes "1xNxK": a tiny Llama's projections (hidden 256, FFN 1024, vocab 4096) and a 1B-class 2048².
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class GemvBenchmark {
    @Param({"1x256x256", "1x1024x256", "1x256x1024", "1x4096x256", "1x2048x2048"})
    public String shape;

    @Param({"F32", "BF16"})
    public String dtype;

    @Param({"2"})
    public int threads;

    private Arena arena;
    private CpuBackend b;
    private Tensor w;
    private float[] x, out;

    @Setup
    public void setup() {
        int[] mnk = BenchWeights.shape(shape);
        if (mnk[0] != 1) throw new IllegalArgumentException("GemvBenchmark shape '" + shape + "': expected M = 1");
        arena = Arena.ofShared();
        w = BenchWeights.weight(arena, DType.valueOf(dtype), mnk[1], mnk[2], 1);
        x = BenchWeights.activations(mnk[2], 2);
        out = new float[mnk[1]];
        b = new VectorBackend(threads);
    }

    @TearDown
    public void tearDown() { arena.close(); }

    @Benchmark
    public float[] matmul() {
        b.matmul(out, x, 1, w);
        return out;
    }
}
