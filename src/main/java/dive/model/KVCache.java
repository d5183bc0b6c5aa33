package dive.model;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;

/**
 * Per-sequence attention state: the rotated keys and the values of every position seen so far, for every layer.
 * One cache per request; a cache is not thread-safe, the model that fills it is. Made by
 * {@link LlamaModel#newCache(int)}, in the memory of the model's backend; {@link #close} frees it at once (device
 * memory on a GPU; on the CPU the garbage collector frees it anyway).
 */
public final class KVCache implements AutoCloseable {
    final int numLayers;
    final int kvDim;
    final int capacity;
    /** keys[layer] (capacity, numKeyValueHeads, headDim) */
    final DeviceTensor[] keys;
    /** values[layer] (capacity, numKeyValueHeads, headDim) */
    final DeviceTensor[] values;
    int length;

    KVCache(LlamaConfig config, int capacity, Backend backend) {
        if (capacity <= 0) throw new IllegalArgumentException("KV cache capacity " + capacity + " (expected a positive number of positions)");
        this.numLayers = config.numHiddenLayers();
        this.kvDim = config.kvDim();
        this.capacity = capacity;
        long floats = (long) capacity * kvDim;
        if (floats > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException("KV cache of " + capacity + " positions × " + kvDim + " floats per layer exceeds a Java array");
        this.keys = new DeviceTensor[numLayers];
        this.values = new DeviceTensor[numLayers];
        for (int l = 0; l < numLayers; l++) {
            keys[l] = backend.allocate(DType.F32, floats);
            values[l] = backend.allocate(DType.F32, floats);
        }
    }

    /** positions already stored; the next token goes to position {@code length()} */
    public int length() { return length; }

    /** the most positions this cache can hold */
    public int capacity() { return capacity; }

    /** forgets every position (the memory is reused) */
    public void clear() { length = 0; }

    /** frees the cache's memory; it must not be used afterwards */
    @Override public void close() {
        for (DeviceTensor t : keys) t.close();
        for (DeviceTensor t : values) t.close();
    }
}
