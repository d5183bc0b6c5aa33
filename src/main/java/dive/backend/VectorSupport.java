package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.IntConsumer;

/**
 * What the kernels of {@link VectorBackend} share: the vector species, the deterministic lane sum, BF16/F16 widening,
 * the weight dtype check, the per-thread scratch buffers, and the pool plumbing ({@link Workers}: a backend's pool and
 * its parallel loop). The counterpart of native/src/common.cuh.
 */
final class VectorSupport {
    private VectorSupport() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Integer> I = F.withLanes(int.class);
    /** shorts with as many lanes as F: widened 1:1 by S2I */
    static final VectorSpecies<Short> SH = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /** multiply-adds below which GEMM and attention stay on the calling thread */
    static final long PARALLEL_MIN_FMAS = 1L << 18;

    // ---------------------------------------------------------------- parallel loop

    /** a backend's threads: its fork-join pool (the shared one for the default count) and the parallel loop over it */
    static final class Workers {
        /** one thread per available processor, on a pool shared by every backend of that count */
        private static final class Default {
            static final int THREADS = Runtime.getRuntime().availableProcessors();
            static final Workers WORKERS = new Workers(THREADS, new ForkJoinPool(THREADS));
        }

        final int threads;
        private final ForkJoinPool pool;

        private Workers(int threads, ForkJoinPool pool) {
            this.threads = threads;
            this.pool = pool;
        }

        /** the shared pool of {@link Runtime#availableProcessors()} threads */
        static Workers shared() { return Default.WORKERS; }

        /** {@code threads} threads: the shared pool for the default count, else a pool of its own */
        static Workers of(int threads) {
            return threads == Default.THREADS ? Default.WORKERS : new Workers(threads, new ForkJoinPool(threads));
        }

        /**
         * body(i) for i in [0, tasks), returning when all are done. The calling thread works too: it and up to
         * threads−1 helpers claim indices from a shared counter, and the caller then waits only for indices a
         * helper has claimed and is running. Helpers are the backend's own persistent threads ({@link Crew}), which
         * spin for a while after each loop and so pick up the next one within a fraction of a microsecond: a decode
         * step runs dozens of loops of a few µs each. Which index computes which outputs depends on the caller's
         * split only, never on the thread that runs it, so results are the same for every thread count. A call made
         * while the crew is busy (nested in a body, or from a second thread) hands its indices to the fork-join pool
         * instead: a helper that wakes up late finds nothing left and returns, and nested calls cannot deadlock.
         */
        void parallelFor(int tasks, boolean parallel, IntConsumer body) {
            int helpers = parallel ? Math.min(threads, tasks) - 1 : 0;
            if (helpers <= 0) {
                for (int i = 0; i < tasks; i++) body.accept(i);
                return;
            }
            Crew c = crew();
            if (c.tryRun(tasks, body)) return;
            AtomicInteger next = new AtomicInteger();
            CountDownLatch unfinished = new CountDownLatch(tasks);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Runnable drain = () -> {
                for (int i; (i = next.getAndIncrement()) < tasks; ) {
                    try {
                        body.accept(i);
                    } catch (Throwable t) {
                        failure.compareAndSet(null, t);
                    } finally {
                        unfinished.countDown();
                    }
                }
            };
            for (int h = 0; h < helpers; h++) pool.execute(drain);
            drain.run();
            boolean interrupted = false;
            while (true) {
                try {
                    unfinished.await();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) Thread.currentThread().interrupt();
            rethrow(failure.get());
        }

        private volatile Crew crew;

        /**
         * whether loops of a few µs pay off in parallel now: more than one thread and the crew not backing off after a
         * stall (see {@link Crew#STALL_NANOS}); callers use it to lower their size threshold
         */
        boolean quickLoops() { return threads > 1 && crew().healthy(); }

        private Crew crew() {
            Crew c = crew;
            if (c != null) return c;
            synchronized (this) {
                if (crew == null) crew = new Crew(threads - 1);
                return crew;
            }
        }

        private static void rethrow(Throwable t) {
            if (t instanceof RuntimeException e) throw e;
            if (t instanceof Error e) throw e;
            if (t != null) throw new IllegalStateException(t);
        }
    }

