package dive.bench;

import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

/** Seeded random weights off-heap (like a memory-mapped safetensors file) and activations for the benchmarks. */
final class BenchWeights {
    private BenchWeights() {}

    /** w (n, k) of the given dtype in native memory owned by {@code arena} */
    static Tensor weight(Arena arena, DType dtype, int n, int k, long seed) {
        Random r = new Random(seed);
        long count = (long) n * k;
        MemorySegment seg = arena.allocate(count * dtype.bytes, 64);
        for (long i = 0; i < count; i++) {
            float v = r.nextFloat() * 2 - 1;
            switch (dtype) {
                case F32 -> seg.setAtIndex(Tensor.F32, i, v);
                case BF16 -> seg.setAtIndex(Tensor.I16, i, DType.floatToBf16(v));
                case F16 -> seg.setAtIndex(Tensor.I16, i, Float.floatToFloat16(v));
                default -> throw new IllegalArgumentException("benchmark dtype " + dtype + ": expected F32, BF16 or F16");
            }
        }
        return new Tensor("w", dtype, new long[]{n, k}, seg);
    }

    static float[] activations(int count, long seed) {
        Random r = new Random(seed);
        float[] a = new float[count];
        for (int i = 0; i < count; i++) a[i] = r.nextFloat() * 2 - 1;
        return a;
    }

    /** "MxNxK" → {M, N, K} */
    static int[] shape(String mnk) {
        String[] p = mnk.split("x");
        if (p.length != 3) throw new IllegalArgumentException("shape '" + mnk + "': expected MxNxK, e.g. 512x1024x256");
        return new int[]{Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2])};
    }
}
