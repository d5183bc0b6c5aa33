package dive.report;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class PlotTest {
    @TempDir Path tmp;

    static int count(BufferedImage img, Color c) {
        int n = 0;
        for (int y = 0; y < img.getHeight(); y++) for (int x = 0; x < img.getWidth(); x++) if ((img.getRGB(x, y) & 0xffffff) == (c.getRGB() & 0xffffff)) n++;
        return n;
    }

    @Test
    void writesADecodablePngWithEachSeriesColour() throws Exception {
        int n = 200;
        double[] x = new double[n], train = new double[n], eval = new double[n];
        for (int i = 0; i < n; i++) { x[i] = i * 4096; train[i] = 5 * Math.exp(-i / 50.0) + 1.5; eval[i] = 5.5 * Math.exp(-i / 60.0) + 1.8; }
        Path file = tmp.resolve("loss.png");
        new Plot("loss", "tokens", "nats").size(640, 400).add("train", x, train).add("eval man2", x, eval).writePng(file);
        BufferedImage img = ImageIO.read(file.toFile());
        assertNotNull(img, "not a PNG");
        assertEquals(640, img.getWidth());
        assertEquals(400, img.getHeight());
        assertTrue(count(img, Plot.PALETTE.get(0)) > 300, "train line missing");
        assertTrue(count(img, Plot.PALETTE.get(1)) > 300, "eval line missing");
        assertEquals(0, count(img, Plot.PALETTE.get(2)), "a third colour without a third series");
        try (var files = Files.list(tmp)) { assertEquals(1, files.count()); } // no temp file left
    }

    @Test
    void logAxisSkipsNonPositiveValuesAndTicksArePowersOfTen() throws Exception {
        double[] x = {1, 2, 3, 4}, y = {1000, 0, 10, 0.01};
        BufferedImage img = new Plot("log", "x", "y").logY(true).add("s", x, y).render();
        assertTrue(count(img, Plot.PALETTE.get(0)) > 50);
        double[] ticks = Plot.logTicks(-2, 3); // range of 5 decades: powers of ten only
        assertArrayEquals(new double[] {-2, -1, 0, 1, 2, 3}, ticks, 1e-12);
    }

    @Test
    void niceTicksAndLabels() {
        assertArrayEquals(new double[] {0, 20, 40, 60, 80, 100}, Plot.niceTicks(0, 97, 6), 1e-9);
        assertArrayEquals(new double[] {1.5, 2, 2.5, 3}, Plot.niceTicks(1.6, 2.9, 4), 1e-9);
        assertEquals("1,024", Plot.tickLabel(1024));
        assertEquals("2.5", Plot.tickLabel(2.5));
        assertEquals("1e6", Plot.tickLabel(1e6));
        assertEquals("2.5e-4", Plot.tickLabel(2.5e-4));
        var e = assertThrows(IllegalArgumentException.class, () -> new Plot("t", "x", "y").add("bad", new double[2], new double[3]));
        assertTrue(e.getMessage().contains("series 'bad'"));
    }

    /** writes the sample chart to target/plot-sample.png for a look by eye */
    @Test
    void sampleForEyes() throws Exception {
        int n = 120;
        double[] x = new double[n], a = new double[n], b = new double[n];
        for (int i = 0; i < n; i++) { x[i] = i * 8192; a[i] = 6 * Math.exp(-i / 30.0) + 2 + 0.2 * Math.sin(i); b[i] = 6 * Math.exp(-i / 40.0) + 2.4; }
        Files.createDirectories(Path.of("target"));
        new Plot("loss", "tokens", "loss (nats per token)").add("train", x, a).add("eval man2", x, b).add("eval bible-nt", x, java.util.Arrays.stream(b).map(v -> v * 1.1).toArray()).writePng(Path.of("target/plot-sample.png"));
        assertTrue(Files.size(Path.of("target/plot-sample.png")) > 1000);
    }
}
