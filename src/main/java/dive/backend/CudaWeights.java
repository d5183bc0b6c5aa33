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
import java.util.HashMap;
import java.util.Map;

/**
 * The {@link CudaBackend}'s device copies of weights ({@link Tensor}s: checkpoint memory), the GPU counterpart of
 * {@link PackedWeights}, keyed weakly by tensor identity: each is uploaded once, on first use (a counted host → device
 * transfer), and freed when its Tensor is collected or the cache is closed. Device memory comes from dive_malloc
 * (native/src/runtime.cu). Experts are not stacked: the grouped kernels take a table of the experts' device pointers.
 * Not thread-safe: the backend calls it under its device lock.
 *
 * <p><b>Forms.</b> F32 stays F32; BF16 stays BF16 where a kernel reads BF16 ({@link Form#NATIVE}: matmuls, embedding)
 * and is widened to F32 where one reads F32 ({@link Form#F32}: norm weights, biases, F32 grouped matmuls); F16 is
 * widened to F32 in both (no F16 kernels). An F32 tensor has one device buffer for both forms.
 *
 * <p><b>Trainable weights</b> (writable F32) live on the device for the whole stage: {@link #master} hands the device
 * copy to the optimizer and marks it newer than the host memory; {@link #readBack} copies it to the host memory;
 * {@link #changed} marks the host memory newer (a restored checkpoint, a merge), so the next use uploads it again —
 * into the same device buffers, whose addresses never change while the tensor is cached.
 */
final class CudaWeights implements AutoCloseable {
    /** how a weight is read on the device: as stored (F32, BF16 bits; F16 widened), or widened to F32 */
    enum Form { NATIVE, F32 }

    private final CudaDevice device;
    private final Transfers transfers;
    private final DeviceArena arena = new DeviceArena("weights");
    private final ReferenceQueue<Tensor> collected = new ReferenceQueue<>();
    private final Map<Key, Entry> entries = new HashMap<>();

    CudaWeights(CudaDevice device, Transfers transfers) {
        this.device = device;
        this.transfers = transfers;
    }

    /** identity of a tensor, weakly held */
    private static final class Key extends WeakReference<Tensor> {
        final int hash;

        Key(Tensor t, ReferenceQueue<Tensor> queue) {
            super(t, queue);
            this.hash = System.identityHashCode(t);
        }

        @Override public int hashCode() { return hash; }

        @Override public boolean equals(Object o) {
            if (this == o) return true;
            if (!(o instanceof Key k)) return false;
            Tensor t = get();
            return t != null && t == k.get();
        }
    }

    /** the device copies of one tensor */
    private static final class Entry {
        DeviceBuffer bf16, f32;
        /** the host memory changed since the upload: upload again before the next use */
        boolean hostNewer;
        /** the optimizer updated the F32 copy: the host memory is behind until {@link #readBack} */
        boolean deviceNewer;
    }

    private static boolean keptAsBf16(Tensor w, Form form) { return form == Form.NATIVE && w.dtype() == DType.BF16; }

    /** frees the device copies of collected tensors */
    private void expunge() {
        for (var ref = collected.poll(); ref != null; ref = collected.poll()) {
            Entry e = entries.remove(ref);
            if (e == null) continue;
            if (e.bf16 != null) arena.free(e.bf16);
            if (e.f32 != null) arena.free(e.f32);
        }
    }

    private Entry find(Tensor w) {
        Key probe = new Key(w, null);
        Entry e = entries.get(probe);
        probe.clear();
        return e;
    }

    /**
     * The device copy of {@code w} in {@code form}, uploaded on first use (and again after {@link #changed}); staging for
     * the upload lives in {@code host}.
     */
    DeviceBuffer get(Tensor w, Form form, Arena host) {
        if (!w.dtype().isFloatWeight())
            throw new IllegalArgumentException("weight '" + w.name() + "' is " + w.dtype() + ", expected F32, BF16 or F16");
        expunge();
        Entry e = find(w);
        if (e == null) {
            e = new Entry();
            entries.put(new Key(w, collected), e);
        }
        if (e.hostNewer) {                       // into the same buffers: their addresses stay valid
            if (e.bf16 != null) upload(e.bf16, w, true, host);
            if (e.f32 != null) upload(e.f32, w, false, host);
            e.hostNewer = false;
        }
        boolean bf16 = keptAsBf16(w, form);
        DeviceBuffer b = bf16 ? e.bf16 : e.f32;
        if (b == null) {
            b = arena.allocate(w.numel() * (bf16 ? 2 : 4));
            upload(b, w, bf16, host);
            if (bf16) e.bf16 = b;
            else e.f32 = b;
        }
        return b;
    }

    /** the device copy of a trainable F32 weight for the optimizer to update: from now on newer than the host memory */
    DeviceBuffer master(Tensor param, Arena host) {
        DeviceBuffer b = get(param, Form.F32, host);
        find(param).deviceNewer = true;
        return b;
    }

    /** copies an optimizer-updated device copy into {@code w}'s host memory (waits for the stream); else nothing */
    void readBack(Tensor w, Arena host) {
        Entry e = find(w);
        if (e == null || !e.deviceNewer || e.f32 == null) return;
        MemorySegment data = w.data();
        long bytes = w.numel() * 4;
        if (data.isNative()) {
            device.download(data.asSlice(0, bytes), e.f32);
        } else {
            MemorySegment staged = host.allocate(bytes, 16);
            device.download(staged, e.f32);
            MemorySegment.copy(staged, 0, data, 0, bytes);
        }
        e.deviceNewer = false;
    }

    /** {@code w}'s host memory changed: the next use uploads it again (a device update not read back is dropped) */
    void changed(Tensor w) {
        Entry e = find(w);
        if (e == null) return;
        e.hostNewer = true;
        e.deviceNewer = false;
    }

    /** copies w into dst on the stream (as BF16 bits or F32; counted as a host → device transfer) */
    private void upload(DeviceBuffer dst, Tensor w, boolean bf16, Arena host) {
        MemorySegment data = w.data();
        long n = w.numel();
        if (w.dtype() == DType.F32 || bf16) {
            MemorySegment bytes = data.asSlice(0, n * (bf16 ? 2 : 4));
            if (bytes.isNative()) {
                device.upload(dst, bytes);      // straight from the (mapped) file or off-heap values
            } else {
                MemorySegment staged = host.allocate(bytes.byteSize(), 16);
                staged.copyFrom(bytes);
                device.upload(dst, staged);
            }
        } else {                                // BF16 / F16 widened to F32 on the host
            MemorySegment staged = host.allocate(4 * n, 16);
            for (long i = 0; i < n; i++) staged.setAtIndex(ValueLayout.JAVA_FLOAT, i, w.getFloat(i));
            device.upload(dst, staged);
        }
        transfers.countToDevice(dst.bytes());
    }

    /** bytes of device memory held */
    long bytes() {
        expunge();
        return arena.allocatedBytes();
    }

    /** tensors cached */
    int size() {
        expunge();
        return entries.size();
    }

    @Override public void close() {
        entries.clear();
        arena.close();
    }
}
