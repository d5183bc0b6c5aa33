package dive.bench.gpu;

import dive.bindings.dive_h;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * (a) The grouped expert matmul on BF16 tensor cores (dive_grouped_matmul_bf16): out (rows, N) F32 = x (rows, K)
 * bf16 · w[e] (N, K)ᵀ for the rows each of E = 8 experts owns, with hidden K = 2048 and expert width N = 1024 or 2048
 * (the gate/up projection of a 1B-class model's experts), rows = 8192 or 16384 permuted token rows, routed
 * "balanced" (rows/E each) or "skewed" (expert e gets a share ∝ 1/(e+1): 37 %, 18 %, 12 %, … 4 %).
 * The baseline at equal FLOPs is {@link CublasGemmGpuBenchmark} (one cuBLAS GEMM of the same rows, N, K);
 * the report divides the two TFLOP/s (target ≥ 60 %).
 *
 * <p>Each invocation launches {@value #REPS} products back to back and then waits for the stream, so the one host
 * sync per invocation is amortised. Secondary result {@code teraFlop}: TFLOP/s (2·rows·N·K per product).
 * Without a GPU the setup prints a SKIPPED line and the method returns at once.
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

    private Gpu gpu;
    private MemorySegment x, w, out, offsets;

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
        String reason = Gpu.unavailableReason("dive_grouped_matmul_bf16");
        if (reason != null) {
            System.out.println(System.lineSeparator() + Gpu.skipMessage("GroupedMatmulGpuBenchmark", reason));
            return;
        }
        gpu = Gpu.open();
        System.out.println("GPU: " + Gpu.describe());
        x = gpu.randomBf16((long) rows * HIDDEN, 1f, 1, "x (rows, K)");
        w = gpu.randomBf16((long) EXPERTS * expertWidth * HIDDEN, (float) (1 / Math.sqrt(HIDDEN)), 2, "w (E, N, K)");
        out = gpu.alloc((long) rows * expertWidth * 4, "out (rows, N)");
        offsets = gpu.ints(expertOffsets(rows, EXPERTS, routing), "offsets (E + 1)");
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
    public void tearDown() { if (gpu != null) gpu.close(); }

    @Benchmark
    public void groupedMatmulBf16(Flops flops) {
        if (gpu == null) return;
        for (int r = 0; r < REPS; r++)
            Gpu.check(dive_h.dive_grouped_matmul_bf16(out, x, offsets, w, MemorySegment.NULL, EXPERTS, rows, expertWidth, HIDDEN, gpu.stream),
                    "dive_grouped_matmul_bf16");
        gpu.sync();
        flops.teraFlop += REPS * 2.0 * rows * expertWidth * HIDDEN / 1e12;
    }
}
