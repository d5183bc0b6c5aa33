package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** AdamW, LR schedules, clipping and freeze patterns against hand computations and torch.optim.AdamW. */
class OptimizationTest {

    static Parameter param(String name, float[] values, long... shape) {
        Tensor t = Tensor.ofFloats(name, values, shape);
        // Tensor.ofFloats may be heap-backed; copy into writable off-heap memory
        return Parameter.copyOf(name, t, dive.tensor.TensorArena.auto());
    }

    /** the backend the tests write gradients through (AdamW's default runs on the CPU too: their tensors interoperate) */
    static final dive.backend.Backend CPU = new dive.backend.ScalarBackend();

    static float[] values(Parameter p) { return p.value().toFloatArray(); }

    @Test
    void adamWTwoStepsByHand() {
        // p = [1, −2] (shape (1, 2), so it is decayed), lr 0.1, β = (0.9, 0.999), ε = 1e-8, λ = 0.1
        Parameter p = param("w", new float[] {1f, -2f}, 1, 2);
        AdamW adam = new AdamW(new AdamW.Options(0.9, 0.999, 1e-8, 0.1, false));
        // step 1, g = [0.5, −1]: p·(1 − 0.01) = [0.99, −1.98]; m̂ = g, v̂ = g² → update = lr·sign(g) → [0.89, −1.88]
        GradAccess.set(p, CPU, 0.5f, -1f);
        adam.step(List.of(p), 0.1);
        assertArrayEquals(new float[] {0.89f, -1.88f}, values(p), 1e-6f);
        // step 2, g = [0.1, 0.2]: p·0.99 = [0.8811, −1.8612]; m = [0.055, −0.07], v = [2.5975e-4, 1.039e-3];
        // m̂ = m/0.19 = [0.2894737, −0.3684211], v̂ = v/0.001999 = [0.1299400, 0.5197599], sqrt = [0.3604719, 0.7209438]
        // update = 0.1·m̂/sqrt(v̂) = [0.0803041, −0.0511026] → p = [0.8007959, −1.8100974]
        GradAccess.set(p, CPU, 0.1f, 0.2f);
        adam.step(List.of(p), 0.1);
        assertArrayEquals(new float[] {0.8007959f, -1.8100974f}, values(p), 2e-6f);
        assertEquals(2, adam.stepCount());
        assertArrayEquals(new float[] {0.055f, -0.07f}, adam.moments("w").m(), 1e-7f);
    }

    @Test
    void adamWSkipsDecayOfOneDimParamsAndFrozenParams() {
        Parameter norm = param("norm.weight", new float[] {1f}, 1), frozen = param("frozen", new float[] {3f}, 1, 1);
        frozen.setTrainable(false);
        GradAccess.setAt(norm, CPU, 0, 0f); GradAccess.setAt(frozen, CPU, 0, 5f);
        new AdamW(new AdamW.Options(0.9, 0.999, 1e-8, 0.5, false)).step(List.of(norm, frozen), 0.1);
        assertEquals(1f, values(norm)[0]);   // zero gradient, no decay for 1-D: unchanged
        assertEquals(3f, values(frozen)[0]); // frozen: untouched
        Parameter decayed = param("norm.weight", new float[] {1f}, 1);
        new AdamW(new AdamW.Options(0.9, 0.999, 1e-8, 0.5, true)).step(List.of(decayed), 0.1);
        assertEquals(0.95f, values(decayed)[0], 1e-7f); // 1·(1 − 0.1·0.5)
    }

    @Test
    void adamWMatchesTorch() throws Exception {
        JsonNode j = new ObjectMapper().readTree(Path.of("src/test/resources/train/adamw_torch.json").toFile());
        Parameter w = param("w", floats(j.get("w0")), 3, 4), b = param("b", floats(j.get("b0")), 4);
        AdamW adam = new AdamW(new AdamW.Options(j.get("betas").get(0).asDouble(), j.get("betas").get(1).asDouble(),
                j.get("eps").asDouble(), j.get("weight_decay").asDouble(), false));
        for (int s = 0; s < j.get("lrs").size(); s++) {
            GradAccess.set(w, CPU, floats(j.get("grads_w").get(s)));
            GradAccess.set(b, CPU, floats(j.get("grads_b").get(s)));
            adam.step(List.of(w, b), j.get("lrs").get(s).asDouble());
        }
        assertArrayEquals(floats(j.get("w_final")), values(w), 1e-6f);
        assertArrayEquals(floats(j.get("b_final")), values(b), 1e-6f);
        float[] vExpected = floats(j.get("w_exp_avg_sq_final")), v = adam.moments("w").v();
        for (int i = 0; i < v.length; i++) assertEquals(vExpected[i], v[i], 1e-6f * vExpected[i]);
    }

