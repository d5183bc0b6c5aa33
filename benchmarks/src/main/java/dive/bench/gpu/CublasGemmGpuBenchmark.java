package dive.bench.gpu;

import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * (a, baseline) One cuBLAS BF16 GEMM (cublasGemmEx: CUDA_R_16BF inputs, F32 output, CUBLAS_COMPUTE_32F) of the
 * shape {@link GroupedMatmulGpuBenchmark} splits over experts: out (rows, N) F32 = x (rows, K) · w (N, K)ᵀ, K = 2048,
 * the same FLOPs (2·rows·N·K). Each invocation runs {@value #REPS} GEMMs and then waits for the stream.
 * Secondary result {@code teraFlop}: TFLOP/s.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@OperationsPerInvocation(CublasGemmGpuBenchmark.REPS)
public class CublasGemmGpuBenchmark {
    static final int REPS = 10, HIDDEN = GroupedMatmulGpuBenchmark.HIDDEN;

    @Param({"8192", "16384"})
    public int rows;

    @Param({"1024", "2048"})
    public int expertWidth;

    private Gpu gpu;
    private MemorySegment x, w, out;

    @Setup(Level.Trial)
    public void setup() {
        String reason = Gpu.unavailableReason();
        if (reason != null) {
            System.out.println(System.lineSeparator() + Gpu.skipMessage("CublasGemmGpuBenchmark", reason));
            return;
        }
        gpu = Gpu.open();
        System.out.println("GPU: " + Gpu.describe());
        x = gpu.randomBf16((long) rows * HIDDEN, 1f, 1, "x (rows, K)");
        w = gpu.randomBf16((long) expertWidth * HIDDEN, (float) (1 / Math.sqrt(HIDDEN)), 2, "w (N, K)");
        out = gpu.alloc((long) rows * expertWidth * 4, "out (rows, N)");
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (gpu != null) gpu.close(); }

    @Benchmark
    public void cublasGemmBf16(GroupedMatmulGpuBenchmark.Flops flops) {
        if (gpu == null) return;
        for (int r = 0; r < REPS; r++) gpu.matmulBf16(out, x, w, rows, expertWidth, HIDDEN);
        gpu.sync();
        flops.teraFlop += REPS * 2.0 * rows * expertWidth * HIDDEN / 1e12;
    }
}
