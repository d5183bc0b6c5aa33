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
        assertEquals("--device cuda: no usable CUDA GPU: " + Cuda.status().reason(), e.getMessage());
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
    void unknownNamesAreRejectedNamingTheFlag() {
        IllegalArgumentException d = assertThrows(IllegalArgumentException.class, () -> Backends.create("gpu", "auto"));
        assertEquals("unknown device 'gpu' (flag --device / property dive.device): expected auto, cuda or cpu", d.getMessage());
        IllegalArgumentException b = assertThrows(IllegalArgumentException.class, () -> Backends.create("cpu", "fast"));
        assertTrue(b.getMessage().startsWith("unknown backend 'fast' (flag --backend"), b.getMessage());
    }

    @Test
    void selectFollowsTheProperties() {
        String device = System.getProperty("dive.device"), backend = System.getProperty("dive.backend");
        try {
            System.setProperty("dive.device", "cpu");
            System.setProperty("dive.backend", "scalar");
            assertEquals("scalar", Backends.select().name());
            assertSame(Backends.select(), Backends.select(), "made once per choice");
        } finally {
            if (device == null) System.clearProperty("dive.device"); else System.setProperty("dive.device", device);
            if (backend == null) System.clearProperty("dive.backend"); else System.setProperty("dive.backend", backend);
        }
    }
}
