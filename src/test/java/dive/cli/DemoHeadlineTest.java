package dive.cli;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/** The demo's last line: the ordering it found between DIVE, FLAP and the random-group ablation. */
class DemoHeadlineTest {
    static Map<String, Double> report(double dive, double flap, double random) {
        return Map.of("dive", dive, "flap", flap, "dive_random_groups", random);
    }

    @Test
    void saysWhichOrderingTheRunFound() {
        // 24.26 / 23.06 − 1 = +5.2 %, 23.66 / 23.06 − 1 = +2.6 %
        assertEquals("ordering DIVE 23.06, FLAP 24.26 (+5.2 %), DIVE with random groups 23.66 (+2.6 %): DIVE ahead of both; as in the "
                        + "README's three-seed comparison at top-1 (DIVE ahead of both on every seed) (one seed)",
                DemoCommand.headline(report(23.06, 24.26, 23.66), 1));
        // 29.60 / 35.98 − 1 = −17.7 %, 32.04 / 35.98 − 1 = −11.0 %
        assertEquals("ordering DIVE 35.98, FLAP 29.60 (-17.7 %), DIVE with random groups 32.04 (-11.0 %): DIVE behind both; unlike the "
                        + "README's three-seed comparison at top-1 (DIVE ahead of both on every seed) (one seed)",
                DemoCommand.headline(report(35.98, 29.60, 32.04), 1));
        assertEquals(true, DemoCommand.headline(report(20, 21, 19), 1).contains("DIVE ahead of FLAP, not of its random-group ablation"));
    }

    @Test
    void saysNothingWithoutTheThreeMethods() {
        assertNull(DemoCommand.headline(Map.of("dive", 1.0), 1));
        assertNull(DemoCommand.headline(Map.of(), 1));
    }
}
