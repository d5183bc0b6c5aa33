package dive.bench;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.backend.VectorBackend;
import dive.model.DenseFfn;
import dive.model.FeedForward;
import dive.model.MoeFfn;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;

/**
 * The sparse MoE feed-forward block (router matmul, top-k routing, sort by expert, gather, grouped gate/up matmuls,
 * SwiGLU, grouped down matmul, weighted fixed-order sum) against a dense SwiGLU FFN of the same active width k·I_e,
 * on the same d. DIVE's shapes for a dense FFN of 1024 split into E = 8 experts: "k1" = I_e 512, top-1 (1/8 of the
 * experts active ≈ a dense FFN of 512), "k2" = I_e 256, top-2 (2/8 ≈ 512). d = 256, F32 weights off-heap and
 * read-only (as a memory-mapped checkpoint gives them, so both sides use the packed-weight cache).
 * tokens = 2048 (prefill: one op = one block over 2048 rows) and 1 (decode).
 * MoE cost / dense cost = (1/moe ops/s) / (1/dense ops/s).
 *
 * <p>Recorded 2026-11-28 on the 2-core AVX2 dev machine, <b>shared with 3 other jobs (load average 3.4–4.0)</b>, so
 * ±10–20 % noise and no gain from a second thread; command {@code ./dive jmh MoeBenchmark -p threads=1,2 -wi 2 -w 1 -i 4 -r 1 -f 1}
 * (ops/s, dense / MoE): 2048 tokens, 1 thread: k1 69.3 / 59.6 (MoE cost 1.16 × dense), k2 70.2 / 57.6 (1.22 ×);
 * decode (1 token), 1 thread: k1 39.0k / 40.1k (MoE 1.03 × dense tokens/s), k2 41.0k / 44.0k (1.07 ×); 2 threads:
 * k1 44.8k / 46.1k (1.03 ×), k2 47.9k / 42.5k (0.89 ×). Rerun on a quiet machine before quoting.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class MoeBenchmark {
    static final int HIDDEN = 256, EXPERTS = 8;

    /** k1: top-1 of 8 experts of width 512; k2: top-2 of 8 of width 256 */
    @Param({"k1", "k2"})
    public String moe;

    @Param({"2048", "1"})
    public int tokens;

    @Param({"2"})
    public int threads;

    private Arena arena;
    private Backend backend;
    private MoeFfn sparse;
    private DenseFfn dense;
    private DeviceTensor xn, out;
    private FeedForward.Scratch scratch;

    @Setup
    public void setup() {
        int k = moe.equals("k1") ? 1 : 2, expertWidth = moe.equals("k1") ? 512 : 256;
        arena = Arena.ofShared();
        long seed = 1;
        Tensor router = readOnly(BenchWeights.weight(arena, DType.F32, EXPERTS, HIDDEN, seed++));
        Tensor[] w1 = new Tensor[EXPERTS], w3 = new Tensor[EXPERTS], w2 = new Tensor[EXPERTS];
        for (int e = 0; e < EXPERTS; e++) {
            w1[e] = readOnly(BenchWeights.weight(arena, DType.F32, expertWidth, HIDDEN, seed++));
            w3[e] = readOnly(BenchWeights.weight(arena, DType.F32, expertWidth, HIDDEN, seed++));
            w2[e] = readOnly(BenchWeights.weight(arena, DType.F32, HIDDEN, expertWidth, seed++));
        }
        sparse = new MoeFfn(router, w1, w3, w2, null, k);
        int active = k * expertWidth;
        dense = new DenseFfn(readOnly(BenchWeights.weight(arena, DType.F32, active, HIDDEN, seed++)),
                readOnly(BenchWeights.weight(arena, DType.F32, active, HIDDEN, seed++)),
                readOnly(BenchWeights.weight(arena, DType.F32, HIDDEN, active, seed)));
        backend = new VectorBackend(threads);
        xn = backend.upload(BenchWeights.activations(tokens * HIDDEN, 99));
        out = backend.allocate(DType.F32, (long) tokens * HIDDEN);
        scratch = new FeedForward.Scratch(backend);
    }

    private static Tensor readOnly(Tensor t) { return new Tensor(t.name(), t.dtype(), t.shape(), t.data().asReadOnly()); }

    @TearDown
    public void tearDown() { arena.close(); }

    @Benchmark
    public DeviceTensor moeFfn() {
        sparse.forward(backend, out, xn, tokens, 0, scratch, null);
        return out;
    }

    @Benchmark
    public DeviceTensor denseFfn() {
        dense.forward(backend, out, xn, tokens, 0, scratch, null);
        return out;
    }
}
