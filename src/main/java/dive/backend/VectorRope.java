package dive.backend;

import jdk.incubator.vector.FloatVector;

import static dive.backend.VectorSupport.*;

/** Rotary position embedding and its inverse for {@link VectorBackend}: the CPU twin of native/src/rope.cu. */
final class VectorRope {
    private VectorRope() {}

    static void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        int half = headDim / 2, upper = half - half % L;
        float[] cos = new float[half], sin = new float[half];
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < half; i++) {
                float angle = positions[r] * invFreq[i];
                cos[i] = (float) Math.cos(angle);
                sin[i] = (float) Math.sin(angle);
            }
            for (int h = 0; h < heads; h++) {
                int base = (r * heads + h) * headDim;
                int i = 0;
                for (; i < upper; i += L) {
                    FloatVector a = FloatVector.fromArray(F, x, base + i), b = FloatVector.fromArray(F, x, base + half + i);
                    FloatVector c = FloatVector.fromArray(F, cos, i), s = FloatVector.fromArray(F, sin, i);
                    a.mul(c).sub(b.mul(s)).intoArray(x, base + i);
                    b.mul(c).add(a.mul(s)).intoArray(x, base + half + i);
                }
                for (; i < half; i++) {
                    float a = x[base + i], b = x[base + i + half];
                    x[base + i] = a * cos[i] - b * sin[i];
                    x[base + i + half] = b * cos[i] + a * sin[i];
                }
            }
        }
    }

    /** the inverse rotation = the rotation by −angle: rope with negated positions */
    static void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq) {
        int[] negated = new int[rows];
        for (int r = 0; r < rows; r++) negated[r] = -positions[r];
        rope(dx, rows, heads, headDim, negated, invFreq);
    }
}