    /**
     * Persistent helper threads for one {@link Workers}: a loop is published as a {@link Loop} in a volatile field; each
     * helper spins on that field for {@link #SPIN_NANOS} after its last loop (then parks until the next one is
     * published), claims indices from the loop's counter like the caller does, and counts what it finished. One loop
     * at a time: {@link #tryRun} refuses while another is running.
     */
    static final class Crew {
        /** how long an idle helper spins before it parks: longer than the gaps between the loops of a decode step */
        static final long SPIN_NANOS = 2_000_000;
        /** how long a helper waits without a loop before it ends (by default) */
        static final long EXIT_NANOS = 10_000_000_000L;
        /** how much of that spin is pause instructions; the rest yields the core between looks */
        static final long PAUSE_NANOS = 20_000;

        /** one parallel loop: its indices, what is claimed and finished, the first failure */
        private static final class Loop {
            final int tasks;
            final IntConsumer body;
            final AtomicInteger next = new AtomicInteger(), done = new AtomicInteger();
            volatile Throwable failure;

            Loop(int tasks, IntConsumer body) { this.tasks = tasks; this.body = body; }

            /** runs indices until none is left; returns how many this thread ran */
            int drain() {
                int finished = 0;
                for (int i; (i = next.getAndIncrement()) < tasks; finished++) {
                    try {
                        body.accept(i);
                    } catch (Throwable t) {
                        if (failure == null) failure = t;
                    }
                }
                if (finished > 0) done.addAndGet(finished);
                return finished;
            }
        }

        private final AtomicInteger busy = new AtomicInteger();
        private volatile Loop current;
        private final Thread[] helpers;
        private final AtomicInteger sleeping = new AtomicInteger();

        private final long exitNanos;

        Crew(int count) { this(count, EXIT_NANOS); }

        Crew(int count, long exitNanos) {
            this.exitNanos = exitNanos;
            helpers = new Thread[count];
            for (int h = 0; h < count; h++) startHelper(h);
        }

        private void startHelper(int h) {
            helpers[h] = Thread.ofPlatform().daemon().name("dive-crew-" + h).unstarted(this::helperLoop);
            helpers[h].start();
        }

        /**
         * A stall: the caller, done with its own indices, waited more than this plus twice its mean index time for a
         * helper. That happens when a helper was descheduled mid-index (more runnable threads than cores); the crew
         * then stands down for {@link #BACKOFF_NANOS} ({@link #healthy} false: loops go to the fork-join pool, and small
         * ones, which only pay off with a spinning crew, run on the caller) and tries again after that.
         */
        static final long STALL_NANOS = 50_000, BACKOFF_NANOS = 50_000_000;
        private volatile long backoffUntil;

        /** helper threads running now (tests) */
        int helpersAlive() {
            int n = 0;
            for (Thread t : helpers) if (t.isAlive()) n++;
            return n;
        }

        /** whether the crew is taking loops: not in a back-off after a stall */
        boolean healthy() { return backoffUntil == 0 || System.nanoTime() - backoffUntil >= 0; }

