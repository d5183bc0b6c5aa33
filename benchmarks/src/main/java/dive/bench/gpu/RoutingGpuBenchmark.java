package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import org.openjdk.jmh.annotations.*;

import java.util.concurrent.TimeUnit;

/**
 * (b) Routing and permutation on the device, as the model's MoE block runs them: {@link CudaBackend#routeTopK}
 * (routerLogits (n, E) F32 → expertIds, expertWeights (n, k)) + {@link CudaBackend#sortByExpert} (offsets, rowToken,
 * slotRow) + {@link CudaBackend#gather} (xs (n·k, H) F32 = x[rowToken]), E = 8, k = 2, H = 2048, n = 8k to 64k
 * tokens; against a device-to-device {@link CudaBackend#copy} of as many bytes as the gather writes, measured in the
 * same run. Secondary result {@code gigabytes}: GB/s moved (bytes read + bytes written, each buffer counted once: the
 * least traffic the op needs). The report divides routing GB/s by copy GB/s (target ≥ 50 %).
 *
 * <p>Bytes of one routing op: logits n·E·4 read; ids + weights n·k·8 written; sort reads ids n·k·4, writes
 * offsets (E+1)·4, rowToken and slotRow n·k·8; gather reads rowToken n·k·4 and n·k rows of H·4, writes n·k·H·4.
 * A copy of B bytes moves 2·B.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@OperationsPerInvocation(RoutingGpuBenchmark.REPS)
public class RoutingGpuBenchmark {
    static final int REPS = 10, EXPERTS = 8, TOP_K = 2, HIDDEN = 2048;

    @Param({"8192", "32768", "65536"})
    public int tokens;

    private CudaBackend cuda;
    private DeviceTensor logits, x, expertIds, expertWeights, offsets, rowToken, slotRow, xs, copyDst;

    @AuxCounters(AuxCounters.Type.OPERATIONS)
    @State(Scope.Thread)
    public static class Bandwidth {
        /** GB (1e9 bytes) moved; JMH divides by the iteration's seconds: GB/s */
        public double gigabytes;

        @Setup(Level.Iteration)
        public void reset() { gigabytes = 0; }
    }

    @Setup(Level.Trial)
    public void setup() {
        String reason = GpuBench.unavailableReason();
        if (reason != null) {
            System.out.println(System.lineSeparator() + GpuBench.skipMessage("RoutingGpuBenchmark", reason));
            return;
        }
        cuda = GpuBench.open();
        long rows = (long) tokens * TOP_K;
        logits = GpuBench.f32(cuda, tokens * EXPERTS, 2f, 1);
        x = GpuBench.f32(cuda, tokens * HIDDEN, 1f, 2);
        expertIds = cuda.allocate(DType.I32, rows);
        expertWeights = cuda.allocate(DType.F32, rows);
        offsets = cuda.allocate(DType.I32, EXPERTS + 1);
        rowToken = cuda.allocate(DType.I32, rows);
        slotRow = cuda.allocate(DType.I32, rows);
        xs = cuda.allocate(DType.F32, rows * HIDDEN);
        copyDst = cuda.allocate(DType.F32, rows * HIDDEN);
        // one op up front: the permutation must be whole (offsets end at n·k; a bad id would be raised by this read)
        routeSortGather();
        int[] off = cuda.downloadInts(offsets);
        if (off[EXPERTS] != rows) throw new IllegalStateException("routing check: offsets[E] = " + off[EXPERTS] + ", expected " + rows);
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (cuda != null) cuda.close(); }

    /** least bytes one routing + permutation op reads and writes */
    static long routingBytes(long n) {
        long rows = n * TOP_K;
        return n * EXPERTS * 4 + rows * 8            // route_topk
                + rows * 4 + (EXPERTS + 1) * 4L + rows * 8   // sort_by_expert
                + rows * 4 + 2 * rows * HIDDEN * 4;  // gather (F32 rows)
    }

    private void routeSortGather() {
        cuda.routeTopK(expertIds, expertWeights, logits, tokens, EXPERTS, TOP_K);
        cuda.sortByExpert(offsets, rowToken, slotRow, expertIds, tokens, TOP_K, EXPERTS);
        cuda.gather(xs, x, rowToken, tokens * TOP_K, HIDDEN);
    }

    @Benchmark
    public void routeSortGather(Bandwidth bw) {
        if (cuda == null) return;
        for (int r = 0; r < REPS; r++) routeSortGather();
        cuda.synchronize();
        bw.gigabytes += REPS * routingBytes(tokens) / 1e9;
    }

    @Benchmark
    public void deviceCopy(Bandwidth bw) {
        if (cuda == null) return;
        long elements = (long) tokens * TOP_K * HIDDEN;
        for (int r = 0; r < REPS; r++) cuda.copy(copyDst, 0, xs, 0, elements);
        cuda.synchronize();
        bw.gigabytes += REPS * 2.0 * 4 * elements / 1e9;
    }
}
