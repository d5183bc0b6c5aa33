package dive.tensor;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class TensorArenaTest {
    @Test
    void allocatesZeroedWritableTensorsFreedOnClose() {
        Tensor t;
        try (TensorArena arena = TensorArena.shared()) {
            t = Tensor.allocate("w", DType.BF16, new long[] {2, 3}, arena);
            assertEquals(6 * 2, t.data().byteSize());
            assertEquals(0, t.data().address() % 64, "64-byte aligned");
            for (long i = 0; i < t.numel(); i++) assertEquals(0f, t.getFloat(i));
            t.setFloat(4, 1.5f);
            assertEquals(1.5f, t.getFloat(4));
        }
        assertThrows(IllegalStateException.class, () -> t.getFloat(0), "freed with its arena");
    }

    @Test
    void closingTwiceOrClosingAnAutoArenaIsRefused() {
        TensorArena shared = TensorArena.shared();
        shared.close();
        assertThrows(IllegalStateException.class, shared::close);
        assertThrows(UnsupportedOperationException.class, () -> TensorArena.auto().close());
    }

    @Test
    void copyFromCopiesBitForBit() {
        Tensor src = Tensor.allocate("src", DType.BF16, new long[] {2, 4}, TensorArena.auto());
        for (int i = 0; i < 8; i++) src.data().setAtIndex(Tensor.I16, i, (short) (0x3f80 + i));
        src.data().setAtIndex(Tensor.I16, 7, (short) 0x7fc1);  // a NaN payload survives the copy

        Tensor all = Tensor.allocate("all", DType.BF16, new long[] {8}, TensorArena.auto());
        all.copyFrom(src);
        assertEquals(-1, all.data().mismatch(src.data()));

        Tensor part = Tensor.allocate("part", DType.BF16, new long[] {4}, TensorArena.auto());
        part.copyFrom(src, 5, 1, 3);  // part[1..3] = src[5..7]
        assertEquals(0, part.data().getAtIndex(Tensor.I16, 0));
        for (int i = 1; i < 4; i++) assertEquals(src.data().getAtIndex(Tensor.I16, i + 4), part.data().getAtIndex(Tensor.I16, i));
    }

    @Test
    void copyFromRefusesAnotherDtypeOrSize() {
        Tensor f32 = Tensor.ofFloats("a", new float[] {1, 2, 3, 4}, 4);
        Tensor bf16 = Tensor.allocate("b", DType.BF16, new long[] {4}, TensorArena.auto());
        assertThrows(IllegalArgumentException.class, () -> bf16.copyFrom(f32));
        Tensor small = Tensor.allocate("c", DType.F32, new long[] {3}, TensorArena.auto());
        assertThrows(IllegalArgumentException.class, () -> small.copyFrom(f32));
        assertThrows(IndexOutOfBoundsException.class, () -> small.copyFrom(f32, 0, 2, 2));  // small[2..3]: past its end
    }
}
