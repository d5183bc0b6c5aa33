package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;

import java.io.IOException;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

class RopeFrequenciesTest {

    /** by hand: theta 10000, headDim 4 → 1 / 10000^(0/4), 1 / 10000^(2/4) = 1, 0.01; linear factor 2 halves them */
    @Test
    void defaultAndLinearByHand() {
        assertArrayEquals(new float[] {1f, 0.01f}, RopeFrequencies.of(new LlamaConfig.Rope("default", 10000, 1, 0, 0, 0), 4), 1e-7f);
        assertArrayEquals(new float[] {0.5f, 0.005f}, RopeFrequencies.of(new LlamaConfig.Rope("linear", 10000, 2, 0, 0, 0), 4), 1e-7f);
    }

    /**
     * by hand, llama3 with original context 32, low 1, high 4, factor 8, theta 100, headDim 6:
     * invFreq = 1, 100^(-1/3) = 0.215443, 100^(-2/3) = 0.0464159; wavelen = 2π/f = 6.283, 29.164, 135.37;
     * bands: wavelen &lt; 8 kept, &gt; 32 divided by 8, between smoothed with s = (32/wavelen − 1) / 3 = 0.032420
     * → (1 − s)·f/8 + s·f = 0.026057 + 0.006985 = 0.0330418.
     */
    @Test
    void llama3BandsByHand() {
        float[] f = RopeFrequencies.of(new LlamaConfig.Rope("llama3", 100, 8, 1, 4, 32), 6);
        assertEquals(1f, f[0], 1e-7f);
        double f1 = Math.pow(100, -1.0 / 3);
        double s = (32 / (2 * Math.PI / f1) - 1) / 3;
        assertEquals(0.0330418, (1 - s) * f1 / 8 + s * f1, 1e-6);  // the hand value above
        assertEquals(0.0330418f, f[1], 1e-6f);
        assertEquals(0.0464159f / 8, f[2], 1e-7f);
    }

    /** against transformers' rotary_emb.inv_freq recorded by the fixture script (torch computes in float32, a few ulps apart from double-then-round) */
    @Test
    void matchTransformers() throws IOException {
        for (String name : Fixtures.NAMES) {
            JsonNode ref = Fixtures.expected(name).get("rope_inv_freq");
            float[] f = RopeFrequencies.of(LlamaConfig.load(Fixtures.dir(name)));
            assertEquals(ref.size(), f.length, name);
            for (int i = 0; i < f.length; i++)
                assertEquals(ref.get(i).asDouble(), f[i], 1e-6 * ref.get(i).asDouble(), name + " frequency " + i);
        }
    }
}
