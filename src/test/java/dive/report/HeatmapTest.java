package dive.report;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class HeatmapTest {
    @TempDir Path tmp;

    @Test
    void writesADecodablePngWithCellsTreeAndColourBarEnds() throws Exception {
        List<String> names = List.of("alpha", "beta", "gamma", "delta");
        double[][] m = {{1, 0.5, 0.2, 0.3}, {0.5, 1, 0.4, 0.25}, {0.2, 0.4, 1, 0.6}, {0.3, 0.25, 0.6, 1}};
        // merges (0,1) at 0.1, (2,3) at 0.2, (4,5) at 0.8; leaf order 0 1 2 3
        Heatmap h = new Heatmap("test", names, m, new int[] {0, 2, 4}, new int[] {1, 3, 5}, new double[] {0.1, 0.2, 0.8},
                new int[] {0, 1, 2, 3}, new int[] {0, 0, 1, 1});
        Path file = tmp.resolve("a.png");
        h.writePng(file);
        BufferedImage img = ImageIO.read(file.toFile());
        assertNotNull(img);
        int cell = h.cell();
        assertTrue(img.getWidth() > 216 + 4 * cell && img.getHeight() > 44 + 4 * cell, img.getWidth() + "×" + img.getHeight());
        // the maximum (1, diagonal) is viridis yellow, the minimum (0.2) its purple: whole cells of each
        assertTrue(PlotTest.count(img, Heatmap.COLOR_MAP[4]) >= 3.5 * cell * cell, "max colour cells");
        assertTrue(PlotTest.count(img, Heatmap.COLOR_MAP[0]) >= 1.5 * cell * cell, "min colour cells");
        assertEquals(Heatmap.COLOR_MAP[4].getRGB(), img.getRGB(216 + cell / 2, 44 + cell / 2), "cell (0,0) is the max");
        // group marks in the palette's first two colours, dendrogram lines in dark grey
        assertTrue(PlotTest.count(img, Plot.PALETTE.get(0)) >= 2 * 64 && PlotTest.count(img, Plot.PALETTE.get(1)) >= 2 * 64);
        assertEquals(0, PlotTest.count(img, Plot.PALETTE.get(2)));
        assertTrue(PlotTest.count(img, Color.DARK_GRAY) > 100, "dendrogram");
    }

    @Test
    void colourMapEndsAndMismatchedShapesAreRefused() {
        assertEquals(Heatmap.COLOR_MAP[0], Heatmap.color(0));
        assertEquals(Heatmap.COLOR_MAP[4], Heatmap.color(1));
        assertEquals(Heatmap.COLOR_MAP[2], Heatmap.color(0.5));
        assertThrows(IllegalArgumentException.class, () -> new Heatmap("t", List.of("a", "b"), new double[][] {{1}}, new int[] {0}, new int[] {1},
                new double[] {1}, new int[] {0, 1}, null));
    }
}
