package dive.report;

import dive.util.AtomicFiles;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.AffineTransform;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * Two more dependency-free PNG charts (headless java.awt): grouped bars (one group per category, one bar per
 * series, e.g. perplexity per dataset of several models) and a rectangular matrix heatmap with its values written
 * in the cells (e.g. routing share per dataset × expert); and a grid that puts several pictures into one.
 */
public final class Charts {
    private Charts() {}

    /**
     * @param categories one group of bars each (x axis, names written rotated)
     * @param series     series names (legend)
     * @param values     (series, categories), each ≥ 0
     */
    public static BufferedImage bars(String title, String yLabel, List<String> categories, List<String> series, double[][] values) {
        return bars(title, yLabel, categories, series, values, null, null);
    }

    /**
     * Bars with whiskers from {@code low} to {@code high} (e.g. the minimum and maximum over seeds); both null for none.
     * values, low, high (series, categories).
     */
    public static BufferedImage bars(String title, String yLabel, List<String> categories, List<String> series, double[][] values,
                                     double[][] low, double[][] high) {
        return bars(title, yLabel, categories, series, values, low, high, false);
    }

    /**
     * As {@link #bars(String, String, List, List, double[][], double[][], double[][])}; {@code logY}: a logarithmic y
     * axis from the decade below the smallest positive value to the decade above the largest (bars rise from that
     * floor; values must then be &gt; 0), for values that span orders of magnitude.
     */
    public static BufferedImage bars(String title, String yLabel, List<String> categories, List<String> series, double[][] values,
                                     double[][] low, double[][] high, boolean logY) {
        if ((low == null) != (high == null)) throw new IllegalArgumentException("bars: give both whisker ends or neither");
        if (values.length != series.size()) throw new IllegalArgumentException("bars: " + values.length + " rows for " + series.size() + " series");
        for (double[] row : values) if (row.length != categories.size()) throw new IllegalArgumentException("bars: a row of " + row.length + " values for " + categories.size() + " categories");
        int groupWidth = Math.max(24, 10 * series.size() + 10), plotLeft = 70, top = 60;
        Font font = new Font(Font.SANS_SERIF, Font.PLAIN, 12);
        FontMetrics fm = new BufferedImage(1, 1, BufferedImage.TYPE_INT_RGB).createGraphics().getFontMetrics(font);
        int nameWidth = 0;
        for (String c : categories) nameWidth = Math.max(nameWidth, fm.stringWidth(c));
        int plotWidth = Math.max(400, groupWidth * categories.size()), plotHeight = 320;
        int width = plotLeft + plotWidth + 30, height = top + plotHeight + nameWidth + 20;
        double max = 0, minPositive = Double.POSITIVE_INFINITY;
        for (double[] row : values) for (double v : row) if (Double.isFinite(v)) { max = Math.max(max, v); if (v > 0) minPositive = Math.min(minPositive, v); }
        if (high != null) for (double[] row : high) for (double v : row) if (Double.isFinite(v)) max = Math.max(max, v);
        if (low != null) for (double[] row : low) for (double v : row) if (Double.isFinite(v) && v > 0) minPositive = Math.min(minPositive, v);
        if (logY) for (double[] row : values) for (double v : row)
            if (Double.isFinite(v) && v <= 0) throw new IllegalArgumentException("bars: a log axis needs values > 0, found " + v);
        // the axis as a map value → fraction of the plot height, and its ticks (in values)
        double lo = logY && max > 0 ? Math.floor(Math.log10(minPositive)) : 0;
        double hi = logY && max > 0 ? Math.max(lo + 1, Math.ceil(Math.log10(max))) : 0;
        double[] ticks = logY && max > 0 ? java.util.Arrays.stream(Plot.logTicks(lo, hi)).map(t -> Math.pow(10, t)).toArray()
                : Plot.niceTicks(0, max > 0 ? max : 1, 6);
        double yMax = ticks[ticks.length - 1];
        java.util.function.DoubleUnaryOperator frac = logY && max > 0
                ? v -> Math.max(0, Math.min(1, (Math.log10(v) - lo) / (hi - lo)))
                : v -> Math.min(v, yMax) / yMax;
        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = start(image, font);
        g.drawString(title, plotLeft, 20);
        for (int s = 0; s < series.size(); s++) {  // legend
            int x = plotLeft + s * 160;
            g.setColor(Plot.PALETTE.get(s % Plot.PALETTE.size()));
            g.fillRect(x, 32, 12, 12);
            g.setColor(Color.BLACK);
            g.drawString(series.get(s), x + 16, 43);
        }
        for (double t : ticks) {
            int y = top + plotHeight - (int) Math.round(frac.applyAsDouble(t) * plotHeight);
            g.setColor(new Color(0xdddddd));
            g.drawLine(plotLeft, y, plotLeft + plotWidth, y);
            g.setColor(Color.BLACK);
            String label = logY ? Plot.tickLabel(t) : String.format(Locale.ROOT, t >= 100 ? "%.0f" : "%.3g", t);
            g.drawString(label, plotLeft - 6 - fm.stringWidth(label), y + 4);
        }
        String yText = yLabel + (logY ? " (log)" : "");
        drawRotated(g, yText, 14, top + plotHeight / 2 + fm.stringWidth(yText) / 2);
        int barWidth = Math.max(3, (groupWidth - 8) / series.size());
        for (int c = 0; c < categories.size(); c++) {
            int x0 = plotLeft + c * plotWidth / categories.size() + 4;
            for (int s = 0; s < series.size(); s++) {
                double v = values[s][c];
                if (!Double.isFinite(v)) continue;
                int h = (int) Math.round(frac.applyAsDouble(v) * plotHeight);
                g.setColor(Plot.PALETTE.get(s % Plot.PALETTE.size()));
                g.fillRect(x0 + s * barWidth, top + plotHeight - h, barWidth - 1, h);
                if (low != null && Double.isFinite(low[s][c]) && Double.isFinite(high[s][c])) {
                    int yLow = top + plotHeight - (int) Math.round(frac.applyAsDouble(low[s][c]) * plotHeight);
                    int yHigh = top + plotHeight - (int) Math.round(frac.applyAsDouble(high[s][c]) * plotHeight);
                    int xMid = x0 + s * barWidth + (barWidth - 1) / 2;
                    g.setColor(Color.BLACK);
                    g.drawLine(xMid, yLow, xMid, yHigh);
                    g.drawLine(xMid - 2, yLow, xMid + 2, yLow);
                    g.drawLine(xMid - 2, yHigh, xMid + 2, yHigh);
                }
            }
            g.setColor(Color.BLACK);
            drawRotated(g, categories.get(c), x0 + groupWidth / 2 + 4, top + plotHeight + 8 + fm.stringWidth(categories.get(c)));
        }
        g.drawLine(plotLeft, top + plotHeight, plotLeft + plotWidth, top + plotHeight);
        g.drawLine(plotLeft, top, plotLeft, top + plotHeight);
        g.dispose();
        return image;
    }