    static float[] floats(JsonNode array) {
        float[] out = new float[array.size()];
        for (int i = 0; i < out.length; i++) out[i] = (float) array.get(i).asDouble();
        return out;
    }

    @Test
    void scheduleValues() {
        LrSchedule cosine = new LrSchedule(LrSchedule.Kind.COSINE, 1e-3, 10, 1e-4, 110);
        assertEquals(1e-4, cosine.at(0), 1e-15);          // warm-up: 1e-3 · 1/10
        assertEquals(5e-4, cosine.at(4), 1e-15);          // 1e-3 · 5/10
        assertEquals(1e-3, cosine.at(10), 1e-15);         // progress 0: peak
        assertEquals(5.5e-4, cosine.at(60), 1e-15);       // progress 1/2: min + (max − min)/2
        assertEquals(1e-4 + 9e-4 * (1 + Math.cos(Math.PI / 4)) / 2, cosine.at(35), 1e-15); // progress 1/4
        assertEquals(1e-4, cosine.at(110), 1e-15);        // progress 1: floor
        assertEquals(1e-4, cosine.at(500), 1e-15);        // past the end: floor
        LrSchedule constant = new LrSchedule(LrSchedule.Kind.CONSTANT, 2e-3, 4, 0, 100);
        assertEquals(1e-3, constant.at(1), 1e-15);
        assertEquals(2e-3, constant.at(3), 1e-15);
        assertEquals(2e-3, constant.at(99), 1e-15);
        assertThrows(IllegalArgumentException.class, () -> new LrSchedule(LrSchedule.Kind.COSINE, -1e-3, 0, 0, 10));
        var e = assertThrows(IllegalArgumentException.class, () -> new LrSchedule(LrSchedule.Kind.COSINE, 1e-3, 0, 2e-3, 10));
        assertTrue(e.getMessage().contains("min_lr"), e.getMessage());
    }

    @Test
    void clippingByGlobalNorm() {
        Parameter a = param("a", new float[] {3f, 0f}, 2), b = param("b", new float[] {0f}, 1), frozen = param("f", new float[] {0f}, 1);
        GradAccess.set(a, CPU, 3f, 0f); GradAccess.setAt(b, CPU, 0, 4f); GradAccess.setAt(frozen, CPU, 0, 100f);
        frozen.setTrainable(false);
        List<Parameter> ps = List.of(a, b, frozen);
        assertEquals(5.0, Gradients.globalNorm(ps, CPU), 0);    // sqrt(3² + 4²); frozen ignored
        assertEquals(5.0, Gradients.clipByGlobalNorm(ps, 10, CPU), 0);
        assertEquals(3f, a.gradValues()[0]);                     // below the limit: untouched
        assertEquals(5.0, Gradients.clipByGlobalNorm(ps, 1, CPU), 0);
        assertEquals(0.6f, a.gradValues()[0], 1e-7f);            // 3 · 1/5
        assertEquals(0.8f, b.gradValues()[0], 1e-7f);            // 4 · 1/5
        assertEquals(100f, frozen.gradValues()[0]);
        assertEquals(1.0, Gradients.globalNorm(ps, CPU), 1e-7);
        GradAccess.setAt(b, CPU, 0, Float.NaN);
        assertEquals("b", Gradients.firstNonFinite(ps, CPU));
    }

    @Test
    void freezePatterns() {
        List<Parameter> ps = List.of(param("model.layers.0.self_attn.q_proj.weight", new float[1], 1),
                param("model.layers.0.self_attn.q_proj.lora_A", new float[1], 1),
                param("model.layers.0.mlp.up_proj.weight", new float[1], 1),
                param("model.norm.weight", new float[1], 1));
        assertEquals(1, ParameterPatterns.apply(ps, List.of("*.lora_*"), List.of()));
        assertTrue(ps.get(1).trainable());
        assertFalse(ps.get(0).trainable() || ps.get(2).trainable() || ps.get(3).trainable());

        assertEquals(2, ParameterPatterns.apply(ps, List.of(), List.of("model.layers.*.self_attn.*")));
        assertFalse(ps.get(0).trainable() || ps.get(1).trainable());
        assertTrue(ps.get(2).trainable() && ps.get(3).trainable());

        assertEquals(1, ParameterPatterns.apply(ps, List.of("re:model\\.layers\\.\\d+\\.mlp\\..*"), List.of()));
        assertTrue(ps.get(2).trainable());
        // a glob's dot is literal: "model?norm.weight" matches, "model.norm*weight" too, "modelXnorm" does not exist
        assertEquals(3, ParameterPatterns.apply(ps, List.of(), List.of("model?norm.weight")));
        var e = assertThrows(IllegalArgumentException.class, () -> ParameterPatterns.apply(ps, List.of(), List.of("*.lora_B")));
        assertTrue(e.getMessage().contains("'*.lora_B' matches no parameter"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ParameterPatterns.apply(ps, List.of(), List.of("*")));
    }
}