        /** runs the loop on the caller and the helpers; false (nothing run) when another loop holds the crew or it backs off */
        boolean tryRun(int tasks, IntConsumer body) {
            if (!healthy() || !busy.compareAndSet(0, 1)) return false;
            Loop loop = new Loop(tasks, body);
            try {
                for (int h = 0; h < helpers.length; h++) if (!helpers[h].isAlive()) startHelper(h);  // one left after a long idle
                current = loop;
                if (sleeping.get() > 0) for (Thread t : helpers) LockSupport.unpark(t);
                long start = System.nanoTime();
                int own = Math.max(1, loop.drain());
                long drained = System.nanoTime();
                for (int spins = 0; loop.done.get() < tasks; spins++) {
                    if (spins < 1 << 12) Thread.onSpinWait();
                    else Thread.yield();  // a helper mid-index was descheduled
                }
                long waited = System.nanoTime() - drained;
                if (waited > STALL_NANOS + 2 * (drained - start) / own) backoffUntil = System.nanoTime() + BACKOFF_NANOS;
            } finally {
                current = null;
                busy.set(0);
            }
            Workers.rethrow(loop.failure);
            return true;
        }

        /**
         * a helper's life: run each published loop once, spin, park; after exitNanos without a loop it ends (so
         * the crews of backends no longer used do not hold threads), and the next {@link #tryRun} starts a new one. The
         * caller never depends on a helper: a loop whose helpers are gone or late is run by the caller alone.
         */
        private void helperLoop() {
            Loop seen = null;
            long idleSince = System.nanoTime(), lastLoop = idleSince;
            while (true) {
                Loop loop = current;
                if (loop != null && loop != seen) {
                    seen = loop;
                    loop.drain();
                    idleSince = lastLoop = System.nanoTime();
                    continue;
                }
                long idle = System.nanoTime() - idleSince;
                if (idle < SPIN_NANOS) {
                    // spin briefly, then yield: on a busy machine the core goes to whoever needs it, on a quiet one
                    // yield returns at once and the helper still sees the next loop within a µs or so
                    if (idle < PAUSE_NANOS) Thread.onSpinWait();
                    else Thread.yield();
                    continue;
                }
                sleeping.incrementAndGet();
                Loop now = current;
                if (now == null || now == seen) LockSupport.parkNanos(this, exitNanos);
                sleeping.decrementAndGet();
                idleSince = System.nanoTime();
                Loop next = current;
                if (idleSince - lastLoop >= exitNanos && (next == null || next == seen)) return;
            }
        }
    }

    static void checkWeight(Tensor w) {
        if (!w.dtype().isFloatWeight()) throw new IllegalArgumentException("weight '" + w.name() + "' is " + w.dtype() + ", expected F32, BF16 or F16");
    }

    // ---- deterministic lane sum

    // rotations by 32, 16, 8, 4, 2, 1 lanes (those ≥ L are unused): constants, so C2 folds them
    private static final VectorShuffle<Float> ROT32 = rotation(32), ROT16 = rotation(16), ROT8 = rotation(8),
            ROT4 = rotation(4), ROT2 = rotation(2), ROT1 = rotation(1);

    private static VectorShuffle<Float> rotation(int lanes) {
        return VectorShuffle.fromOp(F, i -> (i + lanes) % L);
    }

    /**
     * Σ lanes of v by a fixed pairwise tree. reduceLanes(ADD) leaves the order open, and its intrinsic
     * (compiled) and Java (interpreted) forms do differ, which would make the same call give different
     * bits before and after JIT compilation.
     */
    static float sumLanes(FloatVector v) {
        if (L > 32) v = v.add(v.rearrange(ROT32));
        if (L > 16) v = v.add(v.rearrange(ROT16));
        if (L > 8) v = v.add(v.rearrange(ROT8));
        if (L > 4) v = v.add(v.rearrange(ROT4));
        if (L > 2) v = v.add(v.rearrange(ROT2));
        if (L > 1) v = v.add(v.rearrange(ROT1));
        return v.lane(0);
    }

    // ---- half-precision widening in registers

    private static final int BF16_HIGH_MASK = 0xFFFF0000;

