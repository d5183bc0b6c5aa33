package dive.bench.gpu;

import dive.bindings.dive_h;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * (d) DIVE calibration throughput on a 1B-class FFN (hidden 2048, FFN 8192, random bf16 weights): per batch of
 * {@code batchTokens} tokens, gate and up (batch, 8192) F32 by cuBLAS BF16 GEMMs, h = SiLU(gate)·up (dive_swiglu),
 * then dive_channel_stats_update merges h into the running per-channel mean, M2 and Σh² (double, on the device).
 * Each invocation runs {@value #REPS} batches and waits for the stream. Secondary result {@code tokens}: tokens/s
 * through one layer's calibration.
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

    private Gpu gpu;
    private MemorySegment xb, w1, w3, gate, up, mean, m2, sumSquares;
    private long count;

    @Setup(Level.Trial)
    public void setup() {
        String reason = Gpu.unavailableReason("dive_swiglu", "dive_channel_stats_update");
        if (reason != null) {
            System.out.println(System.lineSeparator() + Gpu.skipMessage("CalibrationGpuBenchmark", reason));
            return;
        }
        gpu = Gpu.open();
        System.out.println("GPU: " + Gpu.describe());
        xb = gpu.randomBf16((long) batchTokens * HIDDEN, 1f, 1, "x (batch, H) bf16");
        w1 = gpu.randomBf16((long) FFN * HIDDEN, (float) (1 / Math.sqrt(HIDDEN)), 2, "gate_proj (F, H)");
        w3 = gpu.randomBf16((long) FFN * HIDDEN, (float) (1 / Math.sqrt(HIDDEN)), 3, "up_proj (F, H)");
        gate = gpu.alloc((long) batchTokens * FFN * 4, "gate (batch, F)");
        up = gpu.alloc((long) batchTokens * FFN * 4, "up (batch, F)");
        mean = gpu.alloc(FFN * 8L, "mean (F) double");
        m2 = gpu.alloc(FFN * 8L, "m2 (F) double");
        sumSquares = gpu.alloc(FFN * 8L, "sumSquares (F) double");
        for (MemorySegment d : new MemorySegment[]{mean, m2, sumSquares})
            Gpu.check(dive_h.dive_memset(d, 0, FFN * 8L, gpu.stream), "memset statistics");
        gpu.sync();
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (gpu != null) gpu.close(); }

    @Benchmark
    public void calibrationBatch(MoeLayerGpuBenchmark.Tokens t) {
        if (gpu == null) return;
        for (int r = 0; r < REPS; r++) {
            gpu.matmulBf16(gate, xb, w1, batchTokens, FFN, HIDDEN);
            gpu.matmulBf16(up, xb, w3, batchTokens, FFN, HIDDEN);
            Gpu.check(dive_h.dive_swiglu(gate, gate, up, (long) batchTokens * FFN, gpu.stream), "dive_swiglu");
            Gpu.check(dive_h.dive_channel_stats_update(mean, m2, sumSquares, count, gate, batchTokens, FFN, gpu.stream),
                    "dive_channel_stats_update");
            count += batchTokens;
        }
        gpu.sync();
        t.tokens += (double) REPS * batchTokens;
    }
}
