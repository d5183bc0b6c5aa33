package dive.report;

import dive.util.AtomicFiles;

import javax.imageio.ImageIO;
import java.awt.*;
import java.awt.geom.AffineTransform;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * A square matrix over named items drawn as a PNG heatmap with its clustering dendrogram on the left: rows and
 * columns in the dendrogram's leaf order, names on the right of each row and under each column, a coloured mark per
 * group, a colour bar (viridis-like, from the matrix minimum to its maximum). Headless java.awt.
 */
public final class Heatmap {
    /** viridis sampled at 0, 0.25, 0.5, 0.75, 1 (matplotlib), interpolated linearly */
    static final Color[] COLOR_MAP = {new Color(0x440154), new Color(0x3b528b), new Color(0x21918c), new Color(0x5ec962), new Color(0xfde725)};

    private final String title;
    private final List<String> names;
    private final double[][] matrix;
    private final int[] left, right;   // merge m joins clusters left[m], right[m] (SciPy numbering: leaves 0..n−1, merge m makes n+m)
    private final double[] heights;
    private final int[] order;         // leaf order
    private final int[] groups;        // group per item, or null

    /**
     * @param matrix  (n × n), row i and column j belong to names[i], names[j]
     * @param left    per merge, the first cluster joined (n − 1 merges)
     * @param right   per merge, the second cluster joined
     * @param heights per merge, its height (distance)
     * @param order   the leaf order (a permutation of 0..n−1)
     * @param groups  group label per item (colours the marks), or null
     */
    public Heatmap(String title, List<String> names, double[][] matrix, int[] left, int[] right, double[] heights, int[] order, int[] groups) {
        int n = names.size();
        if (matrix.length != n) throw new IllegalArgumentException("heatmap: " + matrix.length + " rows for " + n + " names");
        for (double[] row : matrix) if (row.length != n) throw new IllegalArgumentException("heatmap: a row of " + row.length + " values for " + n + " names");
        if (left.length != n - 1 || right.length != n - 1 || heights.length != n - 1 || order.length != n)
            throw new IllegalArgumentException("heatmap: a dendrogram of " + n + " leaves needs " + (n - 1) + " merges and a leaf order of " + n);
        this.title = title; this.names = List.copyOf(names); this.matrix = matrix;
        this.left = left; this.right = right; this.heights = heights; this.order = order; this.groups = groups;
    }

    /** the colour of t ∈ [0, 1] */
    static Color color(double t) {
        t = Math.max(0, Math.min(1, Double.isNaN(t) ? 0 : t));
        double x = t * (COLOR_MAP.length - 1);
        int i = Math.min(COLOR_MAP.length - 2, (int) x);
        double f = x - i;
        Color a = COLOR_MAP[i], b = COLOR_MAP[i + 1];
        return new Color((int) Math.round(a.getRed() + f * (b.getRed() - a.getRed())),
                (int) Math.round(a.getGreen() + f * (b.getGreen() - a.getGreen())),
                (int) Math.round(a.getBlue() + f * (b.getBlue() - a.getBlue())));
    }

    /** cell size in pixels */
    int cell() { return Math.max(12, Math.min(40, 640 / Math.max(1, names.size()))); }

