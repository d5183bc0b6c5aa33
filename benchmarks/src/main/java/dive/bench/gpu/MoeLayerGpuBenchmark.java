package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.model.DenseFfn;
import dive.model.FeedForward;
import dive.model.MoeFfn;
import dive.tensor.DType;
import org.openjdk.jmh.annotations.*;

import java.util.concurrent.TimeUnit;

/**
 * (c) The whole MoE feed-forward layer as the model runs it on the GPU ({@link MoeFfn#forward} on {@link CudaBackend}:
 * router matmul → top-k → sort → grouped gate and up (x's rows gathered and rounded to BF16 once) → swiglu → grouped
 * down → combine, every step on the device) against a dense SwiGLU FFN of the same active width ({@link DenseFfn}:
 * three cuBLAS matmuls and a swiglu): hidden 2048, E = 8 experts of width 1024, top-2, so the dense FFN has width
 * 2·1024 = 2048; BF16 weights. Tokens 8192 and 16384; x random F32. Each invocation runs {@value #REPS} layers and
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

    private CudaBackend cuda;
    private MoeFfn moe;
    private DenseFfn dense;
    private FeedForward.Scratch moeScratch, denseScratch;
    private DeviceTensor x, y;

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
        String reason = GpuBench.unavailableReason();
        if (reason != null) {
            System.out.println(System.lineSeparator() + GpuBench.skipMessage("MoeLayerGpuBenchmark", reason));
            return;
        }
        cuda = GpuBench.open();
        moe = GpuBench.moe(HIDDEN, EXPERT_WIDTH, EXPERTS, TOP_K, 10);
        dense = GpuBench.dense(HIDDEN, TOP_K * EXPERT_WIDTH, 20);
        moeScratch = new FeedForward.Scratch(cuda);
        denseScratch = new FeedForward.Scratch(cuda);
        x = GpuBench.f32(cuda, tokens * HIDDEN, 1f, 1);
        y = cuda.allocate(DType.F32, (long) tokens * HIDDEN);
        // warm-up calls upload the weights into the backend's cache and size the scratch
        moe.forward(cuda, y, x, tokens, 0, moeScratch, null);
        dense.forward(cuda, y, x, tokens, 0, denseScratch, null);
        reportRouting();
    }

    /** the routing these timings see (the block's own steps, run once here): a whole permutation, the busiest expert */
    private void reportRouting() {
        long rows = (long) tokens * TOP_K;
        try (DeviceTensor logits = cuda.allocate(DType.F32, (long) tokens * EXPERTS); DeviceTensor ids = cuda.allocate(DType.I32, rows);
             DeviceTensor weights = cuda.allocate(DType.F32, rows); DeviceTensor offsets = cuda.allocate(DType.I32, EXPERTS + 1);
             DeviceTensor rowToken = cuda.allocate(DType.I32, rows); DeviceTensor slotRow = cuda.allocate(DType.I32, rows)) {
            cuda.matmul(logits, x, tokens, moe.router());
            cuda.routeTopK(ids, weights, logits, tokens, EXPERTS, TOP_K);
            cuda.sortByExpert(offsets, rowToken, slotRow, ids, tokens, TOP_K, EXPERTS);
            int[] off = cuda.downloadInts(offsets);
            int busiest = 0;
            for (int e = 0; e < EXPERTS; e++) busiest = Math.max(busiest, off[e + 1] - off[e]);
            if (off[EXPERTS] != rows) throw new IllegalStateException("MoE routing check: offsets[E] = " + off[EXPERTS] + ", expected " + rows);
            System.out.printf("MoE routing: busiest expert has %.1f %% of the %d rows (balanced: %.1f %%)%n",
                    100.0 * busiest / off[EXPERTS], off[EXPERTS], 100.0 / EXPERTS);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (cuda == null) return;
        moeScratch.close();
        denseScratch.close();
        cuda.close();
    }

    @Benchmark
    public void moeLayer(Tokens t) {
        if (cuda == null) return;
        for (int r = 0; r < REPS; r++) moe.forward(cuda, y, x, tokens, 0, moeScratch, null);
        cuda.synchronize();
        t.tokens += (double) REPS * tokens;
    }

    @Benchmark
    public void denseFfn(Tokens t) {
        if (cuda == null) return;
        for (int r = 0; r < REPS; r++) dense.forward(cuda, y, x, tokens, 0, denseScratch, null);
        cuda.synchronize();
        t.tokens += (double) REPS * tokens;
    }
}
