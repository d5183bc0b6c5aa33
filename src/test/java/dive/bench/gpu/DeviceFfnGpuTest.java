package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.backend.ScalarBackend;
import dive.model.DenseFfn;
import dive.model.FeedForward;
import dive.model.MoeFfn;
import dive.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The GPU benchmarks measure what they claim: the blocks {@link GpuBench} builds (random BF16 weights, the shapes of
 * the MoE and dense benchmarks, scaled down) run on {@link CudaBackend} as on the CPU reference, and a forward moves
 * nothing between the host and the device (the benchmarks time device work only). Needs a GPU (tag "gpu"); skipped,
 * saying why, elsewhere. The op-by-op comparison is {@code CudaBackendTest}'s.
 */
@Tag("gpu")
class DeviceFfnGpuTest {
    static final int H = 64, I = 32, E = 4, K = 2, N = 50;
    private static CudaBackend cuda;
    private static final ScalarBackend cpu = new ScalarBackend();

    @BeforeAll
    static void needsGpu() {
        String reason = GpuBench.unavailableReason();
        assumeTrue(reason == null, () -> "no usable GPU: " + reason);
        cuda = new CudaBackend(new ScalarBackend());
    }

    @AfterAll
    static void close() {
        if (cuda != null) cuda.close();
    }

    private static float[] f32(int count, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[count];
        for (int i = 0; i < count; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return v;
    }

    /** within 2·10⁻² of the largest CPU value: the GPU rounds activations to BF16 before each BF16 matmul */
    private static void assertClose(float[] want, float[] got, String what) {
        double max = 0;
        for (float v : want) max = Math.max(max, Math.abs(v));
        assertTrue(max > 1e-3, what + ": reference is all near zero, the check would be empty");
        for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 2e-2 * max, what + " element " + i);
    }

    private static float[] forward(FeedForward f, dive.backend.Backend b, float[] x) {
        try (FeedForward.Scratch scratch = new FeedForward.Scratch(b); DeviceTensor xt = b.upload(x);
             DeviceTensor y = b.allocate(DType.F32, (long) N * H)) {
            f.forward(b, y, xt, N, 0, scratch, null);
            f.forward(b, y, xt, N, 0, scratch, null);           // the second call: weights cached, scratch sized
            var before = b.transfers().snapshot();
            f.forward(b, y, xt, N, 0, scratch, null);
            var moved = b.transfers().snapshot().since(before);
            assertEquals(0, moved.toDevice() + moved.toHost(), f + " on " + b.name() + " moved " + moved);
            return b.download(y);
        }
    }

    @Test
    void moeBlockOfTheBenchmarkMatchesTheCpu() {
        MoeFfn moe = GpuBench.moe(H, I, E, K, 10);
        float[] x = f32(N * H, 5);
        float[] want = forward(moe, cpu, x), got = forward(moe, cuda, x);
        // the router is BF16 and the GPU rounds x to BF16 first, so its logits differ from the CPU's by ~1e-2: a token
        // whose k-th and (k+1)-th logits are closer than that may pick another expert. Compared: the tokens whose top-k
        // set is clear (every token's output, when the set is the same, agrees to BF16 rounding)
        float[] logits;
        try (DeviceTensor xt = cpu.upload(x); DeviceTensor z = cpu.allocate(DType.F32, (long) N * E)) {
            cpu.matmul(z, xt, N, moe.router());
            logits = cpu.download(z);
        }
        double max = 0;
        for (float v : want) max = Math.max(max, Math.abs(v));
        int compared = 0;
        for (int t = 0; t < N; t++) {
            float[] row = java.util.Arrays.copyOfRange(logits, t * E, (t + 1) * E);
            java.util.Arrays.sort(row);
            if (row[E - K] - row[E - K - 1] < 0.05f) continue;   // ascending: the k-th largest minus the next
            compared++;
            for (int i = t * H; i < (t + 1) * H; i++) assertEquals(want[i], got[i], 2e-2 * max, "MoE y token " + t + " element " + i);
        }
        assertTrue(compared >= N / 2, "only " + compared + " of " + N + " tokens had a clear top-k");
    }

    @Test
    void denseBlockOfTheBenchmarkMatchesTheCpu() {
        DenseFfn dense = GpuBench.dense(H, 48, 11);
        float[] x = f32(N * H, 7);
        assertClose(forward(dense, cpu, x), forward(dense, cuda, x), "dense y");
    }
}
