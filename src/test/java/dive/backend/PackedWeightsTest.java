package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The packed-weight cache may only serve small weights that cannot change, and must serve them correctly: a cached
 * (packed whole) weight gives the same bits as the same weight packed panel by panel.
 */
class PackedWeightsTest {
    static final int M = 16, N = 40, K = 24;

    static float[] random(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
        return x;
    }

    static Tensor offHeap(float[] w, int n, int k, Arena arena) {
        MemorySegment seg = arena.allocate(4L * w.length, 64);
        MemorySegment.copy(w, 0, seg, Tensor.F32, 0, w.length);
        return new Tensor("w", DType.F32, new long[] {n, k}, seg);
    }

    static Tensor readOnly(Tensor w) { return new Tensor(w.name(), w.dtype(), w.shape(), w.data().asReadOnly()); }

    static void assertClose(float[] want, float[] got) {
        for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-4f * (1 + Math.abs(want[i])), "element " + i);
    }

    @Test
    void writableWeightsAreRepackedAfterAChange() {
        var vector = new VectorBackend(2);
        var scalar = new ScalarBackend();
        float[] x = random(M * K, 1);
        try (Arena arena = Arena.ofConfined()) {
            Tensor w = offHeap(random(N * K, 2), N, K, arena);
            float[] out = new float[M * N], want = new float[M * N];
            vector.matmul(out, x, M, w);
            w.data().setAtIndex(Tensor.F32, 5, 100f);   // training updates weights in place
            vector.matmul(out, x, M, w);
            scalar.matmul(want, x, M, w);
            assertClose(want, out);
            assertNull(PackedWeights.lookup(w));
        }
    }

    @Test
    void smallReadOnlyWeightsArePackedOnceAndGiveTheSameBits() {
        var vector = new VectorBackend(2);
        var scalar = new ScalarBackend();
        float[] x = random(M * K, 3);
        try (Arena arena = Arena.ofConfined()) {
            Tensor writable = offHeap(random(N * K, 4), N, K, arena);
            Tensor w = readOnly(writable);
            float[] first = new float[M * N], second = new float[M * N], perPanel = new float[M * N], want = new float[M * N];
            vector.matmul(first, x, M, w);
            assertNotNull(PackedWeights.lookup(w), "small read-only weights are cached");
            vector.matmul(second, x, M, w);
            vector.matmul(perPanel, x, M, writable);
            scalar.matmul(want, x, M, w);
            assertArrayEquals(first, second);
            assertArrayEquals(perPanel, second, "packed whole (cached) and panel by panel: the same bits");
            assertClose(want, second);
        }
    }

    @Test
    void bigReadOnlyWeightsAreNotCached() {
        var vector = new VectorBackend(2);
        int n = 1025, k = 1024; // one row over PackedWeights.MAX_ELEMENTS
        assertTrue((long) n * k > PackedWeights.MAX_ELEMENTS);
        float[] x = random(4 * k, 5);
        try (Arena arena = Arena.ofShared()) { // pool threads read w
            Tensor writable = offHeap(random(n * k, 6), n, k, arena);
            Tensor w = readOnly(writable);
            float[] out = new float[4 * n], perPanel = new float[4 * n];
            long before = PackedWeights.usedBytes();
            vector.matmul(out, x, 4, w);
            assertNull(PackedWeights.lookup(w), "big weights are packed panel by panel, never cached");
            assertEquals(before, PackedWeights.usedBytes());
            vector.matmul(perPanel, x, 4, writable);
            assertArrayEquals(perPanel, out);
        }
    }
}
