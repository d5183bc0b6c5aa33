package dive.bench;

import dive.backend.CpuBackend;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;

/**
 * Prefill GEMM: out (M, N) = x (M, K) · w (N, K)ᵀ through {@link Backend#matmul}. One op = one matmul,
 * i.e. 2·M·N·K floating-point operations: GFLOP/s = ops/s · 2·M·N·K / 1e9.
 * Shapes "MxNxK": squares, a tiny Llama's prefill of 512 tokens (hidden 256, FFN 1024, vocab 2048), and a
 * 1.1B Llama's (TinyLlama: hidden 2048, FFN 5632) FFN matmuls in a 128-token prefill, 128x5632x2048 (gate, up) and
 * 128x2048x5632 (down), meant for BF16 weights in read-only memory as a mapped checkpoint gives them:
 * {@code ./dive jmh GemmBenchmark -p shape=128x5632x2048,128x2048x5632 -p dtype=BF16 -p readOnly=true}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class GemmBenchmark {
    @Param({"512x512x512", "1024x1024x1024", "2048x2048x2048", "512x1024x256", "512x256x1024", "512x2048x256",
            "128x5632x2048", "128x2048x5632"})
    public String shape;

    @Param({"F32", "BF16"})
    public String dtype;

    /** threads of the vector backend (OpenBLAS is compared at 2) */
    @Param({"2"})
    public int threads;

    /** w over a read-only segment (as a memory-mapped checkpoint), or a writable one (as weights being trained) */
    @Param({"false"})
    public boolean readOnly;

    /** vector or scalar */
    @Param({"vector"})
    public String backend;

    private Arena arena;
    private CpuBackend b;
    private Tensor w;
    private float[] x, out;
    private int m;

    @Setup
    public void setup() {
        int[] mnk = BenchWeights.shape(shape);
        m = mnk[0];
        arena = Arena.ofShared();
        w = BenchWeights.weight(arena, DType.valueOf(dtype), mnk[1], mnk[2], 1);
        if (readOnly) w = new Tensor(w.name(), w.dtype(), w.shape(), w.data().asReadOnly());
        x = BenchWeights.activations(m * mnk[2], 2);
        out = new float[m * mnk[1]];
        b = backend.equals("scalar") ? new ScalarBackend() : new VectorBackend(threads);
    }

    @TearDown
    public void tearDown() { arena.close(); }

    @Benchmark
    public float[] matmul() {
        b.matmul(out, x, m, w);
        return out;
    }
}
