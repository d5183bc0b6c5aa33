package dive.backend;

import dive.backend.Backend.AdamWStep;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;

import static dive.backend.VectorSupport.*;

/** One AdamW step for {@link VectorBackend}, in vectors over the pool: the CPU twin of native/src/adamw.cu. */
final class VectorAdamW {
    private VectorAdamW() {}

    /** elements per AdamW task: a task streams 16 KiB of each of param, grad, m and v */
    private static final int ADAMW_CHUNK = 4096;

    /**
     * {@link Backend#adamW} element-wise in vectors, in chunks over the pool: the same separate roundings as the plain
     * loop (mul, add, sub, div and a correctly rounded sqrt, never fused), so the bits equal it whatever the threads.
     */
    static void adamW(Workers workers, MemorySegment param, float[] grad, float[] m, float[] v, int n, AdamWStep s) {
        s.check(param, grad, m, v, n);
        int tasks = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
        workers.parallelFor(tasks, n >= 4 * ADAMW_CHUNK, t -> adamWRange(param, grad, m, v, t * ADAMW_CHUNK, Math.min(n, t * ADAMW_CHUNK + ADAMW_CHUNK), s));
    }

    private static void adamWRange(MemorySegment param, float[] grad, float[] m, float[] v, int from, int to, AdamWStep s) {
        int i = from;
        for (; i + L <= to; i += L) {
            FloatVector p = FloatVector.fromMemorySegment(F, param, 4L * i, LE);
            if (s.decay()) p = p.mul(s.decayFactor());
            FloatVector g = FloatVector.fromArray(F, grad, i);
            FloatVector mi = FloatVector.fromArray(F, m, i);
            mi = mi.add(g.sub(mi).mul(s.oneMinusBeta1()));
            FloatVector vi = FloatVector.fromArray(F, v, i).mul(s.beta2()).add(g.mul(s.oneMinusBeta2()).mul(g));
            FloatVector denom = vi.sqrt().div(s.sqrtBiasCorrection2()).add(s.eps());
            p = p.sub(mi.div(denom).mul(s.stepSize()));
            mi.intoArray(m, i);
            vi.intoArray(v, i);
            p.intoMemorySegment(param, 4L * i, LE);
        }
        s.applyPlain(param, grad, m, v, i, to);
    }
}
