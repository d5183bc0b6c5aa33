package dive.train;

import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A named F32 parameter being trained: its value (a writable off-heap Tensor, so the Backend's forward
 * ops read it like any weight) and its gradient accumulator (same shape, F32 on the heap).
 * {@code trainable} false = frozen: no gradient is accumulated and the optimizer skips it.
 */
public final class Parameter {
    private final String name;
    private final Tensor value;
    private final float[] grad;
    private boolean trainable = true;

    public Parameter(String name, Tensor value) {
        if (value.dtype() != DType.F32) throw new IllegalArgumentException("parameter '" + name + "' must be F32, is " + value.dtype());
        if (value.data().isReadOnly()) throw new IllegalArgumentException("parameter '" + name + "' lives in read-only memory");
        this.name = name;
        this.value = value;
        this.grad = new float[Math.toIntExact(value.numel())];
    }

    /** a new parameter holding a copy of {@code source} widened to F32, in memory owned by {@code arena} */
    public static Parameter copyOf(String name, Tensor source, Arena arena) {
        long n = source.numel();
        MemorySegment seg = arena.allocate(n * 4, 64);
        for (long i = 0; i < n; i++) seg.setAtIndex(Tensor.F32, i, source.getFloat(i));
        return new Parameter(name, new Tensor(name, DType.F32, source.shape(), seg));
    }

    public String name() { return name; }
    public Tensor value() { return value; }
    public float[] grad() { return grad; }
    public long numel() { return value.numel(); }
    public boolean trainable() { return trainable; }
    public void setTrainable(boolean trainable) { this.trainable = trainable; }
    public void zeroGrad() { java.util.Arrays.fill(grad, 0f); }

    @Override public String toString() { return name + (trainable ? "" : " (frozen)") + " " + value; }
}
