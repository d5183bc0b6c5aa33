package dive.backend;

import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

import static dive.backend.VectorSupport.*;

/**
 * The element-wise ops of {@link VectorBackend}: SwiGLU and its gradient, softmax, add and scaled add, the embedding
 * lookup and its gradient, and the lane-wise e^x that SwiGLU, softmax and the loss use. The CPU twin of
 * native/src/elementwise.cu.
 */
final class VectorElementwise {
    private VectorElementwise() {}

    static void swiglu(Workers workers, float[] out, float[] gate, float[] up, int n) {
        int chunk = 1 << 14, tasks = (n + chunk - 1) / chunk;
        workers.parallelFor(tasks, n >= PARALLEL_MIN_FMAS / 4, t -> swigluRange(out, gate, up, t * chunk, Math.min(n, t * chunk + chunk)));
    }

    /** out[i] = SiLU(gate[i])·up[i] for i in [start, end); start a multiple of L */
    private static void swigluRange(float[] out, float[] gate, float[] up, int start, int end) {
        int upper = end - (end - start) % L, i = start;
        FloatVector one = FloatVector.broadcast(F, 1f);
        for (; i < upper; i += L) {
            FloatVector g = FloatVector.fromArray(F, gate, i);
            g.div(one.add(exp(g.neg()))).mul(FloatVector.fromArray(F, up, i)).intoArray(out, i);
        }
        for (; i < end; i++) {
            float g = gate[i];
            out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }

    /** x[off .. off+n) ← softmax, max-subtracted, lanes summed by the fixed tree */
    static void softmaxInPlace(float[] x, int off, int n) {
        int upper = n - n % L, i = 0;
        float max = Float.NEGATIVE_INFINITY;
        if (upper > 0) {
            FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            for (; i < upper; i += L) m = m.max(FloatVector.fromArray(F, x, off + i));
            max = m.reduceLanes(VectorOperators.MAX); // exact in any order
        }
        for (; i < n; i++) max = Math.max(max, x[off + i]);
        FloatVector sums = FloatVector.zero(F);
        for (i = 0; i < upper; i += L) {
            FloatVector e = exp(FloatVector.fromArray(F, x, off + i).sub(max));
            e.intoArray(x, off + i);
            sums = sums.add(e);
        }
        double sum = sumLanes(sums);
        for (; i < n; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (i = 0; i < upper; i += L) FloatVector.fromArray(F, x, off + i).mul(inv).intoArray(x, off + i);
        for (; i < n; i++) x[off + i] *= inv;
    }

    // ---- e^x in lanes

    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HIGH = 0.693359375f, LN2_LOW = -2.12194440e-4f; // LN2_HIGH + LN2_LOW = ln 2
    /** 1.5 · 2^23: adding it rounds a float of magnitude &lt; 2^22 to an integer, kept in the low mantissa bits */
    private static final float ROUNDER = 12582912f;
    private static final int ROUNDER_BITS = 0x4B400000;

    /**
     * e^x per lane, within 2 ulp of {@link Math#exp} (tested): x = n·ln 2 + r, |r| ≤ ln2/2, e^r by the
     * Cephes expf polynomial, times 2^n built in the exponent bits (in two halves, so subnormal results
     * and overflow to ∞ come out right). Only add, mul and fma, which the Vector API defines exactly,
     * so compiled and interpreted code give the same bits (the library EXP does not: its intrinsic and
     * its Java fallback differ in the last bit).
     */
    static FloatVector exp(FloatVector x) {
        x = x.max(-104f).min(89f); // e^−104 rounds to 0 and e^89 to ∞; NaN stays NaN
        FloatVector t = x.fma(LOG2E, ROUNDER);
        IntVector n = t.reinterpretAsInts().sub(ROUNDER_BITS);
        FloatVector nf = t.sub(ROUNDER);
        FloatVector r = x.sub(nf.mul(LN2_HIGH)); // exact: LN2_HIGH has 9 significant bits, |n| ≤ 150
        r = nf.fma(FloatVector.broadcast(F, -LN2_LOW), r);
        FloatVector p = r.fma(1.9875691500e-4f, 1.3981999507e-3f);
        p = p.fma(r, FloatVector.broadcast(F, 8.3334519073e-3f));
        p = p.fma(r, FloatVector.broadcast(F, 4.1665795894e-2f));
        p = p.fma(r, FloatVector.broadcast(F, 1.6666665459e-1f));
        p = p.fma(r, FloatVector.broadcast(F, 5.0000001201e-1f));
        FloatVector er = p.mul(r).fma(r, r).add(1f); // 1 + r + r²·p
        IntVector n1 = n.lanewise(VectorOperators.ASHR, 1), n2 = n.sub(n1);
        FloatVector scale1 = n1.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        FloatVector scale2 = n2.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        return er.mul(scale1).mul(scale2);
    }

    static void embedding(float[] out, Tensor table, int[] ids) {
        checkWeight(table);
        int vocab = table.rows(), d = table.cols();
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= vocab) throw new IllegalArgumentException("token id " + id + " at position " + t + " is outside the vocabulary [0, " + vocab + ") of '" + table.name() + "'");
            widen(table, (long) id * d, out, t * d, d);
        }
    }

    static void add(float[] x, float[] y, int n) {
        int upper = n - n % L, i = 0;
        for (; i < upper; i += L) FloatVector.fromArray(F, x, i).add(FloatVector.fromArray(F, y, i)).intoArray(x, i);
        for (; i < n; i++) x[i] += y[i];
    }

    static void swigluBackward(Workers workers, float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n) {
        int chunk = 1 << 14, tasks = (n + chunk - 1) / chunk;
        workers.parallelFor(tasks, n >= PARALLEL_MIN_FMAS / 4, task -> {
            int i = task * chunk, end = Math.min(n, i + chunk), upper = end - (end - i) % L;
            FloatVector one = FloatVector.broadcast(F, 1f);
            for (; i < upper; i += L) {
                FloatVector g = FloatVector.fromArray(F, gate, i), dy = FloatVector.fromArray(F, dOut, i);
                FloatVector sig = one.div(one.add(exp(g.neg())));
                dy.mul(FloatVector.fromArray(F, up, i)).mul(sig).mul(one.add(g.mul(one.sub(sig)))).intoArray(dGate, i);
                dy.mul(g).mul(sig).intoArray(dUp, i);
            }
            for (; i < end; i++) {
                float g = gate[i], sig = 1f / (1f + (float) Math.exp(-g));
                dGate[i] = dOut[i] * up[i] * sig * (1f + g * (1f - sig));
                dUp[i] = dOut[i] * g * sig;
            }
        });
    }

    static void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d) {
        for (int t = 0; t < ids.length; t++) {
            if (ids[t] < 0 || ids[t] * (long) d + d > dTable.length)
                throw new IllegalArgumentException("embeddingBackward: token id " + ids[t] + " at position " + t + " is outside the table of " + dTable.length / d + " rows");
            addScaled(dTable, ids[t] * d, dOut, t * d, 1f, d);
        }
    }

    static void addScaled(float[] x, float[] y, float a, int n) {
        addScaled(x, 0, y, 0, a, n);
    }

    /** x[xo + i] += a·y[yo + i], i &lt; n */
    static void addScaled(float[] x, int xo, float[] y, int yo, float a, int n) {
        int i = 0;
        for (int upper = n - n % L; i < upper; i += L)
            FloatVector.fromArray(F, y, yo + i).fma(FloatVector.broadcast(F, a), FloatVector.fromArray(F, x, xo + i)).intoArray(x, xo + i);
        for (; i < n; i++) x[xo + i] += a * y[yo + i];
    }
}