    /** elements 2l of int lanes holding bf16 pairs */
    static FloatVector lowBf16(IntVector v) { return v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(); }
    /** elements 2l+1 */
    static FloatVector highBf16(IntVector v) { return v.and(BF16_HIGH_MASK).reinterpretAsFloats(); }
    static FloatVector lowF16(IntVector v) { return halfToFloat(v.and(0xFFFF)); }
    static FloatVector highF16(IntVector v) { return halfToFloat(v.lanewise(VectorOperators.LSHR, 16)); }

    private static final float TWO_POW_112 = 0x1p112f;

    /**
     * IEEE binary16 bits (low 16 bits of each lane; sign bit 15) to float, exactly: the exponent and
     * mantissa shifted into float position read as a float and scaled by 2^(127−15) is right for normal
     * and subnormal halves alike (a power-of-two scaling is exact); exponent 31 (inf/NaN) maps to 255.
     */
    static FloatVector halfToFloat(IntVector h) {
        IntVector magnitude = h.and(0x7fff);
        IntVector shifted = magnitude.lanewise(VectorOperators.LSHL, 13);
        IntVector finite = shifted.reinterpretAsFloats().mul(TWO_POW_112).reinterpretAsInts();
        VectorMask<Integer> infOrNan = magnitude.compare(VectorOperators.GE, 0x7c00);
        IntVector bits = finite.blend(shifted.or(0x7f800000), infOrNan);
        return bits.or(h.and(0x8000).lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats();
    }

    /**
     * dst[dstOff .. dstOff+n) = w elements [first, first+n) widened to float; F32, BF16 or F16.
     */
    static void widen(Tensor w, long first, float[] dst, int dstOff, int n) {
        MemorySegment seg = w.data();
        int i = 0;
        switch (w.dtype()) {
            case F32 -> MemorySegment.copy(seg, Tensor.F32, first * 4, dst, dstOff, n);
            case BF16, F16 -> {
                boolean bf16 = w.dtype() == DType.BF16;
                for (int upper = n - n % L; i < upper; i += L) {
                    ShortVector s = ShortVector.fromMemorySegment(SH, seg, (first + i) * 2, LE);
                    IntVector v = (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
                    FloatVector f = bf16 ? v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats() : halfToFloat(v);
                    f.intoArray(dst, dstOff + i);
                }
                for (; i < n; i++) dst[dstOff + i] = w.getFloat(first + i);
            }
            default -> throw new IllegalArgumentException("weight '" + w.name() + "' is " + w.dtype() + ", expected F32, BF16 or F16");
        }
    }

    /**
     * Packing buffers of the calling thread, reused across calls: fresh multi-MB arrays cost more in
     * zeroing and page faults than the packing itself. The caller waits inside the call while pool
     * threads read them, and every caller has its own, so concurrent calls never share one. They grow to
     * the largest matmul a thread has run and stay (a few MB for a small model). Slots 0 and 1: the backward
     * passes' packed operands; 2: a GEMM task's panel of w; 3: {@link VectorMatmul#packPanel}'s widened depth tails.
     */
    private static final ThreadLocal<float[][]> PACK_BUFFERS = ThreadLocal.withInitial(() -> new float[4][0]);
    private static final ThreadLocal<int[][]> LANE_BUFFERS = ThreadLocal.withInitial(() -> new int[2][0]);

    static float[] scratch(int slot, int size) {
        float[][] buffers = PACK_BUFFERS.get();
        if (buffers[slot].length < size) buffers[slot] = new float[size];
        return buffers[slot];
    }

    /** {@link VectorMatmul#packPanel}'s int lanes of the calling thread: the panel's rows of w, and their transpose */
    static int[] rowBuffer(int size) { return intScratch(0, size); }

    static int[] laneBuffer(int size) { return intScratch(1, size); }

    private static int[] intScratch(int slot, int size) {
        int[][] buffers = LANE_BUFFERS.get();
        if (buffers[slot].length < size) buffers[slot] = new int[size];
        return buffers[slot];
    }

    static int roundUp(int v, int to) { return (v + to - 1) / to * to; }
}
