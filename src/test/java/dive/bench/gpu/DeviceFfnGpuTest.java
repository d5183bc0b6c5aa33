package dive.bench.gpu;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The benchmarks' device pipelines compute what they claim: {@link DeviceMoeLayer} and {@link DeviceDenseFfn} on small
 * random shapes against plain double-precision loops written here (the same bf16 roundings of x and h, softmax over
 * the top-k logits, the weighted sum). Needs a GPU (tag "gpu"); skipped, saying why, elsewhere.
 */
@Tag("gpu")
class DeviceFfnGpuTest {
    static final int H = 64, I = 32, E = 4, K = 2, N = 50;

    @BeforeAll
    static void needsGpu() {
        String reason = Gpu.unavailableReason(DeviceMoeLayer.KERNELS);
        assumeTrue(reason == null, () -> "no usable GPU: " + reason);
    }

    private static short[] bf16(int count, double scale, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        short[] v = new short[count];
        for (int i = 0; i < count; i++) v[i] = Gpu.toBf16((float) ((r.nextDouble() * 2 - 1) * scale));
        return v;
    }

    private static float[] f32(int count, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[count];
        for (int i = 0; i < count; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return v;
    }

    private static MemorySegment upload(Gpu gpu, Arena arena, short[] v, String name) {
        return gpu.upload(arena.allocateFrom(ValueLayout.JAVA_SHORT, v), name);
    }

    private static double roundBf16(double v) { return Gpu.fromBf16(Gpu.toBf16((float) v)); }

    /** Σ_j a[aOff + j] · w[wOff + j], j < len, a already rounded to bf16 values, w bf16 bits */
    private static double dot(double[] a, int aOff, short[] w, int wOff, int len) {
        double s = 0;
        for (int j = 0; j < len; j++) s += a[aOff + j] * Gpu.fromBf16(w[wOff + j]);
        return s;
    }

    private static double silu(double g) { return g / (1 + Math.exp(-g)); }

    private static void assertClose(double[] expected, float[] actual, String what) {
        double maxAbs = 0;
        for (double v : expected) maxAbs = Math.max(maxAbs, Math.abs(v));
        assertTrue(maxAbs > 1e-3, what + ": reference is all near zero, the check would be empty");
        for (int i = 0; i < expected.length; i++)
            assertEquals(expected[i], actual[i], 1e-2 * maxAbs, what + " element " + i);
    }

    @Test
    void moeLayerMatchesPlainLoops() {
        short[] router = bf16(E * H, 0.5, 1), w1 = bf16(E * I * H, 0.2, 2), w3 = bf16(E * I * H, 0.2, 3), w2 = bf16(E * H * I, 0.3, 4);
        float[] x = f32(N * H, 5);
        try (Gpu gpu = Gpu.open(); Arena arena = Arena.ofConfined()) {
            DeviceMoeLayer moe = new DeviceMoeLayer(gpu, H, I, E, K, N, upload(gpu, arena, router, "router"),
                    upload(gpu, arena, w1, "w1"), upload(gpu, arena, w3, "w3"), upload(gpu, arena, w2, "w2"));
            MemorySegment dx = gpu.upload(arena.allocateFrom(ValueLayout.JAVA_FLOAT, x), "x");
            MemorySegment dy = gpu.alloc((long) N * H * 4, "y");
            moe.forward(dy, dx, N);
            float[] y = gpu.readFloats(dy, (long) N * H, "y");
            int[] deviceIds = moe.lastExpertIds(N);
            int[] offsets = moe.lastOffsets();
            assertEquals(-1, moe.lastBadAssignment());

            double[] xb = new double[N * H];
            for (int i = 0; i < xb.length; i++) xb[i] = roundBf16(x[i]);
            double[] expected = new double[N * H];
            int[] count = new int[E];
            for (int t = 0; t < N; t++) {
                double[] logit = new double[E];
                for (int e = 0; e < E; e++) logit[e] = dot(xb, t * H, router, e * H, H);
                // top-k by the reference; where two logits are too close to order in F32, take the device's order
                int[] ids = new int[K];
                boolean[] taken = new boolean[E];
                for (int s = 0; s < K; s++) {
                    int best = -1;
                    for (int e = 0; e < E; e++) if (!taken[e] && (best < 0 || logit[e] > logit[best])) best = e;
                    ids[s] = best;
                    taken[best] = true;
                }
                double margin = Double.MAX_VALUE;
                for (int a = 0; a < E; a++) for (int b = a + 1; b < E; b++) margin = Math.min(margin, Math.abs(logit[a] - logit[b]));
                for (int s = 0; s < K; s++) {
                    if (margin > 1e-3) assertEquals(ids[s], deviceIds[t * K + s], "token " + t + " slot " + s + " expert");
                    else ids[s] = deviceIds[t * K + s];
                }
                double max = logit[ids[0]], z = 0;
                for (int s = 0; s < K; s++) z += Math.exp(logit[ids[s]] - max);
                for (int s = 0; s < K; s++) {
                    int e = ids[s];
                    count[e]++;
                    double weight = Math.exp(logit[e] - max) / z;
                    double[] hb = new double[I];
                    for (int j = 0; j < I; j++) {
                        double gate = dot(xb, t * H, w1, (e * I + j) * H, H), up = dot(xb, t * H, w3, (e * I + j) * H, H);
                        hb[j] = roundBf16((float) (silu(gate) * up));
                    }
                    for (int h = 0; h < H; h++) expected[t * H + h] += weight * dot(hb, 0, w2, (e * H + h) * I, I);
                }
            }
            for (int e = 0; e < E; e++) assertEquals(count[e], offsets[e + 1] - offsets[e], "rows of expert " + e);
            assertClose(expected, y, "MoE y");
        }
    }

    @Test
    void denseFfnMatchesPlainLoops() {
        int width = 48;
        float[] x = f32(N * H, 7);
        try (Gpu gpu = Gpu.open(); Arena arena = Arena.ofConfined()) {
            DeviceDenseFfn ffn = new DeviceDenseFfn(gpu, H, width, N, 11);
            MemorySegment dx = gpu.upload(arena.allocateFrom(ValueLayout.JAVA_FLOAT, x), "x");
            MemorySegment dy = gpu.alloc((long) N * H * 4, "y");
            ffn.forward(dy, dx, N);
            float[] y = gpu.readFloats(dy, (long) N * H, "y");
            // the weights DeviceDenseFfn drew, read back as bf16 bits
            short[] w1 = readBf16(gpu, ffn.w1, width * H), w3 = readBf16(gpu, ffn.w3, width * H), w2 = readBf16(gpu, ffn.w2, H * width);
            double[] expected = new double[N * H];
            for (int t = 0; t < N; t++) {
                double[] xb = new double[H];
                for (int h = 0; h < H; h++) xb[h] = roundBf16(x[t * H + h]);
                double[] hb = new double[width];
                for (int j = 0; j < width; j++) hb[j] = roundBf16((float) (silu(dot(xb, 0, w1, j * H, H)) * dot(xb, 0, w3, j * H, H)));
                for (int h = 0; h < H; h++) expected[t * H + h] = dot(hb, 0, w2, h * width, width);
            }
            assertClose(expected, y, "dense y");
        }
    }

    private static short[] readBf16(Gpu gpu, MemorySegment d, int count) {
        int[] words = gpu.readInts(d, count / 2, "weights");
        short[] v = new short[count];
        for (int i = 0; i < count / 2; i++) {
            v[2 * i] = (short) words[i];          // little-endian: the lower half is the first bf16
            v[2 * i + 1] = (short) (words[i] >>> 16);
        }
        return v;
    }
}
