package dive.train;

import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The test model's gradients against central finite differences of its loss (in double via small steps). */
class ToyBigramModelTest {
    @Test
    void gradientsMatchFiniteDifferences() {
        ToyBigramModel model = new ToyBigramModel(7, 3, 42);
        int[][] batch = {{1, 2, 3, 1, 6}, {0, 4, 4, 5, 2}};
        model.lossAndGradients(batch, 1f);
        float h = 1e-2f;
        int checked = 0;
        for (Parameter p : model.parameters()) {
            for (int i = 0; i < p.numel(); i += 2) {
                float w = p.value().data().getAtIndex(Tensor.F32, i);
                p.value().data().setAtIndex(Tensor.F32, i, w + h);
                double up = model.loss(batch);
                p.value().data().setAtIndex(Tensor.F32, i, w - h);
                double down = model.loss(batch);
                p.value().data().setAtIndex(Tensor.F32, i, w);
                double numeric = (up - down) / (2 * h);
                assertEquals(numeric, p.gradValues()[i], 2e-4 + 1e-3 * Math.abs(numeric), p.name() + "[" + i + "]");
                checked++;
            }
        }
        assertTrue(checked > 20);
    }

    @Test
    void gradScaleScalesAndAccumulates() {
        ToyBigramModel a = new ToyBigramModel(5, 2, 1), b = new ToyBigramModel(5, 2, 1);
        int[][] batch = {{1, 2, 3, 4}};
        a.lossAndGradients(batch, 1f);
        b.lossAndGradients(batch, 0.5f);
        b.lossAndGradients(batch, 0.5f);
        for (int k = 0; k < 3; k++) {
            float[] ga = a.parameters().get(k).gradValues(), gb = b.parameters().get(k).gradValues();
            for (int i = 0; i < ga.length; i++) assertEquals(ga[i], gb[i], 1e-6f * Math.max(1, Math.abs(ga[i])));
        }
    }
}
