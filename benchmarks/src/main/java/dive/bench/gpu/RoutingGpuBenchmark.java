package dive.bench.gpu;

import dive.bindings.dive_h;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * (b) Routing and permutation on the device: dive_route_topk (routerLogits (n, E) F32 → expertIds, expertWeights
 * (n, k)) + dive_sort_by_expert (offsets, rowToken, slotRow) + dive_gather_rows (xs (n·k, H) bf16 = x[rowToken]),
 * E = 8, k = 2, H = 2048, n = 8k to 64k tokens; against a device-to-device copy (dive_memcpy_d2d) of as many bytes
 * as the gather writes, measured in the same run. Secondary result {@code gigabytes}: GB/s moved (bytes read +
 * bytes written, each buffer counted once: the least traffic the op needs). The report divides routing GB/s by
 * copy GB/s (target ≥ 50 %).
 *
 * <p>Bytes of one routing op: logits n·E·4 read; ids + weights n·k·8 written; sort reads ids n·k·4, writes
 * offsets (E+1)·4, rowToken and slotRow n·k·8; gather reads rowToken n·k·4 and n·k rows of H·2, writes n·k·H·2.
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

    private Gpu gpu;
    private MemorySegment logits, x, expertIds, expertWeights, offsets, rowToken, slotRow, badAssignment, xs, copyDst;

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
        String reason = Gpu.unavailableReason("dive_route_topk", "dive_sort_by_expert", "dive_gather_rows", "dive_memcpy_d2d");
        if (reason != null) {
            System.out.println(System.lineSeparator() + Gpu.skipMessage("RoutingGpuBenchmark", reason));
            return;
        }
        gpu = Gpu.open();
        System.out.println("GPU: " + Gpu.describe());
        long n = tokens, rows = n * TOP_K;
        logits = gpu.randomF32(n * EXPERTS, 2f, 1, "routerLogits (n, E)");
        x = gpu.randomBf16(n * HIDDEN, 1f, 2, "x (n, H) bf16");
        expertIds = gpu.alloc(rows * 4, "expertIds (n, k)");
        expertWeights = gpu.alloc(rows * 4, "expertWeights (n, k)");
        offsets = gpu.alloc((EXPERTS + 1) * 4L, "offsets (E + 1)");
        rowToken = gpu.alloc(rows * 4, "rowToken (n·k)");
        slotRow = gpu.alloc(rows * 4, "slotRow (n, k)");
        badAssignment = gpu.alloc(4, "badAssignment");
        xs = gpu.alloc(rows * HIDDEN * 2, "xs (n·k, H) bf16");
        copyDst = gpu.alloc(rows * HIDDEN * 2, "copy destination");
        // one op up front: the permutation must be whole (offsets end at n·k, no bad id)
        routeSortGather();
        int[] off = gpu.readInts(offsets, EXPERTS + 1, "offsets");
        int bad = gpu.readInts(badAssignment, 1, "badAssignment")[0];
        if (off[EXPERTS] != rows || bad != -1)
            throw new IllegalStateException("routing check: offsets[E] = " + off[EXPERTS] + " (expected " + rows + "), badAssignment = " + bad);
    }

    @TearDown(Level.Trial)
    public void tearDown() { if (gpu != null) gpu.close(); }

    /** least bytes one routing + permutation op reads and writes */
    static long routingBytes(long n) {
        long rows = n * TOP_K;
        return n * EXPERTS * 4 + rows * 8            // route_topk
                + rows * 4 + (EXPERTS + 1) * 4L + rows * 8   // sort_by_expert
                + rows * 4 + 2 * rows * HIDDEN * 2;  // gather_rows
    }

    private void routeSortGather() {
        MemorySegment s = gpu.stream;
        Gpu.check(dive_h.dive_route_topk(expertIds, expertWeights, logits, tokens, EXPERTS, TOP_K, s), "dive_route_topk");
        Gpu.check(dive_h.dive_sort_by_expert(offsets, rowToken, slotRow, badAssignment, expertIds, tokens, TOP_K, EXPERTS, s), "dive_sort_by_expert");
        Gpu.check(dive_h.dive_gather_rows(xs, x, rowToken, tokens * TOP_K, HIDDEN, 2, s), "dive_gather_rows");
    }

    @Benchmark
    public void routeSortGather(Bandwidth bw) {
        if (gpu == null) return;
        for (int r = 0; r < REPS; r++) routeSortGather();
        gpu.sync();
        bw.gigabytes += REPS * routingBytes(tokens) / 1e9;
    }

    @Benchmark
    public void deviceCopy(Bandwidth bw) {
        if (gpu == null) return;
        long bytes = (long) tokens * TOP_K * HIDDEN * 2;
        for (int r = 0; r < REPS; r++) Gpu.check(dive_h.dive_memcpy_d2d(copyDst, xs, bytes, gpu.stream), "dive_memcpy_d2d");
        gpu.sync();
        bw.gigabytes += REPS * 2.0 * bytes / 1e9;
    }
}
