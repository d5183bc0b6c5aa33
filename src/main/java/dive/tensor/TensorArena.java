package dive.tensor;

import java.lang.foreign.Arena;

/**
 * The owner of off-heap tensors made by {@link Tensor#allocate}: a stage (one pruned model, a model's F32 copies, the
 * experts of one conversion) allocates its tensors in one arena and frees them all at once by closing it. The rest of
 * the engine holds this type instead of an FFM {@link Arena}, so that memory handling stays in {@code dive.tensor}.
 */
public final class TensorArena implements AutoCloseable {
    private final Arena arena;

    private TensorArena(Arena arena) { this.arena = arena; }

    /** an arena whose tensors any thread may use; {@link #close} frees them (the tensors must not be used afterwards) */
    public static TensorArena shared() { return new TensorArena(Arena.ofShared()); }

    /**
     * a new arena that cannot be closed: its tensors are freed together by the garbage collector once none of them is
     * reachable any more. Each call makes a new arena (one kept for ever would keep all its memory).
     */
    public static TensorArena auto() { return new TensorArena(Arena.ofAuto()); }

    /** the memory for {@link Tensor#allocate} */
    Arena arena() { return arena; }

    /**
     * frees every tensor allocated in this arena
     *
     * @throws IllegalStateException when already closed
     * @throws UnsupportedOperationException for an {@link #auto} arena
     */
    @Override public void close() { arena.close(); }
}