    public BufferedImage render() {
        int n = names.size(), cell = cell();
        BufferedImage probe = new BufferedImage(1, 1, BufferedImage.TYPE_INT_RGB);
        Font font = new Font(Font.SANS_SERIF, Font.PLAIN, Math.min(13, Math.max(9, cell - 3)));
        FontMetrics fm = probe.createGraphics().getFontMetrics(font);
        int nameWidth = 0;
        for (String s : names) nameWidth = Math.max(nameWidth, fm.stringWidth(s));
        int treeWidth = 200, margin = 16, top = 44;
        int gridLeft = margin + treeWidth + 6, gridTop = top, gridSize = n * cell;
        int labelsLeft = gridLeft + gridSize + 16;   // group mark, then the name
        int barLeft = labelsLeft + 14 + nameWidth + 24;
        int width = Math.max(barLeft + 90, gridLeft + 400), height = gridTop + gridSize + nameWidth + 30;

        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        try {
            g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
            g.setColor(Color.WHITE);
            g.fillRect(0, 0, width, height);
            g.setColor(Color.BLACK);
            g.setFont(font.deriveFont(Font.BOLD, 14f));
            g.drawString(title, margin, 24);
            g.setFont(font);

            double min = Double.POSITIVE_INFINITY, max = Double.NEGATIVE_INFINITY;
            for (double[] row : matrix) for (double v : row) if (Double.isFinite(v)) { min = Math.min(min, v); max = Math.max(max, v); }
            if (!(max > min)) { max = min + 1; }
            // cells, rows and columns in leaf order
            for (int r = 0; r < n; r++)
                for (int c = 0; c < n; c++) {
                    g.setColor(color((matrix[order[r]][order[c]] - min) / (max - min)));
                    g.fillRect(gridLeft + c * cell, gridTop + r * cell, cell, cell);
                }
            g.setColor(Color.GRAY);
            g.drawRect(gridLeft, gridTop, gridSize, gridSize);
            // names: right of each row (with a group mark), under each column (rotated)
            for (int r = 0; r < n; r++) {
                int y = gridTop + r * cell + cell / 2;
                if (groups != null) {
                    g.setColor(Plot.PALETTE.get(groups[order[r]] % Plot.PALETTE.size()));
                    g.fillRect(labelsLeft - 10, y - 4, 8, 8);
                }
                g.setColor(Color.BLACK);
                g.drawString(names.get(order[r]), labelsLeft + 2, y + fm.getAscent() / 2 - 1);
            }
            AffineTransform saved = g.getTransform();
            for (int c = 0; c < n; c++) {
                int x = gridLeft + c * cell + cell / 2 + fm.getAscent() / 2 - 1;
                g.setTransform(saved);
                g.translate(x, gridTop + gridSize + 6);
                g.rotate(Math.PI / 2);
                g.drawString(names.get(order[c]), 0, 0);
            }
            g.setTransform(saved);
            drawTree(g, margin, gridLeft - 4, gridTop, cell);
            drawColorBar(g, barLeft, gridTop, Math.min(gridSize, 300), min, max, fm);
        } finally {
            g.dispose();
        }
        return image;
    }

    /** the dendrogram: leaves at x = xLeaves on their rows, the root towards xRoot (height ∝ merge height) */
    private void drawTree(Graphics2D g, int xRoot, int xLeaves, int gridTop, int cell) {
        int n = names.size();
        double[] y = new double[2 * n - 1], x = new double[2 * n - 1];
        for (int r = 0; r < n; r++) { y[order[r]] = gridTop + r * cell + cell / 2.0; x[order[r]] = xLeaves; }
        double maxHeight = 0;
        for (double h : heights) maxHeight = Math.max(maxHeight, h);
        if (maxHeight <= 0) maxHeight = 1;
        g.setColor(Color.DARK_GRAY);
        g.setStroke(new BasicStroke(1.5f));
        for (int m = 0; m < n - 1; m++) {
            int a = left[m], b = right[m], made = n + m;
            x[made] = xLeaves - heights[m] / maxHeight * (xLeaves - xRoot);
            y[made] = (y[a] + y[b]) / 2;
            int xm = (int) Math.round(x[made]);
            g.drawLine(xm, (int) Math.round(y[a]), xm, (int) Math.round(y[b]));
            g.drawLine((int) Math.round(x[a]), (int) Math.round(y[a]), xm, (int) Math.round(y[a]));
            g.drawLine((int) Math.round(x[b]), (int) Math.round(y[b]), xm, (int) Math.round(y[b]));
        }
    }

    private void drawColorBar(Graphics2D g, int x, int y, int h, double min, double max, FontMetrics fm) {
        for (int i = 0; i < h; i++) {
            g.setColor(color(1 - (double) i / (h - 1)));
            g.fillRect(x, y + i, 16, 1);
        }
        g.setColor(Color.GRAY);
        g.drawRect(x, y, 16, h);
        g.setColor(Color.BLACK);
        g.drawString(String.format(Locale.ROOT, "%.3f", max), x + 20, y + fm.getAscent());
        g.drawString(String.format(Locale.ROOT, "%.3f", min), x + 20, y + h);
    }

    /** renders and writes the PNG atomically (temp file + rename) */
    public void writePng(Path file) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        if (!ImageIO.write(render(), "png", bytes)) throw new IOException(file + ": no PNG writer in this JVM");
        AtomicFiles.write(file, channel -> AtomicFiles.writeFully(channel, ByteBuffer.wrap(bytes.toByteArray())));
    }
}
