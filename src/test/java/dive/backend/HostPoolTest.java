package dive.backend;

import dive.tensor.DType;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The CPU backend's pool of freed large arrays: reuse, zeros on reuse, use after free refused, live and peak bytes. */
class HostPoolTest {
    @Test
    void aFreedLargeArrayIsReusedAndComesBackZeroed() {
        VectorBackend b = new VectorBackend(1);
        int n = HostPool.MIN_LENGTH;
        DeviceTensor t = b.allocate(DType.F32, n);
        float[] first = HostTensor.floats(t, "t");
        java.util.Arrays.fill(first, 3f);
        t.close();
        DeviceTensor u = b.allocate(DType.F32, n);
        assertSame(first, HostTensor.floats(u, "u"), "the freed array of the same length is reused");
        for (float v : HostTensor.floats(u, "u")) assertEquals(0f, v);
        // another length or type is not served from it
        DeviceTensor w = b.allocate(DType.I32, n);
        for (int v : HostTensor.ints(w, "w")) assertEquals(0, v);
        // small arrays are not pooled
        DeviceTensor s = b.allocate(DType.F32, 16);
        float[] small = HostTensor.floats(s, "s");
        s.close();
        assertNotSame(small, HostTensor.floats(b.allocate(DType.F32, 16), "s2"));
    }

    @Test
    void aClosedTensorIsRefusedByNameAndClosingTwiceFreesOnce() {
        VectorBackend b = new VectorBackend(1);
        DeviceTensor t = b.allocate(DType.F32, HostPool.MIN_LENGTH);
        t.close();
        t.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> b.add(t, t, 4));
        assertTrue(e.getMessage().contains("was used after it was freed"), e.getMessage());
        // one array went back once: two allocations get two different arrays
        DeviceTensor u = b.allocate(DType.F32, HostPool.MIN_LENGTH), v = b.allocate(DType.F32, HostPool.MIN_LENGTH);
        assertNotSame(HostTensor.floats(u, "u"), HostTensor.floats(v, "v"));
    }

    @Test
    void liveAndPeakBytesFollowAllocationsAndFrees() {
        VectorBackend b = new VectorBackend(1);
        long base = b.liveBytes();
        DeviceTensor a = b.allocate(DType.F32, 1000), c = b.allocate(DType.F64, 10);
        assertEquals(base + 4000 + 80, b.liveBytes());
        a.close();
        assertEquals(base + 80, b.liveBytes());
        assertEquals(base + 4080, b.peakBytes());
        b.resetPeakBytes();
        assertEquals(base + 80, b.peakBytes());
        c.close();
        assertEquals(base, b.liveBytes());
    }
}
