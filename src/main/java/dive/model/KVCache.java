package dive.model;

/**
 * Per-sequence attention state: the rotated keys and the values of every position seen so far, for every layer.
 * One cache per request; a cache is not thread-safe, the model that fills it is. Made by
 * {@link LlamaModel#newCache(int)}.
 */
public final class KVCache {
    final int numLayers;
    final int kvDim;
    final int capacity;
    /** keys[layer] (capacity, numKeyValueHeads, headDim) */
    final float[][] keys;
    /** values[layer] (capacity, numKeyValueHeads, headDim) */
    final float[][] values;
    int length;

    KVCache(LlamaConfig config, int capacity) {
        if (capacity <= 0) throw new IllegalArgumentException("KV cache capacity " + capacity + " (expected a positive number of positions)");
        this.numLayers = config.numHiddenLayers();
        this.kvDim = config.kvDim();
        this.capacity = capacity;
        long floats = (long) capacity * kvDim;
        if (floats > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException("KV cache of " + capacity + " positions × " + kvDim + " floats per layer exceeds a Java array");
        this.keys = new float[numLayers][(int) floats];
        this.values = new float[numLayers][(int) floats];
    }

    /** positions already stored; the next token goes to position {@code length()} */
    public int length() { return length; }

    /** the most positions this cache can hold */
    public int capacity() { return capacity; }

    /** forgets every position (the arrays are reused) */
    public void clear() { length = 0; }
}
