package dive.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A named view of off-heap data with a dtype and a row-major shape. Weights are Tensors over
 * memory-mapped safetensors files (zero copy); the view is read-only by convention.
 */
public record Tensor(String name, DType dtype, long[] shape, MemorySegment data) {
    public static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public Tensor {
        shape = shape.clone();
        long n = numel(shape);
        if (data.byteSize() != n * dtype.bytes)
            throw new IllegalArgumentException("tensor '" + name + "': " + data.byteSize() + " bytes for shape "
                    + Arrays.toString(shape) + " of " + dtype + " (expected " + n * dtype.bytes + ")");
    }

    public static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) n = Math.multiplyExact(n, d);
        return n;
    }

    public long numel() { return numel(shape); }
    public int rank() { return shape.length; }
    public long dim(int i) { return shape[i]; }

    /** rows of a matrix [rows, cols] */
    public int rows() { requireRank(2); return Math.toIntExact(shape[0]); }
    /** columns of a matrix [rows, cols] */
    public int cols() { requireRank(2); return Math.toIntExact(shape[1]); }

    private void requireRank(int r) {
        if (shape.length != r) throw new IllegalStateException("tensor '" + name + "' has shape " + Arrays.toString(shape) + ", expected rank " + r);
    }

    /** element i (flat index) widened to float; F32, F16, BF16, I32, I64 */
    public float getFloat(long i) {
        return switch (dtype) {
            case F32 -> data.getAtIndex(F32, i);
            case BF16 -> DType.bf16ToFloat(data.getAtIndex(I16, i));
            case F16 -> Float.float16ToFloat(data.getAtIndex(I16, i));
            case I32 -> data.getAtIndex(I32, i);
            case I64 -> data.getAtIndex(I64, i);
            default -> throw new UnsupportedOperationException("tensor '" + name + "': reading " + dtype + " as float");
        };
    }

    /**
     * element i set to {@code v}, rounded to nearest even for BF16 and F16; F32, F16, BF16. The data must be writable
     * (a tensor made by {@link #allocate}, for example).
     */
    public void setFloat(long i, float v) {
        switch (dtype) {
            case F32 -> data.setAtIndex(F32, i, v);
            case BF16 -> data.setAtIndex(I16, i, DType.floatToBf16(v));
            case F16 -> data.setAtIndex(I16, i, Float.floatToFloat16(v));
            default -> throw new UnsupportedOperationException("tensor '" + name + "': writing " + dtype + " from float");
        }
    }

    /** a new zero tensor of {@code dtype} in off-heap memory owned by {@code arena} (64-byte aligned) */
    public static Tensor allocate(String name, DType dtype, long[] shape, TensorArena arena) {
        return new Tensor(name, dtype, shape, arena.arena().allocate(Math.multiplyExact(numel(shape), (long) dtype.bytes), 64));
    }

    /**
     * copies all of {@code src} into this tensor, bit for bit: same dtype and element count (the shapes may differ).
     * The data must be writable.
     */
    public void copyFrom(Tensor src) {
        if (src.numel() != numel())
            throw new IllegalArgumentException("tensor '" + name + "': copying " + src.numel() + " elements of '" + src.name + "' into " + numel());
        copyFrom(src, 0, 0, numel());
    }

    /**
     * copies {@code count} elements of {@code src}, from its element {@code srcIndex} on (flat index), to this tensor's
     * elements from {@code index} on, bit for bit; same dtype. The data must be writable.
     */
    public void copyFrom(Tensor src, long srcIndex, long index, long count) {
        if (src.dtype != dtype)
            throw new IllegalArgumentException("tensor '" + name + "' (" + dtype + "): copying from '" + src.name + "' of " + src.dtype);
        long e = dtype.bytes;
        MemorySegment.copy(src.data, srcIndex * e, data, index * e, count * e);
    }

    /** this tensor over read-only memory (the same bytes) */
    public Tensor asReadOnly() { return new Tensor(name, dtype, shape, data.asReadOnly()); }

    /** all elements widened to a new float[] (copies) */
    public float[] toFloatArray() {
        long n = numel();
        if (n > Integer.MAX_VALUE - 8) throw new IllegalStateException("tensor '" + name + "' too large for a float[]");
        float[] out = new float[(int) n];
        if (dtype == DType.F32) {
            MemorySegment.copy(data, F32, 0, out, 0, out.length);
        } else {
            for (int i = 0; i < out.length; i++) out[i] = getFloat(i);
        }
        return out;
    }

    /** a new F32 tensor on the heap-backed segment of {@code values} */
    public static Tensor ofFloats(String name, float[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 4)]);
        MemorySegment.copy(values, 0, seg, F32, 0, values.length);
        return new Tensor(name, DType.F32, shape, seg);
    }

    /** the same data under another shape with the same element count */
    public Tensor reshape(long... newShape) {
        if (numel(newShape) != numel()) throw new IllegalArgumentException("tensor '" + name + "': cannot reshape " + Arrays.toString(shape) + " to " + Arrays.toString(newShape));
        return new Tensor(name, dtype, newShape, data);
    }

    @Override public String toString() { return name + " " + dtype + Arrays.toString(shape); }
    @Override public boolean equals(Object o) { return this == o; }
    @Override public int hashCode() { return System.identityHashCode(this); }
}
