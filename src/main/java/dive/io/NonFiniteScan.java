package dive.io;

import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.stream.IntStream;
import java.util.stream.LongStream;

/**
 * Finds NaN and ±Infinity in F32, BF16 and F16 tensors in one read of their bytes: a value is not finite exactly when
 * its exponent bits are all ones. The test runs on 64-bit words, two F32 or four 16-bit values at a time (a SIMD-within-
 * a-register zero-lane test, no Vector API, so it is fast from the first call of a fresh process); large tensors are
 * split into chunks scanned in parallel, and the tensors of a list are scanned in parallel.
 */
public final class NonFiniteScan {
    private NonFiniteScan() {}

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

    /** exponent masks of the lanes of a word, and the constants of the zero-lane test */
    private static final long EXP_F32 = 0x7f8000007f800000L, ONES_32 = 0x0000000100000001L, HIGH_32 = 0x8000000080000000L;
    private static final long EXP_BF16 = 0x7f807f807f807f80L, EXP_F16 = 0x7c007c007c007c00L,
            ONES_16 = 0x0001000100010001L, HIGH_16 = 0x8000800080008000L;

    /** the first non-finite index in elements [from, to), or −1 */
    private static long scan(MemorySegment data, DType dtype, long from, long to) {
        int width = dtype == DType.F32 ? 4 : 2;
        int perWord = 8 / width;
        long exp = dtype == DType.F32 ? EXP_F32 : dtype == DType.BF16 ? EXP_BF16 : EXP_F16;
        long ones = width == 4 ? ONES_32 : ONES_16, high = width == 4 ? HIGH_32 : HIGH_16;
        long i = from;
        // a lane of y is zero exactly when its exponent is all ones; the lanes' top bits are clear (sign masked off),
        // so (y − ones) & ~y & high is non-zero exactly when some lane is zero
        for (; i + perWord <= to; i += perWord) {
            long y = (data.get(Tensor.I64, i * width) & exp) ^ exp;
            if (((y - ones) & ~y & high) != 0) return firstScalar(data, dtype, i, i + perWord);
        }
        return firstScalar(data, dtype, i, to);
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
