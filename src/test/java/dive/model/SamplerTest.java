package dive.model;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** expectations computed by hand from the probabilities the logits encode */
class SamplerTest {
    /** logits = log(p) for p = 0.5, 0.3, 0.2 */
    static final float[] LOGITS = {(float) Math.log(0.5), (float) Math.log(0.3), (float) Math.log(0.2)};
    static final int DRAWS = 40_000;

    static double[] frequencies(Sampler s, float[] logits) {
        double[] f = new double[logits.length];
        for (int i = 0; i < DRAWS; i++) f[s.sample(logits, 0, logits.length)]++;
        for (int i = 0; i < f.length; i++) f[i] /= DRAWS;
        return f;
    }

    @Test
    void greedyIsArgmaxLowestIdOnTies() {
        assertEquals(0, Sampler.greedy().sample(LOGITS, 0, 3));
        assertEquals(1, Sampler.greedy().sample(new float[] {9, 1, 7, 7, 2}, 1, 4));  // offset 1: max 7 at ids 1 and 2 → 1
    }

    @Test
    void temperatureOneSamplesTheSoftmax() {
        double[] f = frequencies(new Sampler(1f, 1f, 42), LOGITS);
        // binomial standard error ≤ sqrt(0.25 / 40000) = 0.0025; allow 4 of them
        assertEquals(0.5, f[0], 0.01);
        assertEquals(0.3, f[1], 0.01);
        assertEquals(0.2, f[2], 0.01);
    }

    @Test
    void temperatureTwoFlattens() {
        // p^(1/2) normalized: sqrt(.5), sqrt(.3), sqrt(.2) = .7071, .5477, .4472; sum 1.7020 → .4155, .3218, .2628
        double[] f = frequencies(new Sampler(2f, 1f, 7), LOGITS);
        assertEquals(0.4155, f[0], 0.01);
        assertEquals(0.3218, f[1], 0.01);
        assertEquals(0.2628, f[2], 0.01);
    }

    @Test
    void topPKeepsTheSmallestNucleus() {
        // top-p 0.6: 0.5 < 0.6, 0.5 + 0.3 ≥ 0.6 → keep ids 0, 1, renormalized 0.625, 0.375; id 2 never drawn
        double[] f = frequencies(new Sampler(1f, 0.6f, 3), LOGITS);
        assertEquals(0.625, f[0], 0.01);
        assertEquals(0.375, f[1], 0.01);
        assertEquals(0.0, f[2]);
        // top-p 0.5: the first token alone reaches it
        assertEquals(1.0, frequencies(new Sampler(1f, 0.5f, 3), LOGITS)[0]);
    }

    @Test
    void sameSeedSameTokens() {
        Sampler a = new Sampler(0.8f, 0.9f, 1234), b = new Sampler(0.8f, 0.9f, 1234);
        for (int i = 0; i < 200; i++) assertEquals(a.sample(LOGITS, 0, 3), b.sample(LOGITS, 0, 3));
    }

    @Test
    void badSettingsNamed() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new Sampler(-1f, 1f, 0)).getMessage().contains("temperature"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new Sampler(1f, 0f, 0)).getMessage().contains("top-p"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new Sampler(1f, 1.5f, 0)).getMessage().contains("top-p"));
    }
}
