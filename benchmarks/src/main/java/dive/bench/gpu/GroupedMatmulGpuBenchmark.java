package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.util.concurrent.TimeUnit;

/**
 * (a) The grouped expert matmul as the model runs it ({@link CudaBackend#groupedMatmul}: the rows in use rounded from
 * F32 to BF16 on the device, then one launch of the grouped BF16 tensor-core kernel over every expert, the offsets
 * read on the device): out (rows, N) F32 = x (rows, K) · w[e] (N, K)ᵀ for the rows each of E = 8 experts owns, with
 * hidden K = 2048 and expert width N = 1024 or 2048 (the gate/up projection of a 1B-class model's experts), rows =
 * 8192 or 16384 permuted token rows, routed "balanced" (rows/E each) or "skewed" (expert e gets a share ∝ 1/(e+1):
 * 37 %, 18 %, 12 %, … 4 %). The baseline at equal FLOPs is {@link CublasGemmGpuBenchmark} (one dense
 * {@link CudaBackend#matmul} of the same rows, N, K: the same BF16 conversion, then cuBLAS); the report divides the
 * two TFLOP/s (target ≥ 60 %).
 *
 * <p>Each invocation queues {@value #REPS} products back to back and then waits for the stream, so the one host sync
 * per invocation is amortised. Secondary result {@code teraFlop}: TFLOP/s (2·rows·N·K per product). Without a GPU
 * the setup prints a SKIPPED line and the method returns at once.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@OperationsPerInvocation(GroupedMatmulGpuBenchmark.REPS)
public class GroupedMatmulGpuBenchmark {
    static final int REPS = 10, EXPERTS = 8, HIDDEN = 2048;

    @Param({"8192", "16384"})
    public int rows;

    @Param({"1024", "2048"})
    public int expertWidth;

    @Param({"balanced", "skewed"})
    public String routing;

    private CudaBackend cuda;
    private DeviceTensor x, out, offsets;
    private Tensor[] w;

    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Flops {
        /** TFLOP done; JMH divides by the iteration's seconds: TFLOP/s */
        public double teraFlop;

        @Setup(Level.Iteration)
        public void reset() { teraFlop = 0; }
    }

    @Setup(Level.Trial)
    public void setup() {
        String reason = GpuBench.unavailableReason();
        if (reason != null) {
            System.out.println(System.lineSeparator() + GpuBench.skipMessage("GroupedMatmulGpuBenchmark", reason));
            return;
        }
        cuda = GpuBench.open();
        x = GpuBench.f32(cuda, rows * HIDDEN, 1f, 1);
        w = new Tensor[EXPERTS];
        for (int e = 0; e < EXPERTS; e++) w[e] = GpuBench.bf16("w" + e, (float) (1 / Math.sqrt(HIDDEN)), 2 + e, expertWidth, HIDDEN);
        out = cuda.allocate(dive.tensor.DType.F32, (long) rows * expertWidth);
        offsets = cuda.upload(expertOffsets(rows, EXPERTS, routing));
        cuda.groupedMatmul(out, x, offsets, w, null);   // uploads the weights into the backend's cache
        cuda.synchronize();
    }

    /**
     * offsets (E + 1) of rows split over E experts: "balanced" rows/E each (the remainder to the first experts),
     * "skewed" shares ∝ 1/(e+1) (the rounding remainder to expert 0)
     */
    static int[] expertOffsets(int rows, int experts, String routing) {
        int[] count = new int[experts];
        switch (routing) {
            case "balanced" -> {
                for (int e = 0; e < experts; e++) count[e] = rows / experts + (e < rows % experts ? 1 : 0);
            }
            case "skewed" -> {
                double harmonic = 0;
                for (int e = 0; e < experts; e++) harmonic += 1.0 / (e + 1);
                int assigned = 0;
                for (int e = 0; e < experts; e++) assigned += count[e] = (int) (rows / (harmonic * (e + 1)));
                count[0] += rows - assigned;
            }
            default -> throw new IllegalArgumentException("routing '" + routing + "': expected balanced or skewed");
        }
        int[] offsets = new int[experts + 1];
        for (int e = 0; e < experts; e++) offsets[e + 1] = offsets[e] + count[e];
        return offsets;
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (cuda != null) cuda.close(); }

    @Benchmark
    public void groupedMatmulBf16(Flops flops) {
        if (cuda == null) return;
        for (int r = 0; r < REPS; r++) cuda.groupedMatmul(out, x, offsets, w, null);
        cuda.synchronize();
        flops.teraFlop += REPS * 2.0 * rows * expertWidth * HIDDEN / 1e12;
    }
}
