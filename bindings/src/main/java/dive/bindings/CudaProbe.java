package dive.bindings;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Asks the native library whether a usable GPU exists; answers with a one-line reason when not. */
public final class CudaProbe {
    private CudaProbe() {}

    public record Result(int deviceCount, String reason) {
        public boolean usable() { return deviceCount > 0; }
    }

    public static Result probe() {
        if (dive_h.available().isEmpty()) return new Result(0, dive_h.unavailableReason());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(ValueLayout.JAVA_INT);
            int status = dive_h.dive_device_count(count);
            if (status != 0) return new Result(0, "cudaGetDeviceCount failed: " + errorString(status) + " (status " + status + ")");
            int n = count.get(ValueLayout.JAVA_INT, 0);
            return new Result(n, n > 0 ? null : "no CUDA device visible");
        }
    }

    public static String errorString(int status) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(256);
            dive_h.dive_error_string(status, buf, 256);
            return buf.getString(0);
        }
    }
}
