package dive.backend;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link Backend#sigmoidGatedAdd} and its backward on both CPU backends against hand-computed values: gates 0 and ln 3
 * give σ = 1/2 and 3/4, σ(1 − σ) = 1/4 and 3/16 (all exact in binary floating point).
 */
class SigmoidGatedAddTest {

    @Test
    void forwardAndBackwardGiveTheHandComputedValues() {
        for (Backend b : new Backend[] {new ScalarBackend(), new VectorBackend(2)}) {
            try (DeviceScope scope = new DeviceScope(b)) {
                DeviceTensor out = scope.upload(new float[] {1, 2, 3, 4, 5, 6});
                DeviceTensor x = scope.upload(new float[] {2, 4, 8, -4, 0, 16});
                DeviceTensor gate = scope.upload(new float[] {0, (float) Math.log(3)});
                b.sigmoidGatedAdd(out, x, gate, 2, 3);
                // row 0: + ½·(2, 4, 8); row 1: + ¾·(−4, 0, 16)
                assertArrayEquals(new float[] {2, 4, 7, 1, 5, 18}, b.download(out), 1e-6f, b.name());

                DeviceTensor dOut = scope.upload(new float[] {1, -1, 2, 0.5f, 3, -1});
                DeviceTensor dx = scope.floats(6), dGate = scope.floats(2);
                b.sigmoidGatedAddBackward(dx, dGate, dOut, x, gate, 2, 3);
                assertArrayEquals(new float[] {0.5f, -0.5f, 1, 0.375f, 2.25f, -0.75f}, b.download(dx), 1e-6f, b.name() + " dx = σ·dOut");
                // dot rows: 2 − 4 + 16 = 14 → ¼·14 = 3.5; −2 + 0 − 16 = −18 → 3/16·(−18) = −3.375
                assertArrayEquals(new float[] {3.5f, -3.375f}, b.download(dGate), 1e-6f, b.name() + " dGate = σ(1 − σ)·(dOut · x)");
            }
        }
    }
}
