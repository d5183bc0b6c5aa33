package dive.backend;

import dive.cuda.CudaDevice;
import dive.cuda.DeviceArena;
import dive.cuda.DeviceBuffer;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * The weights of a {@link CudaBackend} on its device, the GPU counterpart of {@link PackedWeights}: read-only tensors
 * (memory-mapped checkpoints) uploaded once and cached, weakly keyed per tensor and form (a device copy is freed once
 * its Tensor is collected, or on close); expert sets stacked (E, N, K) for the grouped kernels of native/src/moe.cu;
 * writable tensors (being trained) uploaded into the device workspace on every call. Device memory comes from
 * dive_malloc (native/src/runtime.cu). Not thread-safe: callers hold the device lock.
 */
final class CudaWeights implements AutoCloseable {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT;

    private final CudaDevice device;
    private final DeviceArena arena = new DeviceArena("weights");
    private final ReferenceQueue<Tensor> collected = new ReferenceQueue<>();
    private final Map<WeightKey, DeviceBuffer> weights = new HashMap<>();
    private final Map<WeightKey, Stack> stacks = new HashMap<>();

    CudaWeights(CudaDevice device) { this.device = device; }

    /** how a weight is kept on the device: as stored (F32, or BF16 bits), or widened to F32 */
    enum Form { NATIVE, F32 }

    private static boolean keptAsBf16(Tensor w, Form form) { return form == Form.NATIVE && w.dtype() == DType.BF16; }

    private static long deviceBytes(Tensor w, Form form) { return w.numel() * (keptAsBf16(w, form) ? 2 : 4); }

    /** identity of a tensor (weakly held) and a form */
    private static final class WeightKey extends WeakReference<Tensor> {
        final Form form;
        final int hash;

        WeightKey(Tensor t, Form form, ReferenceQueue<Tensor> queue) {
            super(t, queue);
            this.form = form;
            this.hash = System.identityHashCode(t) * 31 + form.ordinal();
        }

        @Override public int hashCode() { return hash; }

        @Override public boolean equals(Object o) {
            if (this == o) return true;
            if (!(o instanceof WeightKey k) || k.form != form) return false;
            Tensor t = get();
            return t != null && t == k.get();
        }
    }

    /** experts' weights stacked (E, N, K) for the grouped kernels */
    private record Stack(WeakReference<Tensor>[] members, DeviceBuffer buffer) {
        boolean holds(Tensor[] w) {
            if (members.length != w.length) return false;
            for (int e = 0; e < w.length; e++) if (members[e].get() != w[e]) return false;
            return true;
        }
    }

    /** frees the device copies of collected tensors */
    private void expunge() {
        for (var ref = collected.poll(); ref != null; ref = collected.poll()) {
            DeviceBuffer b = weights.remove(ref);
            if (b != null) arena.free(b);
            Stack s = stacks.remove(ref);
            if (s != null) arena.free(s.buffer());
        }
    }

    /** copies w (in the given form) into dst on the stream; staging lives in {@code host} */
    private void uploadWeight(DeviceBuffer dst, Tensor w, Form form, Arena host) {
        if (!w.dtype().isFloatWeight())
            throw new IllegalArgumentException("weight '" + w.name() + "' is " + w.dtype() + ", expected F32, BF16 or F16");
        MemorySegment data = w.data();
        if (w.dtype() == DType.F32 || keptAsBf16(w, form)) {
            if (data.isNative()) {
                device.upload(dst, data);            // straight from the (mapped) file or off-heap values
            } else {
                MemorySegment staged = host.allocate(data.byteSize(), 16);
                staged.copyFrom(data);
                device.upload(dst, staged);
            }
        } else {                                      // BF16 / F16 widened to F32 on the host
            long n = w.numel();
            MemorySegment staged = host.allocate(4 * n, 16);
            for (long i = 0; i < n; i++) staged.setAtIndex(F, i, w.getFloat(i));
            device.upload(dst, staged);
        }
    }

    private static boolean cacheable(Tensor w) { return w.data().isReadOnly(); }

    /**
     * The device copies of {@code ws} in {@code form}: cached ones for read-only tensors (uploaded on first use),
     * fresh uploads into the weight workspace for writable ones. One call per op (the workspace is carved once).
     */
    DeviceBuffer[] get(Form form, Arena host, Tensor... ws) {
        expunge();
        long[] transientBytes = new long[ws.length];
        for (int i = 0; i < ws.length; i++) transientBytes[i] = cacheable(ws[i]) ? 0 : deviceBytes(ws[i], form);
        DeviceBuffer[] scratch = device.workspace(1, transientBytes);
        DeviceBuffer[] out = new DeviceBuffer[ws.length];
        for (int i = 0; i < ws.length; i++) {
            Tensor w = ws[i];
            if (!cacheable(w)) {
                uploadWeight(scratch[i], w, form, host);
                out[i] = scratch[i];
                continue;
            }
            WeightKey key = new WeightKey(w, form, collected);
            DeviceBuffer cached = weights.get(key);
            if (cached == null) {
                cached = arena.allocate(deviceBytes(w, form));
                uploadWeight(cached, w, form, host);
                weights.put(key, cached);
            } else {
                key.clear();
            }
            out[i] = cached;
        }
        return out;
    }

    /**
     * The experts' weights stacked (E, N, K) in one device buffer, in {@code form}: cached when all are read-only; else
     * uploaded into the weight workspace, skipping experts without rows (the kernels do not read them).
     */
    @SuppressWarnings("unchecked")
    DeviceBuffer stacked(Tensor[] w, Form form, int[] offsets, Arena host) {
        expunge();
        long each = deviceBytes(w[0], form);
        boolean cacheable = Arrays.stream(w).allMatch(CudaWeights::cacheable);
        if (!cacheable) {
            DeviceBuffer buffer = device.workspace(1, each * w.length)[0];
            for (int e = 0; e < w.length; e++)
                if (offsets[e + 1] > offsets[e]) uploadWeight(buffer.slice(e * each, each), w[e], form, host);
            return buffer;
        }
        WeightKey key = new WeightKey(w[0], form, collected);
        Stack s = stacks.get(key);
        if (s != null && s.holds(w)) {
            key.clear();
            return s.buffer();
        }
        if (s != null) {                               // the same first expert in another group: replace
            stacks.remove(key);
            arena.free(s.buffer());
        }
        DeviceBuffer buffer = arena.allocate(each * w.length);
        for (int e = 0; e < w.length; e++) uploadWeight(buffer.slice(e * each, each), w[e], form, host);
        WeakReference<Tensor>[] members = new WeakReference[w.length];
        for (int e = 0; e < w.length; e++) members[e] = new WeakReference<>(w[e]);
        stacks.put(key, new Stack(members, buffer));
        return buffer;
    }

    /** bytes of device memory held by cached weights */
    long cachedBytes() {
        expunge();
        return arena.allocatedBytes();
    }

    /** frees every cached weight */
    @Override
    public void close() {
        weights.clear();
        stacks.clear();
        arena.close();
    }
}
