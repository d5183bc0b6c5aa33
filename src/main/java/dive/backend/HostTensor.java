package dive.backend;

import dive.tensor.DType;

/**
 * A {@link DeviceTensor} of the CPU backends: a Java array (float[], int[] or double[]), the memory the Vector API
 * reads fastest. Only this package sees the array; everything else goes through the backend's counted transfers.
 */
final class HostTensor implements DeviceTensor {
    final float[] f;
    final int[] i;
    final double[] d;

    private HostTensor(float[] f, int[] i, double[] d) { this.f = f; this.i = i; this.d = d; }

    static HostTensor ofFloats(float[] f) { return new HostTensor(f, null, null); }
    static HostTensor ofInts(int[] i) { return new HostTensor(null, i, null); }
    static HostTensor ofDoubles(double[] d) { return new HostTensor(null, null, d); }

    /** zeros of {@code dtype}: F32, I32 or F64 */
    static HostTensor allocate(DType dtype, long n) {
        if (n < 0 || n > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException("tensor of " + n + " elements (expected 0 ≤ n ≤ " + (Integer.MAX_VALUE - 8) + " on the CPU)");
        return switch (dtype) {
            case F32 -> ofFloats(new float[(int) n]);
            case I32 -> ofInts(new int[(int) n]);
            case F64 -> ofDoubles(new double[(int) n]);
            default -> throw new IllegalArgumentException("device tensors hold F32, I32 or F64, not " + dtype);
        };
    }

    @Override public DType dtype() { return f != null ? DType.F32 : i != null ? DType.I32 : DType.F64; }
    @Override public long size() { return f != null ? f.length : i != null ? i.length : d.length; }
    @Override public void close() {}
    @Override public String toString() { return "HostTensor[" + dtype() + " × " + size() + "]"; }

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

    private static IllegalArgumentException wrong(DeviceTensor t, String what, String expected) {
        if (t == null) return new IllegalArgumentException(what + " is null (expected an " + expected + " tensor of the CPU backend)");
        if (!(t instanceof HostTensor)) return new IllegalArgumentException(what + " is a " + t.getClass().getSimpleName()
                + " of another backend (expected an " + expected + " tensor of the CPU backend)");
        return new IllegalArgumentException(what + " is " + t.dtype() + " (expected " + expected + ")");
    }
}
