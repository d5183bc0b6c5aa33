package dive.backend;

import java.lang.ref.SoftReference;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Freed large arrays of a CPU backend, kept for the next allocation of the same type and length. A training step
 * allocates the same activation sizes every step (megabytes each; at soft routing every expert's rows), so after the
 * first step its tensors come from here instead of the garbage collector: without the pool, each step's large arrays
 * were new humongous objects, and a heap sized to the step's live set spent more time collecting than computing.
 * Arrays are held softly: the collector takes them back before the heap runs out. A reused array is zeroed, as a new
 * one would be. Small arrays (under {@value #MIN_LENGTH} elements) are not pooled: the JVM allocates those cheaply.
 * The pool also counts the bytes of the backend's allocated, not yet freed tensors (live and peak), which memory plans
 * are checked against.
 */
final class HostPool {
    static final int MIN_LENGTH = 1 << 16;
    /** per type and length, at most this many freed arrays (more would be held only until the collector wants them) */
    private static final int MAX_PER_LENGTH = 64;

    private final Map<Long, ArrayDeque<SoftReference<Object>>> free = new HashMap<>();

    private final java.util.concurrent.atomic.AtomicLong live = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong peak = new java.util.concurrent.atomic.AtomicLong();

    static boolean pooled(int length) { return length >= MIN_LENGTH; }

    void allocated(long bytes) { peak.accumulateAndGet(live.addAndGet(bytes), Math::max); }

    void freed(long bytes) { live.addAndGet(-bytes); }

    long liveBytes() { return live.get(); }

    /** the most bytes live at once since the last {@link #resetPeak} */
    long peakBytes() { return peak.get(); }

    void resetPeak() { peak.set(live.get()); }

    float[] floats(int length) {
        float[] a = pooled(length) ? (float[]) take(0, length) : null;
        if (a == null) return new float[length];
        Arrays.fill(a, 0f);
        return a;
    }

    int[] ints(int length) {
        int[] a = pooled(length) ? (int[]) take(1, length) : null;
        if (a == null) return new int[length];
        Arrays.fill(a, 0);
        return a;
    }

    double[] doubles(int length) {
        double[] a = pooled(length) ? (double[]) take(2, length) : null;
        if (a == null) return new double[length];
        Arrays.fill(a, 0.0);
        return a;
    }

    /** takes back a freed array (float[], int[] or double[]) */
    synchronized void give(Object array) {
        int length = java.lang.reflect.Array.getLength(array);
        if (!pooled(length)) return;
        ArrayDeque<SoftReference<Object>> q = free.computeIfAbsent(key(type(array), length), k -> new ArrayDeque<>());
        if (q.size() < MAX_PER_LENGTH) q.push(new SoftReference<>(array));
    }

    private synchronized Object take(int type, int length) {
        ArrayDeque<SoftReference<Object>> q = free.get(key(type, length));
        while (q != null && !q.isEmpty()) {
            Object a = q.pop().get();
            if (a != null) return a;
        }
        return null;
    }

    private static int type(Object array) { return array instanceof float[] ? 0 : array instanceof int[] ? 1 : 2; }

    private static long key(int type, int length) { return ((long) type << 32) | length; }
}
