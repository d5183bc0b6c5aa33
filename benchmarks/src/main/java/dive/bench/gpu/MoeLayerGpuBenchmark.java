package dive.bench.gpu;

import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * (c) The whole MoE feed-forward layer, device-resident ({@link DeviceMoeLayer}: router GEMM → route_topk → sort →
 * gather → grouped gate and up → swiglu → bf16 → grouped down → combine) against a dense SwiGLU FFN of the same
 * active width ({@link DeviceDenseFfn}, cuBLAS GEMMs): hidden 2048, E = 8 experts of width 1024, top-2, so the dense
 * FFN has width 2·1024 = 2048. Tokens 8192 and 16384; x random F32. Each invocation runs {@value #REPS} layers and
 * waits for the stream. Secondary result {@code tokens}: tokens/s. The report gives MoE time / dense time
 * (target ≤ 1.3).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@OperationsPerInvocation(MoeLayerGpuBenchmark.REPS)
public class MoeLayerGpuBenchmark {
    static final int REPS = 5, HIDDEN = 2048, EXPERTS = 8, EXPERT_WIDTH = 1024, TOP_K = 2;

    @Param({"8192", "16384"})
    public int tokens;

    private Gpu gpu;
    private DeviceMoeLayer moe;
    private DeviceDenseFfn dense;
    private MemorySegment x, y;

    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Tokens {
        /** tokens through the layer; JMH divides by the iteration's seconds: tokens/s */
        public double tokens;

        @Setup(Level.Iteration)
        public void reset() { tokens = 0; }
    }

    @Setup(Level.Trial)
    public void setup() {
        String reason = Gpu.unavailableReason(DeviceMoeLayer.KERNELS);
        if (reason != null) {
            System.out.println(System.lineSeparator() + Gpu.skipMessage("MoeLayerGpuBenchmark", reason));
            return;
        }
        gpu = Gpu.open();
        System.out.println("GPU: " + Gpu.describe());
        moe = new DeviceMoeLayer(gpu, HIDDEN, EXPERT_WIDTH, EXPERTS, TOP_K, tokens, 10);
        dense = new DeviceDenseFfn(gpu, HIDDEN, TOP_K * EXPERT_WIDTH, tokens, 20);
        x = gpu.randomF32((long) tokens * HIDDEN, 1f, 1, "x (n, H)");
        y = gpu.alloc((long) tokens * HIDDEN * 4, "y (n, H)");
        // the routing these timings saw: a whole permutation, and the share of the busiest expert
        moe.forward(y, x, tokens);
        int[] off = moe.lastOffsets();
        int busiest = 0;
        for (int e = 0; e < EXPERTS; e++) busiest = Math.max(busiest, off[e + 1] - off[e]);
        if (off[EXPERTS] != tokens * TOP_K || moe.lastBadAssignment() != -1)
            throw new IllegalStateException("MoE routing check: offsets[E] = " + off[EXPERTS] + ", expected " + tokens * TOP_K);
        System.out.printf("MoE routing: busiest expert has %.1f %% of the %d rows (balanced: %.1f %%)%n",
                100.0 * busiest / off[EXPERTS], off[EXPERTS], 100.0 / EXPERTS);
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (gpu != null) gpu.close(); }

    @Benchmark
    public void moeLayer(Tokens t) {
        if (gpu == null) return;
        for (int r = 0; r < REPS; r++) moe.forward(y, x, tokens);
        gpu.sync();
        t.tokens += (double) REPS * tokens;
    }

    @Benchmark
    public void denseFfn(Tokens t) {
        if (gpu == null) return;
        for (int r = 0; r < REPS; r++) dense.forward(y, x, tokens);
        gpu.sync();
        t.tokens += (double) REPS * tokens;
    }
}
