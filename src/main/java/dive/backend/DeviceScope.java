package dive.backend;

import dive.tensor.DType;

import java.util.ArrayList;
import java.util.List;

/**
 * The device tensors of one piece of work (a forward call, a training step, one layer's backward), freed together
 * when it ends: {@code try (DeviceScope scope = new DeviceScope(backend)) { DeviceTensor x = scope.floats(n); … }}.
 * Not thread-safe.
 */
public final class DeviceScope implements AutoCloseable {
    private final Backend backend;
    private final List<AutoCloseable> held = new ArrayList<>();

    public DeviceScope(Backend backend) { this.backend = backend; }

    public Backend backend() { return backend; }

    /** a new F32 tensor of n zeros, freed with the scope */
    public DeviceTensor floats(long n) { return keep(backend.allocate(DType.F32, n)); }

    /** a new I32 tensor of n zeros, freed with the scope */
    public DeviceTensor ints(long n) { return keep(backend.allocate(DType.I32, n)); }

    /** {@code values} on the device (a counted transfer), freed with the scope */
    public DeviceTensor upload(int[] values) { return keep(backend.upload(values)); }

    /** {@code values} on the device (a counted transfer), freed with the scope */
    public DeviceTensor upload(float[] values) { return keep(backend.upload(values)); }

    /** a copy of src's first n elements (F32), on the device, freed with the scope */
    public DeviceTensor copyOf(DeviceTensor src, long n) {
        DeviceTensor t = floats(n);
        backend.copy(t, 0, src, 0, n);
        return t;
    }

    /** frees {@code t} with the scope */
    public <T extends AutoCloseable> T keep(T t) {
        held.add(t);
        return t;
    }

    @Override public void close() {
        RuntimeException first = null;
        for (int i = held.size() - 1; i >= 0; i--) {
            try {
                held.get(i).close();
            } catch (Exception e) {
                if (first == null) first = new IllegalStateException("freeing device memory: " + e.getMessage(), e);
            }
        }
        held.clear();
        if (first != null) throw first;
    }
}
