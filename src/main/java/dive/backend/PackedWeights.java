package dive.backend;

import dive.tensor.Tensor;

import java.lang.ref.Cleaner;
import java.util.Collections;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * GEMM-ready (packed, F32-widened) copies of small weights that cannot change: tensors over read-only memory, such as
 * memory-mapped checkpoints, of at most {@value #MAX_ELEMENTS} elements. The GEMM packs every other weight one panel
 * at a time as it goes ({@link VectorBackend}), a pass over w per call that matters only where few rows of x share it
 * (a short prompt, an MoE expert's share of one: ~30 % of an F32 256 × 256 matmul at 32 rows); for a small immutable
 * w it is done once. Big matrices are never cached: their per-panel pass is cheap next to the work of 100+ rows, and a
 * whole F32 copy costs heap (4 bytes per element, twice a BF16 checkpoint's) and is slower to stream from memory than
 * the BF16 original (1.1B shapes, 128 rows: about half the GFLOP/s).
 * Entries live as long as their Tensor (weak keys) and fit in a byte budget, {@code -Ddive.packCache.bytes} (default
 * 256 MiB; 0 turns the cache off). Writable tensors (weights being trained) are never cached, so a cached copy is
 * never stale.
 */
final class PackedWeights {
    private PackedWeights() {}

    static final long BUDGET_BYTES = Long.getLong("dive.packCache.bytes", 256L << 20);
    /** the largest weight cached, in elements (4 MiB packed) */
    static final long MAX_ELEMENTS = 1L << 20;
    private static final Map<Tensor, float[]> CACHE = Collections.synchronizedMap(new WeakHashMap<>());
    private static final AtomicLong USED_BYTES = new AtomicLong();
    private static final Cleaner CLEANER = Cleaner.create();

    /** whether w may be cached: read-only, small, and (for a new entry) within the budget now */
    static boolean cacheable(Tensor w, long packedFloats) {
        return w.data().isReadOnly() && w.numel() <= MAX_ELEMENTS && USED_BYTES.get() + 4 * packedFloats <= BUDGET_BYTES;
    }

    /** the packed copy of {@code w}, or null */
    static float[] lookup(Tensor w) {
        return w.data().isReadOnly() ? CACHE.get(w) : null;
    }

    /** keeps {@code packed} (not copied) as w's packed copy when w is cacheable and the budget allows */
    static void offer(Tensor w, float[] packed) {
        if (!w.data().isReadOnly() || w.numel() > MAX_ELEMENTS) return;
        long bytes = 4L * packed.length;
        if (USED_BYTES.addAndGet(bytes) > BUDGET_BYTES) {
            USED_BYTES.addAndGet(-bytes);
            return;
        }
        if (CACHE.putIfAbsent(w, packed) == null) {
            CLEANER.register(w, () -> USED_BYTES.addAndGet(-bytes));
        } else {
            USED_BYTES.addAndGet(-bytes);
        }
    }

    static long usedBytes() { return USED_BYTES.get(); }
}
