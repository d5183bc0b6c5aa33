package dive.backend;

import java.util.concurrent.atomic.LongAdder;

/**
 * Counts a backend's host↔device transfers: every {@link Backend#upload}, {@link Backend#write} (host → device) and
 * {@link Backend#download}, {@link Backend#read} or scalar result such as a loss (device → host), with their bytes. On
 * the CPU backends no byte moves between memories, but the count is kept the same way, so ordinary tests prove that a
 * step transfers only at its edges (token ids in; logits, losses, statistics out) — the property the GPU path's speed
 * rests on. Thread-safe.
 */
public final class Transfers {
    private final LongAdder toDevice = new LongAdder(), toHost = new LongAdder();
    private final LongAdder bytesToDevice = new LongAdder(), bytesToHost = new LongAdder();

    void countToDevice(long bytes) { toDevice.increment(); bytesToDevice.add(bytes); }
    void countToHost(long bytes) { toHost.increment(); bytesToHost.add(bytes); }

    /** host → device transfers so far */
    public long toDevice() { return toDevice.sum(); }
    /** device → host transfers so far */
    public long toHost() { return toHost.sum(); }
    public long bytesToDevice() { return bytesToDevice.sum(); }
    public long bytesToHost() { return bytesToHost.sum(); }

    /** the counts now, to subtract from a later one */
    public Snapshot snapshot() { return new Snapshot(toDevice(), toHost(), bytesToDevice(), bytesToHost()); }

    /** counts at one moment; {@link #since} gives the transfers between two */
    public record Snapshot(long toDevice, long toHost, long bytesToDevice, long bytesToHost) {
        public Snapshot since(Snapshot before) {
            return new Snapshot(toDevice - before.toDevice, toHost - before.toHost, bytesToDevice - before.bytesToDevice,
                    bytesToHost - before.bytesToHost);
        }
        @Override public String toString() {
            return toDevice + " to device (" + bytesToDevice + " B), " + toHost + " to host (" + bytesToHost + " B)";
        }
    }
}
