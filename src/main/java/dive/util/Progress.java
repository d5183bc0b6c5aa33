package dive.util;

import java.io.PrintStream;
import java.util.Locale;

/**
 * A progress bar on stderr for long work: {@code label [#######.....]  58%  580/1000 tokens  123.4 tokens/s  ETA 0:03}.
 * Redrawn in place on a terminal (at most ~10 times a second); where stderr is not a terminal it prints a
 * line at every 10% and at least once a minute, so logs stay short. Silent when disabled (e.g. {@code --quiet} or {@code --json}).
 */
public final class Progress implements AutoCloseable {
    private final String label, unit;
    private final long total;
    private final PrintStream out;
    private final boolean enabled, interactive;
    /** where stderr is not a terminal: a line at every 10%, and at least once a minute */
    static final long LOG_EVERY_NANOS = 60_000_000_000L;
    private final long startNanos = System.nanoTime();
    private long done, lastDrawNanos;
    private int lastDecile = -1;
    private String status = "";

    public Progress(String label, long total, String unit, boolean enabled) {
        this(label, total, unit, enabled, System.err, System.console() != null);
    }

    Progress(String label, long total, String unit, boolean enabled, PrintStream out, boolean interactive) {
        this.label = label; this.total = Math.max(1, total); this.unit = unit;
        MemoryPlan.enterStage(label);
        this.enabled = enabled; this.out = out; this.interactive = interactive;
    }

    /** advance by n units */
    public synchronized void step(long n) {
        done = Math.min(total, done + n);
        if (!enabled) return;
        long now = System.nanoTime();
        int decile = (int) (done * 10 / total);
        if (interactive ? (now - lastDrawNanos > 100_000_000L || done == total)
                        : decile != lastDecile || now - lastDrawNanos > LOG_EVERY_NANOS) {
            lastDrawNanos = now; lastDecile = decile;
            out.print((interactive ? "\r" : "") + render(now) + (interactive ? "" : "\n"));
            out.flush();
        }
    }

    /** text shown after the ETA from the next redraw on (e.g. {@code loss 3.21}); empty for none */
    public synchronized void setStatus(String status) { this.status = status == null ? "" : status; }

    String render(long nowNanos) {
        double seconds = Math.max(1e-9, (nowNanos - startNanos) / 1e9);
        double rate = done / seconds;
        int width = 24, filled = (int) (width * done / total);
        String bar = "#".repeat(filled) + ".".repeat(width - filled);
        String eta = rate > 0 ? clock((total - done) / rate) : "?";
        return String.format(Locale.ROOT, "%s [%s] %3d%%  %d/%d %s  %.1f %s/s  ETA %s",
                label, bar, done * 100 / total, done, total, unit, rate, unit, eta) + (status.isEmpty() ? "" : "  " + status);
    }

    static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }

    @Override public synchronized void close() {
        if (enabled && interactive) { out.println(); out.flush(); }
    }
}
