package dive.backend;

import dive.cuda.Cuda;
import dive.cuda.CudaUnavailableException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

/** The device choice: cpu, cuda, auto, and the reasons given. Runs with or without a GPU. */
class BackendsDeviceTest {

    @Test
    void cpuDeviceUsesTheNamedCpuBackend() {
        assertEquals("scalar", Backends.create("cpu", "scalar").name());
        assertInstanceOf(ScalarBackend.class, Backends.create("cpu", "scalar"));
    }

    @Test
    void autoIsTheGpuWhenUsableElseTheCpu() {
        Backend b = Backends.create("auto", "scalar");
        assertEquals(Cuda.usable() ? "cuda" : "scalar", b.name(), Cuda.status().describe());
    }

    @Test
    void cudaWithoutAGpuSaysWhy() {
        assumeFalse(Cuda.usable(), "a GPU is usable here");
        CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> Backends.create("cuda", "auto"));
        assertEquals("device 'cuda': no usable CUDA GPU: " + Cuda.status().reason(), e.getMessage());
        assertThrows(CudaUnavailableException.class, () -> Backends.create("cuda"));
    }

    @Test
    void fallbackLineIsOneLineWithTheReason() {
        String reason = Cuda.usable() ? "no CUDA device visible" : Cuda.status().reason();
        String line = Backends.cpuFallbackLine(reason);
        assertEquals("device: cpu (" + reason + ")", line);
        assertFalse(line.contains("\n"));
        assertEquals("device: cpu (a b)", Backends.cpuFallbackLine("a\nb"));
    }

    @Test
    void unknownNamesAreRejectedNamingTheParameter() {
        IllegalArgumentException d = assertThrows(IllegalArgumentException.class, () -> Backends.create("gpu", "auto"));
        assertEquals("device 'gpu': expected auto, cuda or cpu", d.getMessage());
        IllegalArgumentException b = assertThrows(IllegalArgumentException.class, () -> Backends.create("cpu", "fast"));
        assertEquals("cpu backend 'fast': expected scalar, vector or auto (for the GPU choose device cuda)", b.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Backends.create("fast"));
        IllegalArgumentException t = assertThrows(IllegalArgumentException.class, () -> Backends.create("cpu", "vector", 0));
        assertEquals("threads 0: expected ≥ 1", t.getMessage());
        for (IllegalArgumentException e : java.util.List.of(d, b, t))  // parameters, not command-line flags or properties
            assertFalse(e.getMessage().contains("--") || e.getMessage().contains("property"), e.getMessage());
    }

    @Test
    void threadsGoToTheVectorBackendWhichIsMadeOncePerCount() {
        Backend three = Backends.create("cpu", "vector", 3);
        assertEquals(3, assertInstanceOf(VectorBackend.class, three).threads());
        assertSame(three, Backends.create("cpu", "vector", 3), "one pool per thread count");
        assertEquals(2, ((VectorBackend) Backends.create("cpu", "auto", 2)).threads());
        assertInstanceOf(ScalarBackend.class, Backends.create("cpu", "scalar", 4), "the scalar backend has one thread whatever the count");
    }
}
