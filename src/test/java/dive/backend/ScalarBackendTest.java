package dive.backend;

import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** Hand-computed expectations for the reference backend. */
class ScalarBackendTest {
    private final CpuBackend b = new ScalarBackend();

    @Test
    void matmulByHand() {
        // x (2,3) · w (2,3)^T
        float[] x = {1, 2, 3, 4, 5, 6};
        Tensor w = Tensor.ofFloats("w", new float[]{1, 0, -1, 0.5f, 0.5f, 0.5f}, 2, 3);
        float[] out = new float[4];
        b.matmul(out, x, 2, w);
        assertArrayEquals(new float[]{-2, 3, -2, 7.5f}, out, 1e-6f);
    }

    @Test
    void rmsNormByHand() {
        float[] x = {3, 4};
        float[] out = new float[2];
        b.rmsNorm(out, x, Tensor.ofFloats("g", new float[]{1, 2}, 2), 1, 0f);
        double rms = Math.sqrt((9 + 16) / 2.0);
        assertArrayEquals(new float[]{(float) (3 / rms), (float) (8 / rms)}, out, 1e-6f);
    }

    @Test
    void softmaxByHand() {
        float[] x = {0, (float) Math.log(3)};
        b.softmax(x, 0, 2);
        assertArrayEquals(new float[]{0.25f, 0.75f}, x, 1e-6f);
    }
}
