package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.util.concurrent.TimeUnit;

/**
 * (a, baseline) One dense BF16 matmul as the model runs it ({@link CudaBackend#matmul} with a BF16 weight: x rounded
 * from F32 to BF16 on the device, then cublasGemmEx with BF16 inputs, F32 output and compute) of the shape
 * {@link GroupedMatmulGpuBenchmark} splits over experts: out (rows, N) F32 = x (rows, K) · w (N, K)ᵀ, K = 2048, the same
 * FLOPs (2·rows·N·K). Each invocation queues {@value #REPS} products and then waits for the stream. Secondary result
 * {@code teraFlop}: TFLOP/s.
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

    private CudaBackend cuda;
    private DeviceTensor x, out;
    private Tensor w;

    @Setup(Level.Trial)
    public void setup() {
        String reason = GpuBench.unavailableReason();
        if (reason != null) {
            System.out.println(System.lineSeparator() + GpuBench.skipMessage("CublasGemmGpuBenchmark", reason));
            return;
        }
        cuda = GpuBench.open();
        x = GpuBench.f32(cuda, rows * HIDDEN, 1f, 1);
        w = GpuBench.bf16("w", (float) (1 / Math.sqrt(HIDDEN)), 2, expertWidth, HIDDEN);
        out = cuda.allocate(DType.F32, (long) rows * expertWidth);
        cuda.matmul(out, x, rows, w);   // uploads the weight into the backend's cache
        cuda.synchronize();
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (cuda != null) cuda.close(); }

    @Benchmark
    public void cublasGemmBf16(GroupedMatmulGpuBenchmark.Flops flops) {
        if (cuda == null) return;
        for (int r = 0; r < REPS; r++) cuda.matmul(out, x, rows, w);
        cuda.synchronize();
        flops.teraFlop += REPS * 2.0 * rows * expertWidth * HIDDEN / 1e12;
    }
}
