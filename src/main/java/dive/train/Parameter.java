package dive.train;

import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;

/**
 * A named parameter of a model being trained: its value (a Tensor the Backend's forward ops read like any weight) and,
 * once it trains, its gradient accumulator (same shape, F32 on the heap).
 *
 * <p><b>Memory.</b> A parameter made by {@link #view} holds the checkpoint's tensor itself, in its dtype (BF16, F16 or
 * F32, often a read-only memory-mapped view): no copy and no gradient. Its gradient is allocated the first time it is
 * asked for ({@link #grad}), and its values become an F32 copy in its arena the first time they are written
 * ({@link #writableData}: the optimizer, a restored checkpoint). So a model whose recipe trains routers, norms and LoRA
 * factors holds F32 state for those alone, whatever the size of its frozen weights. {@code trainable} false = frozen: no gradient is accumulated and the optimizer skips it.
 */
public final class Parameter {
    private final String name;
    private final TensorArena arena;  // where the F32 copy of a view goes; null when the value is F32 and writable from the start
    private Tensor value;
    private DeviceTensor grad;  // null until the parameter trains
    private Backend gradBackend; // where grad lives
    private boolean trainable = true;

    /** a trainable F32 parameter over writable memory (its gradient is allocated on first use) */
    public Parameter(String name, Tensor value) {
        if (value.dtype() != DType.F32) throw new IllegalArgumentException("parameter '" + name + "' must be F32, is " + value.dtype());
        if (value.data().isReadOnly()) throw new IllegalArgumentException("parameter '" + name + "' lives in read-only memory");
        this.name = name;
        this.arena = null;
        this.value = value;
    }

    private Parameter(String name, Tensor source, TensorArena arena) {
        if (!source.dtype().isFloatWeight())
            throw new IllegalArgumentException("parameter '" + name + "' has dtype " + source.dtype() + " (expected F32, BF16 or F16)");
        this.name = name;
        this.arena = arena;
        this.value = new Tensor(name, source.dtype(), source.shape(), source.data());
    }

    /**
     * a parameter over {@code source} as it is (any float dtype, read-only allowed; no copy): it becomes an F32 copy in
     * {@code arena} the first time it needs a gradient or writable values. {@code source} must stay valid as long as
     * the parameter is used without having been copied.
     */
    public static Parameter view(String name, Tensor source, TensorArena arena) {
        return new Parameter(name, source, arena);
    }

    /** a new parameter holding a copy of {@code source} widened to F32, in memory owned by {@code arena} */
    public static Parameter copyOf(String name, Tensor source, TensorArena arena) {
        return new Parameter(name, widened(name, source, arena));
    }

    private static Tensor widened(String name, Tensor source, TensorArena arena) {
        long n = source.numel();
        Tensor copy = Tensor.allocate(name, DType.F32, source.shape(), arena);
        if (source.dtype() == DType.F32) copy.copyFrom(source);
        else for (long i = 0; i < n; i++) copy.setFloat(i, source.getFloat(i));
        return copy;
    }

    public String name() { return name; }

    /** the current value: the source view until the parameter first trains, then its F32 copy */
    public Tensor value() { return value; }

    /** true while the value is still the source tensor (not yet copied to F32 for writing) */
    public boolean isView() { return value.dtype() != DType.F32 || value.data().isReadOnly(); }

    /** the gradient accumulator (F32, same number of elements) on {@code backend}, allocated (zeros) on first use */
    public DeviceTensor grad(Backend backend) {
        if (grad == null) {
            grad = backend.allocate(DType.F32, value.numel());
            gradBackend = backend;
        } else if (backend != gradBackend && !(backend.isCpu() && gradBackend.isCpu())) {
            throw new IllegalStateException("parameter '" + name + "': gradient lives on backend " + gradBackend.name()
                    + ", asked for on " + backend.name());
        }
        return grad;
    }

    /** the gradient accumulator, or null while the parameter has not trained */
    public DeviceTensor gradOrNull() { return grad; }

    /** the gradient's values on the host (a counted device → host transfer); zeros while none was allocated */
    public float[] gradValues() {
        if (grad == null) return new float[Math.toIntExact(value.numel())];
        return gradBackend.download(grad);
    }

    /** the value for writing (F32, writable memory): a view is copied to F32 first */
    public Tensor writableData() {
        if (isView()) value = widened(name, value, arena == null ? TensorArena.auto() : arena);
        return value;
    }

    /**
     * replaces a frozen parameter's value by {@code v} (same shape; any float dtype): LoRA merging writes the merged
     * weight in the base weight's dtype
     */
    void replaceValue(Tensor v) {
        if (!java.util.Arrays.equals(v.shape(), value.shape()))
            throw new IllegalArgumentException("parameter '" + name + "': new value of shape " + java.util.Arrays.toString(v.shape())
                    + ", expected " + java.util.Arrays.toString(value.shape()));
        value = new Tensor(name, v.dtype(), v.shape(), v.data());
    }

    public long numel() { return value.numel(); }
    public boolean trainable() { return trainable; }
    public void setTrainable(boolean trainable) { this.trainable = trainable; }
    /** zeros the gradient (nothing to do while none was allocated) */
    public void zeroGrad() { if (grad != null) gradBackend.zero(grad, 0, grad.size()); }

    @Override public String toString() { return name + (trainable ? "" : " (frozen)") + " " + value; }
}
