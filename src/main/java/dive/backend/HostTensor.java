package dive.backend;

import dive.tensor.DType;

/**
 * A {@link DeviceTensor} of the CPU backends: a Java array (float[], int[] or double[]), the memory the Vector API
 * reads fastest. Only this package sees the array; everything else goes through the backend's counted transfers.
 */
final class HostTensor implements DeviceTensor {
    private final DType dtype;
    private final int size;
    /** the array (exactly one is set) until {@link #close}; then all null and, if pooled, the array back in its pool */
    float[] f;
    int[] i;
    double[] d;
    private HostPool pool;

    private HostTensor(DType dtype, int size, float[] f, int[] i, double[] d, HostPool pool) {
        this.dtype = dtype; this.size = size; this.f = f; this.i = i; this.d = d; this.pool = pool;
    }

    static HostTensor ofFloats(float[] f) { return new HostTensor(DType.F32, f.length, f, null, null, null); }
    static HostTensor ofInts(int[] i) { return new HostTensor(DType.I32, i.length, null, i, null, null); }
    static HostTensor ofDoubles(double[] d) { return new HostTensor(DType.F64, d.length, null, null, d, null); }

    /** zeros of {@code dtype}: F32, I32 or F64, from {@code pool} (a freed array of the same length when it has one) */
    static HostTensor allocate(DType dtype, long n, HostPool pool) {
        if (n < 0 || n > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException("tensor of " + n + " elements (expected 0 ≤ n ≤ " + (Integer.MAX_VALUE - 8) + " on the CPU)");
        int len = (int) n;
        HostTensor t = switch (dtype) {
            case F32 -> new HostTensor(dtype, len, pool.floats(len), null, null, pool);
            case I32 -> new HostTensor(dtype, len, null, pool.ints(len), null, pool);
            case F64 -> new HostTensor(dtype, len, null, null, pool.doubles(len), pool);
            default -> throw new IllegalArgumentException("device tensors hold F32, I32 or F64, not " + dtype);
        };
        pool.allocated(t.bytes());
        return t;
    }

    private long bytes() { return (long) size * (dtype == DType.F64 ? 8 : 4); }

    /** true once closed: the array is gone (back in the pool, or to the garbage collector) */
    boolean closed() { return f == null && i == null && d == null; }

    /** the array of any dtype (for copies), or an error naming the argument when closed */
    Object array(String what) {
        if (closed()) throw freed(what);
        return f != null ? f : i != null ? i : d;
    }

    @Override public DType dtype() { return dtype; }
    @Override public long size() { return size; }

    /** frees the array: a pooled one goes back for the next allocation of its length (closing twice does nothing) */
    @Override public void close() {
        Object a = f != null ? f : i != null ? i : d;
        f = null; i = null; d = null;
        if (pool != null && a != null) { pool.freed(bytes()); pool.give(a); }
        pool = null;
    }

    @Override public String toString() { return "HostTensor[" + dtype + " × " + size + (closed() ? ", closed]" : "]"); }

    /** the float[] of an F32 host tensor, or an error naming the argument */
    static float[] floats(DeviceTensor t, String what) {
        if (t instanceof HostTensor h && h.f != null) return h.f;
        throw wrong(t, what, "F32");
    }

    /** as {@link #floats} but null stays null (optional arguments) */
    static float[] floatsOrNull(DeviceTensor t, String what) { return t == null ? null : floats(t, what); }

    static int[] ints(DeviceTensor t, String what) {
        if (t instanceof HostTensor h && h.i != null) return h.i;
        throw wrong(t, what, "I32");
    }

    static double[] doubles(DeviceTensor t, String what) {
        if (t instanceof HostTensor h && h.d != null) return h.d;
        throw wrong(t, what, "F64");
    }

    private static IllegalStateException freed(String what) {
        return new IllegalStateException(what + " was used after it was freed (its scope closed)");
    }

    private static RuntimeException wrong(DeviceTensor t, String what, String expected) {
        if (t instanceof HostTensor h && h.closed()) return freed(what);
        if (t == null) return new IllegalArgumentException(what + " is null (expected an " + expected + " tensor of the CPU backend)");
        if (!(t instanceof HostTensor)) return new IllegalArgumentException(what + " is a " + t.getClass().getSimpleName()
                + " of another backend (expected an " + expected + " tensor of the CPU backend)");
        return new IllegalArgumentException(what + " is " + t.dtype() + " (expected " + expected + ")");
    }
}
