package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.util.concurrent.TimeUnit;

/**
 * (d) DIVE calibration throughput on a 1B-class FFN (hidden 2048, FFN 8192, random BF16 weights), as the model's
 * calibration runs it on {@link CudaBackend}: per batch of {@code batchTokens} tokens, gate and up (batch, 8192) F32 by
 * two BF16 matmuls (cuBLAS), h = SiLU(gate)·up ({@link CudaBackend#swiglu}), then
 * {@link CudaBackend#channelStatistics} merges h into the running per-channel mean, M2 and Σh² (double, on the
 * device). Each invocation runs {@value #REPS} batches and waits for the stream. Secondary result {@code tokens}:
 * tokens/s through one layer's calibration.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@OperationsPerInvocation(CalibrationGpuBenchmark.REPS)
public class CalibrationGpuBenchmark {
    static final int REPS = 5, HIDDEN = 2048, FFN = 8192;

    @Param({"8192"})
    public int batchTokens;

    private CudaBackend cuda;
    private Tensor w1, w3;
    private DeviceTensor x, gate, up, mean, m2, sumSquares;
    private long count;

    @Setup(Level.Trial)
    public void setup() {
        String reason = GpuBench.unavailableReason();
        if (reason != null) {
            System.out.println(System.lineSeparator() + GpuBench.skipMessage("CalibrationGpuBenchmark", reason));
            return;
        }
        cuda = GpuBench.open();
        x = GpuBench.f32(cuda, batchTokens * HIDDEN, 1f, 1);
        w1 = GpuBench.bf16("gate_proj", (float) (1 / Math.sqrt(HIDDEN)), 2, FFN, HIDDEN);
        w3 = GpuBench.bf16("up_proj", (float) (1 / Math.sqrt(HIDDEN)), 3, FFN, HIDDEN);
        gate = cuda.allocate(DType.F32, (long) batchTokens * FFN);
        up = cuda.allocate(DType.F32, (long) batchTokens * FFN);
        mean = cuda.allocate(DType.F64, FFN);
        m2 = cuda.allocate(DType.F64, FFN);
        sumSquares = cuda.allocate(DType.F64, FFN);
        cuda.matmul(gate, x, batchTokens, w1);   // uploads the weights into the backend's cache
        cuda.matmul(up, x, batchTokens, w3);
        cuda.synchronize();
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (cuda != null) cuda.close(); }

    @Benchmark
    public void calibrationBatch(MoeLayerGpuBenchmark.Tokens t) {
        if (cuda == null) return;
        for (int r = 0; r < REPS; r++) {
            cuda.matmul(gate, x, batchTokens, w1);
            cuda.matmul(up, x, batchTokens, w3);
            cuda.swiglu(gate, gate, up, batchTokens * FFN);
            cuda.channelStatistics(mean, m2, sumSquares, count, gate, batchTokens, FFN);
            count += batchTokens;
        }
        cuda.synchronize();
        t.tokens += (double) REPS * batchTokens;
    }
}
