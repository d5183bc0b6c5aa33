package dive.convert;

import org.junit.jupiter.api.Test;

import static dive.convert.CmoeCarvingTest.assertMessage;
import static org.junit.jupiter.api.Assertions.*;

/** CMoE's widths, the SxAyEz names, and the activation markers. */
class CmoeSettingsTest {

    @Test
    void paperNamesMapOntoWidths() {
        // TinyLlama I = 5632, S2A2E16: slices of 352, 2 shared, 14 routed, 2 active → 25 % of the FFN per token
        CmoeSettings s = CmoeSettings.fromName("S2A2E16", 5632);
        assertEquals(new CmoeSettings(704, 14, 352, 2, 10), s);
        assertEquals(5632, s.intermediateSize());
        assertEquals(1408, s.activeWidth());
        // 50 is not a multiple of 4: the 2 leftover channels join the shared expert (12 + 2)
        assertEquals(new CmoeSettings(14, 3, 12, 1, 10), CmoeSettings.fromName("S1A1E4", 50));
        assertEquals(new CmoeSettings(0, 8, 6, 2, 10), CmoeSettings.fromName("S0A2E8", 48));
    }

    @Test
    void badSettingsAreRefusedNamingTheParameter() {
        assertMessage("experts", () -> new CmoeSettings(2, 0, 3, 1));
        assertMessage("expertWidth", () -> new CmoeSettings(2, 2, 0, 1));
        assertMessage("sharedWidth", () -> new CmoeSettings(-1, 2, 3, 1));
        assertMessage("topK", () -> new CmoeSettings(2, 2, 3, 3));
        assertMessage("activeNeurons", () -> new CmoeSettings(2, 2, 3, 1, 0));
        assertMessage("intermediateSize 9", () -> new CmoeSettings(2, 2, 3, 1).requireIntermediateSize(9));
        assertMessage("activeNeurons 10", () -> new CmoeSettings(2, 2, 3, 1).requireIntermediateSize(8));
        assertMessage("name", () -> CmoeSettings.fromName("2-2-16", 64));
        assertMessage("S4", () -> CmoeSettings.fromName("S4A1E4", 64));
        assertMessage("A3", () -> CmoeSettings.fromName("S2A3E4", 64));
        assertMessage("intermediateSize 8", () -> CmoeSettings.fromName("S2A2E16", 8));
    }

    @Test
    void markersAreTheTopKByAbsoluteValueWithTiesToTheLowerIndex() {
        CmoeActivations a = new CmoeActivations(5, 2);
        a.addScores(new float[] {1, -3, 3, 0, 2,    // |·| 1 3 3 0 2: 1 and 2 (tie at 3)
                                 2, 2, 2, 2, 2,     // all equal: 0 and 1
                                 0, 0, 0, -1, 9}, 3);
        assertArrayEquals(new int[] {1, 2}, a.markers(0));
        assertArrayEquals(new int[] {0, 1}, a.markers(1));
        assertArrayEquals(new int[] {3, 4}, a.markers(2));
        assertArrayEquals(new long[] {1, 2, 1, 1, 1}, a.activationCounts());
        assertEquals(3, a.tokens());
        assertThrows(IllegalArgumentException.class, () -> a.addScores(new float[] {0, Float.NaN, 0, 0, 0}, 1));
        assertMessage("activeNeurons", () -> new CmoeActivations(5, 6));
    }

    @Test
    void normalizedScoreIsTheCosineForm() {
        // x = (3, 4): x̂ = (0.6, 0.8); gate row (2, 0) → 0.6; up row (0, 5) → 0.8; a zero row scores 0
        float[] s = CmoeActivations.normalizedScores(new float[] {3, 4}, 1, 2, new float[] {2, 0, 0, 0}, new float[] {0, 5, 1, 1}, 2);
        assertEquals(0.6 / (1 + Math.exp(-0.6)) * 0.8, s[0], 1e-7);
        assertEquals(0, s[1], 0);
        CmoeActivations a = new CmoeActivations(2, 1);
        a.addInputs(new float[] {3, 4}, 1, 2, new float[] {2, 0, 0, 0}, new float[] {0, 5, 1, 1});
        assertArrayEquals(new int[] {0}, a.markers(0));
    }
}
