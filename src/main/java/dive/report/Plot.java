package dive.report;

import dive.util.AtomicFiles;

import javax.imageio.ImageIO;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Small line charts as PNG, drawn with java.awt in headless mode (no other dependency): axes with "nice"
 * ticks, several series in distinct colours, a legend, an optional logarithmic y axis. Points whose x or y is
 * not finite (or y ≤ 0 on a log axis) are skipped, breaking the line there.
 * <pre>
 *   new Plot("loss", "tokens", "nats").add("train", x, y).add("eval wiki", x2, y2).writePng(file);
 * </pre>
 */
public final class Plot {
    static { System.setProperty("java.awt.headless", "true"); }

    /** the series colours, in order (Tableau 10) */
    public static final List<Color> PALETTE = List.of(new Color(0x1f77b4), new Color(0xff7f0e), new Color(0x2ca02c),
            new Color(0xd62728), new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x7f7f7f),
            new Color(0xbcbd22), new Color(0x17becf));

    public record Series(String name, double[] x, double[] y, Color color) {}

    private final String title, xLabel, yLabel;
    private final List<Series> series = new ArrayList<>();
    private int width = 800, height = 500;
    private boolean logY;

    public Plot(String title, String xLabel, String yLabel) {
        this.title = title; this.xLabel = xLabel; this.yLabel = yLabel;
    }

    public Plot size(int widthPixels, int heightPixels) {
        if (widthPixels < 200 || heightPixels < 150) throw new IllegalArgumentException("plot size " + widthPixels + "×" + heightPixels + ": expected at least 200×150 pixels");
        this.width = widthPixels; this.height = heightPixels;
        return this;
    }

    public Plot logY(boolean logY) { this.logY = logY; return this; }

    /** adds a series in the next palette colour */
    public Plot add(String name, double[] x, double[] y) {
        return add(name, x, y, PALETTE.get(series.size() % PALETTE.size()));
    }

    public Plot add(String name, double[] x, double[] y, Color color) {
        if (x.length != y.length) throw new IllegalArgumentException("series '" + name + "': " + x.length + " x values but " + y.length + " y values");
        series.add(new Series(name, x.clone(), y.clone(), color));
        return this;
    }

    public List<Series> series() { return List.copyOf(series); }

    private boolean usable(double x, double y) { return Double.isFinite(x) && Double.isFinite(y) && (!logY || y > 0); }

    private double ty(double y) { return logY ? Math.log10(y) : y; }

    public BufferedImage render() {
        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        try {
            g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
            g.setColor(Color.WHITE);
            g.fillRect(0, 0, width, height);
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            FontMetrics fm = g.getFontMetrics();

            // data range (in plotted coordinates: log10 y on a log axis)
            double xMin = Double.POSITIVE_INFINITY, xMax = Double.NEGATIVE_INFINITY, yMin = xMin, yMax = xMax;
            for (Series s : series) {
                for (int i = 0; i < s.x.length; i++) {
                    if (!usable(s.x[i], s.y[i])) continue;
                    xMin = Math.min(xMin, s.x[i]); xMax = Math.max(xMax, s.x[i]);
                    yMin = Math.min(yMin, ty(s.y[i])); yMax = Math.max(yMax, ty(s.y[i]));
                }
            }
            if (xMin > xMax) { xMin = 0; xMax = 1; yMin = 0; yMax = 1; }
            if (xMax == xMin) { xMin -= 0.5; xMax += 0.5; }
            if (yMax == yMin) { yMin -= 0.5; yMax += 0.5; }
            double[] xTicks = niceTicks(xMin, xMax, 6);
            double[] yTicks = logY ? logTicks(yMin, yMax) : niceTicks(yMin, yMax, 6);
            xMin = Math.min(xMin, xTicks[0]); xMax = Math.max(xMax, xTicks[xTicks.length - 1]);
            if (!logY) { yMin = Math.min(yMin, yTicks[0]); yMax = Math.max(yMax, yTicks[yTicks.length - 1]); }

            int yLabelWidth = 0;
            for (double t : yTicks) yLabelWidth = Math.max(yLabelWidth, fm.stringWidth(tickLabel(logY ? Math.pow(10, t) : t)));
            int left = 30 + yLabelWidth, right = width - 20, top = 36, bottom = height - 48;
            int plotW = right - left, plotH = bottom - top;
            final double x0 = xMin, x1 = xMax, y0 = yMin, y1 = yMax;
            java.util.function.DoubleUnaryOperator px = x -> left + (x - x0) / (x1 - x0) * plotW;
            java.util.function.DoubleUnaryOperator py = y -> bottom - (y - y0) / (y1 - y0) * plotH;

            // grid, ticks, tick labels
            g.setStroke(new BasicStroke(1f));
            for (double t : xTicks) {
                int x = (int) Math.round(px.applyAsDouble(t));
                g.setColor(new Color(0xe6e6e6)); g.drawLine(x, top, x, bottom);
                g.setColor(Color.DARK_GRAY); g.drawLine(x, bottom, x, bottom + 4);
                String label = tickLabel(t);
                g.drawString(label, x - fm.stringWidth(label) / 2, bottom + 6 + fm.getAscent());
            }
            for (double t : yTicks) {
                if (t < y0 - 1e-12 || t > y1 + 1e-12) continue;
                int y = (int) Math.round(py.applyAsDouble(t));
                g.setColor(new Color(0xe6e6e6)); g.drawLine(left, y, right, y);
                g.setColor(Color.DARK_GRAY); g.drawLine(left - 4, y, left, y);
                String label = tickLabel(logY ? Math.pow(10, t) : t);
                g.drawString(label, left - 6 - fm.stringWidth(label), y + fm.getAscent() / 2 - 1);
            }
            g.setColor(Color.DARK_GRAY);
            g.drawRect(left, top, plotW, plotH);

            // titles
            g.setFont(g.getFont().deriveFont(Font.BOLD, 14f));
            g.drawString(title, (width - g.getFontMetrics().stringWidth(title)) / 2, 22);
            g.setFont(g.getFont().deriveFont(Font.PLAIN, 12f));
            g.drawString(xLabel, left + (plotW - fm.stringWidth(xLabel)) / 2, height - 12);
            var saved = g.getTransform();
            g.rotate(-Math.PI / 2);
            String yText = yLabel + (logY ? " (log)" : "");
            g.drawString(yText, -(top + (plotH + fm.stringWidth(yText)) / 2), 14);
            g.setTransform(saved);

            // series
            g.setClip(left, top, plotW + 1, plotH + 1);
            g.setStroke(new BasicStroke(2f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND));
            for (Series s : series) {
                g.setColor(s.color);
                Path2D.Double path = new Path2D.Double();
                boolean penDown = false;
                int points = 0;
                for (int i = 0; i < s.x.length; i++) {
                    if (!usable(s.x[i], s.y[i])) { penDown = false; continue; }
                    double x = px.applyAsDouble(s.x[i]), y = py.applyAsDouble(ty(s.y[i]));
                    if (penDown) path.lineTo(x, y); else path.moveTo(x, y);
                    penDown = true; points++;
                }
                g.draw(path);
                if (points <= 30) { // few points: mark them
                    for (int i = 0; i < s.x.length; i++) {
                        if (!usable(s.x[i], s.y[i])) continue;
                        double x = px.applyAsDouble(s.x[i]), y = py.applyAsDouble(ty(s.y[i]));
                        g.fillOval((int) Math.round(x) - 3, (int) Math.round(y) - 3, 7, 7);
                    }
                }
            }
            g.setClip(null);

            // legend, top right inside the plot
            if (!series.isEmpty()) {
                int legendW = 0;
                for (Series s : series) legendW = Math.max(legendW, fm.stringWidth(s.name));
                legendW += 40;
                int lineH = fm.getHeight() + 2, legendH = series.size() * lineH + 8;
                int lx = right - legendW - 8, ly = top + 8;
                g.setColor(new Color(255, 255, 255, 230));
                g.fillRect(lx, ly, legendW, legendH);
                g.setColor(Color.GRAY);
                g.setStroke(new BasicStroke(1f));
                g.drawRect(lx, ly, legendW, legendH);
                for (int i = 0; i < series.size(); i++) {
                    Series s = series.get(i);
                    int y = ly + 4 + i * lineH + lineH / 2;
                    g.setColor(s.color);
                    g.setStroke(new BasicStroke(3f));
                    g.drawLine(lx + 8, y, lx + 28, y);
                    g.setColor(Color.BLACK);
                    g.drawString(s.name, lx + 34, y + fm.getAscent() / 2 - 1);
                }
            }
        } finally {
            g.dispose();
        }
        return image;
    }

    /** renders and writes the PNG atomically (temp file + rename) */
    public void writePng(Path file) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        if (!ImageIO.write(render(), "png", bytes)) throw new IOException(file + ": no PNG writer in this JVM");
        AtomicFiles.write(file, channel -> AtomicFiles.writeFully(channel, ByteBuffer.wrap(bytes.toByteArray())));
    }

    /** about {@code target} ticks at 1, 2 or 5 × 10^k steps covering [min, max] */
    static double[] niceTicks(double min, double max, int target) {
        double raw = (max - min) / Math.max(1, target - 1);
        double magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
        double step = magnitude;
        for (double m : new double[] {1, 2, 5, 10}) { step = m * magnitude; if (step >= raw) break; }
        double first = Math.floor(min / step) * step, last = Math.ceil(max / step) * step;
        int n = (int) Math.round((last - first) / step) + 1;
        double[] ticks = new double[n];
        for (int i = 0; i < n; i++) ticks[i] = first + i * step;
        return ticks;
    }

    /** log10 positions of 1, 2, 5 × 10^k inside [min, max] (log10 units); powers of ten only when the range is wide */
    static double[] logTicks(double min, double max) {
        List<Double> ticks = new ArrayList<>();
        double[] mantissas = max - min > 3 ? new double[] {1} : new double[] {1, 2, 5};
        for (int k = (int) Math.floor(min); k <= (int) Math.ceil(max); k++) {
            for (double m : mantissas) {
                double t = k + Math.log10(m);
                if (t >= min - 1e-9 && t <= max + 1e-9) ticks.add(t);
            }
        }
        if (ticks.size() < 2) { // narrow range: nice linear values, placed on the log axis
            return java.util.Arrays.stream(niceTicks(Math.pow(10, min), Math.pow(10, max), 5)).filter(v -> v > 0).map(Math::log10).toArray();
        }
        return ticks.stream().mapToDouble(Double::doubleValue).toArray();
    }

    static String tickLabel(double v) {
        double a = Math.abs(v);
        if (v == 0) return "0";
        if (a >= 1e6 || a < 1e-3) { // 1.50e+06 → 1.5e6
            String[] parts = String.format(Locale.ROOT, "%.2e", v).split("e");
            return trimZeros(parts[0]) + "e" + Integer.parseInt(parts[1]);
        }
        if (a >= 1000) return String.format(Locale.ROOT, "%,.0f", v);
        return trimZeros(String.format(Locale.ROOT, "%.4f", v));
    }

    private static String trimZeros(String s) {
        return s.contains(".") ? s.replaceAll("0+$", "").replaceAll("\\.$", "") : s;
    }
}
