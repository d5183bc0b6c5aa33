package dive.io;

import dive.tensor.DType;
import dive.tensor.Tensor;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.List;
import java.util.stream.IntStream;
import java.util.stream.LongStream;

/**
 * Finds NaN and ±Infinity in F32, BF16 and F16 tensors in one read of their bytes: a value is not finite exactly when
 * its exponent bits are all ones, tested a vector of words at a time (Vector API); large tensors are split into chunks
 * scanned in parallel. Memory-bound: about as fast as the pages can be read.
 */
public final class NonFiniteScan {
    private NonFiniteScan() {}

    private static final VectorSpecies<Integer> INTS = IntVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> SHORTS = ShortVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    /** elements per parallel chunk */
    private static final long CHUNK = 1L << 20;

    /** the index of the first NaN or infinite element of {@code t} (F32, BF16 or F16), or −1 when all are finite */
    public static long firstNonFinite(Tensor t) {
        if (!t.dtype().isFloatWeight()) throw new IllegalArgumentException(t + ": not a float tensor (F32, BF16 or F16)");
        long n = t.numel();
        if (n <= CHUNK || !sharable(t.data())) return scan(t.data(), t.dtype(), 0, n);
        long chunks = (n + CHUNK - 1) / CHUNK;
        return LongStream.range(0, chunks).parallel()
                .map(c -> scan(t.data(), t.dtype(), c * CHUNK, Math.min(n, (c + 1) * CHUNK)))
                .filter(i -> i >= 0).min().orElse(-1);
    }

    /**
     * {@link #firstNonFinite(Tensor)} of each tensor → (tensors.size()) indices, −1 where a tensor is finite; the tensors
     * are scanned in parallel when their memory may be read from other threads (not a confined arena's)
     */
    public static long[] firstNonFinite(List<Tensor> tensors) {
        long[] first = new long[tensors.size()];
        boolean parallel = tensors.stream().allMatch(t -> sharable(t.data()));
        IntStream range = IntStream.range(0, first.length);
        (parallel ? range.parallel() : range).forEach(i -> first[i] = firstNonFinite(tensors.get(i)));
        return first;
    }

    /** a thread that never runs: what "any other thread" may access */
    private static final Thread OTHER = Thread.ofPlatform().unstarted(() -> {});

    private static boolean sharable(MemorySegment data) { return data.isAccessibleBy(OTHER); }

    /** the first non-finite index in elements [from, to), or −1 */
    private static long scan(MemorySegment data, DType dtype, long from, long to) {
        if (!vectorReadable(data)) return firstScalar(data, dtype, from, to);
        if (dtype == DType.F32) {
            int exp = 0x7f800000;
            long i = from, step = INTS.length();
            for (; i + step <= to; i += step) {
                IntVector v = IntVector.fromMemorySegment(INTS, data, i * 4, LE).and(exp);
                if (v.compare(VectorOperators.EQ, exp).anyTrue()) return firstScalar(data, dtype, i, i + step);
            }
            return firstScalar(data, dtype, i, to);
        }
        short exp = dtype == DType.BF16 ? (short) 0x7f80 : (short) 0x7c00;
        long i = from, step = SHORTS.length();
        for (; i + step <= to; i += step) {
            ShortVector v = ShortVector.fromMemorySegment(SHORTS, data, i * 2, LE).and(exp);
            if (v.compare(VectorOperators.EQ, exp).anyTrue()) return firstScalar(data, dtype, i, i + step);
        }
        return firstScalar(data, dtype, i, to);
    }

    /** the Vector API reads off-heap segments and heap segments over a byte[] */
    private static boolean vectorReadable(MemorySegment data) {
        return data.heapBase().map(base -> base instanceof byte[]).orElse(true);
    }

    private static long firstScalar(MemorySegment data, DType dtype, long from, long to) {
        for (long i = from; i < to; i++) {
            boolean bad = switch (dtype) {
                case F32 -> (data.get(Tensor.I32, i * 4) & 0x7f800000) == 0x7f800000;
                case BF16 -> (data.get(Tensor.I16, i * 2) & 0x7f80) == 0x7f80;
                default -> (data.get(Tensor.I16, i * 2) & 0x7c00) == 0x7c00;
            };
            if (bad) return i;
        }
        return -1;
    }
}