    /** (rows × columns) values in [0, max] coloured like {@link Heatmap}, each cell labelled with its value */
    public static BufferedImage matrix(String title, List<String> rowNames, List<String> columnNames, double[][] values) {
        if (values.length != rowNames.size()) throw new IllegalArgumentException("matrix: " + values.length + " rows for " + rowNames.size() + " names");
        for (double[] row : values) if (row.length != columnNames.size()) throw new IllegalArgumentException("matrix: a row of " + row.length + " values for " + columnNames.size() + " columns");
        Font font = new Font(Font.SANS_SERIF, Font.PLAIN, 11);
        FontMetrics fm = new BufferedImage(1, 1, BufferedImage.TYPE_INT_RGB).createGraphics().getFontMetrics(font);
        int nameWidth = 0;
        for (String r : rowNames) nameWidth = Math.max(nameWidth, fm.stringWidth(r));
        int cellW = 44, cellH = 20, left = nameWidth + 16, top = 50;
        int width = Math.max(left + cellW * columnNames.size() + 20, fm.stringWidth(title) + 20), height = top + cellH * rowNames.size() + 20;
        double max = 0;
        for (double[] row : values) for (double v : row) if (Double.isFinite(v)) max = Math.max(max, v);
        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = start(image, font);
        g.drawString(title, 10, 18);
        for (int c = 0; c < columnNames.size(); c++) {
            String name = columnNames.get(c);
            g.drawString(name, left + c * cellW + (cellW - fm.stringWidth(name)) / 2, top - 6);
        }
        for (int r = 0; r < rowNames.size(); r++) {
            g.setColor(Color.BLACK);
            g.drawString(rowNames.get(r), 8, top + r * cellH + cellH - 6);
            for (int c = 0; c < columnNames.size(); c++) {
                double t = max > 0 ? values[r][c] / max : 0;
                Color color = Heatmap.color(t);
                g.setColor(color);
                g.fillRect(left + c * cellW, top + r * cellH, cellW - 1, cellH - 1);
                g.setColor(t > 0.6 ? Color.BLACK : Color.WHITE);
                String label = String.format(Locale.ROOT, "%.2f", values[r][c]);
                g.drawString(label, left + c * cellW + (cellW - fm.stringWidth(label)) / 2, top + r * cellH + cellH - 6);
            }
        }
        g.dispose();
        return image;
    }

    /** pictures side by side, {@code columns} per row, each in a cell as large as the largest (white around) */
    public static BufferedImage grid(List<BufferedImage> panels, int columns) {
        if (panels.isEmpty() || columns < 1) throw new IllegalArgumentException("grid: " + panels.size() + " panels in " + columns + " columns");
        int cellW = 0, cellH = 0;
        for (BufferedImage p : panels) { cellW = Math.max(cellW, p.getWidth()); cellH = Math.max(cellH, p.getHeight()); }
        int cols = Math.min(columns, panels.size()), rows = (panels.size() + cols - 1) / cols;
        BufferedImage image = new BufferedImage(cols * cellW, rows * cellH, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = start(image, new Font(Font.SANS_SERIF, Font.PLAIN, 11));
        for (int i = 0; i < panels.size(); i++) g.drawImage(panels.get(i), (i % cols) * cellW, (i / cols) * cellH, null);
        g.dispose();
        return image;
    }

    /** writes a PNG atomically (temp file + rename) */
    public static void writePng(BufferedImage image, Path file) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        if (!ImageIO.write(image, "png", bytes)) throw new IOException(file + ": no PNG writer in this JVM");
        AtomicFiles.write(file, channel -> AtomicFiles.writeFully(channel, ByteBuffer.wrap(bytes.toByteArray())));
    }

    private static Graphics2D start(BufferedImage image, Font font) {
        Graphics2D g = image.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, image.getWidth(), image.getHeight());
        g.setColor(Color.BLACK);
        g.setFont(font);
        return g;
    }

    private static void drawRotated(Graphics2D g, String text, int x, int y) {
        AffineTransform saved = g.getTransform();
        g.rotate(-Math.PI / 2, x, y);
        g.drawString(text, x, y);
        g.setTransform(saved);
    }
}
