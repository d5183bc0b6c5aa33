package dive.backend;

import dive.tensor.Tensor;

import java.lang.ref.Cleaner;
import java.util.Arrays;
import java.util.Collections;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * GEMM-ready (packed, F32-widened) copies of weights that cannot change: tensors over read-only memory,
 * such as memory-mapped checkpoints. Packing w costs a pass over it on every prefill matmul; for
 * immutable weights it is done once. Entries live as long as their Tensor (weak keys) and fit in a byte
 * budget, {@code -Ddive.packCache.bytes} (default 1 GiB; 0 turns the cache off). Writable tensors
 * (weights being trained) are never cached, so a cached copy is never stale.
 */
final class PackedWeights {
    private PackedWeights() {}

    static final long BUDGET_BYTES = Long.getLong("dive.packCache.bytes", 1L << 30);
    private static final Map<Tensor, float[]> CACHE = Collections.synchronizedMap(new WeakHashMap<>());
    private static final AtomicLong USED_BYTES = new AtomicLong();
    private static final Cleaner CLEANER = Cleaner.create();

    /** the packed copy of {@code w}, or null */
    static float[] lookup(Tensor w) {
        return w.data().isReadOnly() ? CACHE.get(w) : null;
    }

    /** keeps a copy of packed[0 .. size) for {@code w} when w is read-only and the budget allows */
    static void offer(Tensor w, float[] packed, int size) {
        if (!w.data().isReadOnly()) return;
        long bytes = 4L * size;
        if (USED_BYTES.addAndGet(bytes) > BUDGET_BYTES) {
            USED_BYTES.addAndGet(-bytes);
            return;
        }
        if (CACHE.putIfAbsent(w, Arrays.copyOf(packed, size)) == null) {
            CLEANER.register(w, () -> USED_BYTES.addAndGet(-bytes));
        } else {
            USED_BYTES.addAndGet(-bytes);
        }
    }

    static long usedBytes() { return USED_BYTES.get(); }
}
