package dive.util;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A run's memory plan, stated before any work: what it will hold at its peak (mapped weights, built experts, trainable
 * state, activations, the runtime), compared with what the machine has. {@link #check} refuses, in one line, a plan that
 * cannot fit; {@link #line} is the line a command prints first. The last plan checked and the stage a run is in (a
 * progress bar's label) are remembered so that an {@link OutOfMemoryError} can be reported against them.
 *
 * <p>Two budgets: the whole process (heap and off-heap together) against the memory available to it (Linux
 * {@code MemAvailable}, or the cgroup limit when lower; {@link #available(long)} overrides, for tests), and
 * the items on the Java heap against the JVM's heap limit ({@code -Xmx}).
 */
public final class MemoryPlan {
    /** one part of the peak; {@code heap}: on the Java heap (float[] activations, gradients), else off-heap or mapped */
    public record Item(String what, long bytes, boolean heap) {}

    private final String command;
    private final List<Item> items = new ArrayList<>();
    private String hint = "";
    private long heapFloor;
    private long available = -1;

    private static volatile MemoryPlan last;
    private static volatile String stage;

    public MemoryPlan(String command) { this.command = command; }

    /** adds a part of the peak (bytes ≤ 0 are left out) */
    public MemoryPlan add(String what, long bytes, boolean heap) {
        if (bytes > 0) items.add(new Item(what, bytes, heap));
        return this;
    }

    /** what to lower when the plan does not fit, e.g. "lower batch_size or seq_len" */
    public MemoryPlan hint(String hint) { this.hint = hint; return this; }

    public List<Item> items() { return List.copyOf(items); }

    public long peakBytes() { return items.stream().mapToLong(Item::bytes).sum(); }

    /** the Java heap the run needs: its heap items, or more where another phase of the run needs more ({@link #heapAtLeast}) */
    public long heapBytes() { return Math.max(heapFloor, items.stream().filter(Item::heap).mapToLong(Item::bytes).sum()); }

    /** the memory this run may use, in place of what {@link #availableBytes()} measures (tests); bytes < 0: measure it */
    public MemoryPlan available(long bytes) { available = bytes; return this; }

    /** the memory this run may use: as set with {@link #available(long)}, else measured */
    public long available() { return available >= 0 ? available : availableBytes(); }

    /** the heap must hold at least {@code bytes} (a phase other than the peak one needs that much) */
    public MemoryPlan heapAtLeast(long bytes) { heapFloor = Math.max(heapFloor, bytes); return this; }

    /** one line: the parts, the peak, what the machine has */
    public String line() {
        StringBuilder sb = new StringBuilder("memory plan (" + command + "): ");
        for (int i = 0; i < items.size(); i++) sb.append(i == 0 ? "" : " + ").append(items.get(i).what()).append(' ').append(gb(items.get(i).bytes()));
        sb.append(" → peak ≈ ").append(gb(peakBytes())).append(" (heap ").append(gb(heapBytes())).append(" of ").append(gb(heapLimit()))
                .append("); this machine has ").append(gb(available())).append(" available");
        return sb.toString();
    }

    /**
     * Refuses a plan that does not fit, before any work, with one line naming both figures and what to lower; remembers
     * the plan for {@link #describeOutOfMemory}.
     *
     * @throws MemoryPlanException when the peak exceeds the available memory or the heap part exceeds the heap limit
     */
    public MemoryPlan check() {
        last = this;
        long available = available(), peak = peakBytes();
        String lower = hint.isEmpty() ? "" : ": " + hint;
        if (peak > available)
            throw new MemoryPlanException(command + " needs ≈ " + gb(peak) + ", this machine has " + gb(available) + " available" + lower
                    + " (plan: " + parts() + ")");
        if (heapBytes() > heapLimit())
            throw new MemoryPlanException(command + " needs ≈ " + gb(heapBytes()) + " of Java heap, the JVM may use " + gb(heapLimit())
                    + lower + ", or give the JVM more with DIVE_JAVA_OPTS=-Xmx… (plan: " + parts() + ")");
        return this;
    }

    private String parts() {
        StringBuilder sb = new StringBuilder();
        for (Item i : items) sb.append(sb.isEmpty() ? "" : ", ").append(i.what()).append(' ').append(gb(i.bytes()));
        return sb.toString();
    }

    /** the stage a run is in, for error messages (set by {@link Progress}); null before any */
    public static void enterStage(String name) { stage = name; }

    /** one line for an {@link OutOfMemoryError}: where it happened and what the plan said */
    public static String describeOutOfMemory(OutOfMemoryError e) {
        MemoryPlan plan = last;
        String where = stage == null ? "" : " in stage '" + stage + "'";
        String planned = plan == null ? "" : "; the plan said peak ≈ " + gb(plan.peakBytes()) + " (heap " + gb(plan.heapBytes()) + ")";
        return "out of memory" + where + " (" + e.getMessage() + ")" + planned + "; the JVM heap limit is " + gb(heapLimit())
                + ": lower the batch or window sizes, or raise the limit with DIVE_JAVA_OPTS=-Xmx…";
    }

    /** the JVM's heap limit in bytes */
    public static long heapLimit() { return Runtime.getRuntime().maxMemory(); }

    /** memory this process can still use: MemAvailable, or the cgroup's remaining limit when lower */
    public static long availableBytes() {
        long available = meminfo("MemAvailable:");
        long cgroup = cgroupRemaining();
        if (cgroup > 0 && (available <= 0 || cgroup < available)) available = cgroup;
        if (available <= 0) available = Runtime.getRuntime().maxMemory();
        // what this JVM already holds counts as available to it
        return available + currentRss();
    }

    private static long meminfo(String key) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo")))
                if (line.startsWith(key)) return Long.parseLong(line.substring(key.length()).replace("kB", "").strip()) * 1024;
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }

    private static long cgroupRemaining() {
        try {
            Path max = Path.of("/sys/fs/cgroup/memory.max"), current = Path.of("/sys/fs/cgroup/memory.current");
            if (!Files.isRegularFile(max) || !Files.isRegularFile(current)) return -1;
            String m = Files.readString(max).strip();
            if (m.equals("max")) return -1;
            return Long.parseLong(m) - Long.parseLong(Files.readString(current).strip());
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    private static long currentRss() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status")))
                if (line.startsWith("VmRSS:")) return Long.parseLong(line.substring(6).replace("kB", "").strip()) * 1024;
        } catch (IOException | RuntimeException e) {
            return 0;
        }
        return 0;
    }

    /** bytes as "1.2 GB" / "340 MB" (decimal units) */
    public static String gb(long bytes) {
        if (bytes >= 1_000_000_000L) return String.format(Locale.ROOT, "%.1f GB", bytes / 1e9);
        return String.format(Locale.ROOT, "%d MB", Math.max(1, Math.round(bytes / 1e6)));
    }
}
