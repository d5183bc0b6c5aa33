package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The packed-weight cache may only serve weights that cannot change, and must serve them correctly. */
class PackedWeightsTest {
    static final int M = 16, N = 40, K = 24;

    static float[] random(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
        return x;
    }

    static Tensor offHeap(float[] w, Arena arena) {
        MemorySegment seg = arena.allocate(4L * w.length, 64);
        MemorySegment.copy(w, 0, seg, Tensor.F32, 0, w.length);
        return new Tensor("w", DType.F32, new long[] {N, K}, seg);
    }

    static void assertClose(float[] want, float[] got) {
        for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-4f * (1 + Math.abs(want[i])), "element " + i);
    }

    @Test
    void writableWeightsAreRepackedAfterAChange() {
        var vector = new VectorBackend(2);
        var scalar = new ScalarBackend();
        float[] x = random(M * K, 1);
        try (Arena arena = Arena.ofConfined()) {
            Tensor w = offHeap(random(N * K, 2), arena);
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
    void readOnlyWeightsArePackedOnceAndGiveTheSameResult() {
        var vector = new VectorBackend(2);
        var scalar = new ScalarBackend();
        float[] x = random(M * K, 3);
        try (Arena arena = Arena.ofConfined()) {
            Tensor writable = offHeap(random(N * K, 4), arena);
            Tensor w = new Tensor("w", DType.F32, new long[] {N, K}, writable.data().asReadOnly());
            float[] first = new float[M * N], second = new float[M * N], want = new float[M * N];
            vector.matmul(first, x, M, w);
            assertNotNull(PackedWeights.lookup(w), "read-only weights are cached");
            vector.matmul(second, x, M, w);
            scalar.matmul(want, x, M, w);
            assertArrayEquals(first, second);
            assertClose(want, second);
        }
    }
}
