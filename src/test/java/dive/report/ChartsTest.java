package dive.report;

import org.junit.jupiter.api.Test;

import java.awt.image.BufferedImage;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Charts.bars geometry: bar heights on a linear and a logarithmic axis, measured in the picture's pixels. */
class ChartsTest {
    /** the height in pixels of the first series' bar of category {@code c} (its column counted in the bar colour) */
    private static int barHeight(BufferedImage image, int c, int categories) {
        int x = 70 + c * 400 / categories + 4 + 2;  // plotLeft + the category's offset + 4, two pixels into the bar
        int colour = Plot.PALETTE.get(0).getRGB(), h = 0;
        for (int y = 60; y <= 60 + 320; y++) if (image.getRGB(x, y) == colour) h++;  // the plot area (not the legend)
        return h;
    }

    @Test
    void aLogAxisGivesEveryDecadeTheSameHeight() {
        // values 2, 20, 200: the axis runs from 1 (the decade below 2) to 1000 (the decade above 200), 320 pixels high
        BufferedImage log = Charts.bars("t", "y", List.of("a", "b", "c"), List.of("s"), new double[][] {{2, 20, 200}}, null, null, true);
        int a = barHeight(log, 0, 3), b = barHeight(log, 1, 3), c = barHeight(log, 2, 3);
        assertEquals(Math.round(Math.log10(2) / 3 * 320), a, 1);
        assertEquals(320 / 3.0, b - a, 1.5, "one decade from 2 to 20");
        assertEquals(320 / 3.0, c - b, 1.5, "one decade from 20 to 200");
        // the same values on a linear axis (0 .. 200): heights in proportion to the values
        BufferedImage linear = Charts.bars("t", "y", List.of("a", "b", "c"), List.of("s"), new double[][] {{2, 20, 200}}, null, null, false);
        assertEquals(320, barHeight(linear, 2, 3), 1);
        assertEquals(32, barHeight(linear, 1, 3), 1);
    }

    @Test
    void aLogAxisRefusesValuesItCannotPlace() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Charts.bars("t", "y", List.of("a", "b"), List.of("s"), new double[][] {{0, 20}}, null, null, true));
        assertTrue(e.getMessage().contains("log axis"), e.getMessage());
    }
}
