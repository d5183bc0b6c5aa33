package dive.cuda;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The probe's judgement: each missing piece gives its own one-line reason, checked in order. No GPU needed. */
class CudaSelectionTest {
    /** the facts of a usable H200 machine; each test breaks one */
    static Cuda.Facts good() {
        return new Cuda.Facts(null, List.of(), 1, 0, 13000, 13000, 0, 1, "NVIDIA H200", 9, 0, null, 13);
    }

    static Cuda.Facts with(String field, Object value) {
        Cuda.Facts f = good();
        return new Cuda.Facts(
                field.equals("library") ? (String) value : f.libraryProblem(),
                field.equals("missing") ? castList(value) : f.missingFunctions(),
                field.equals("abi") ? (Integer) value : f.abiMajor(), f.abiMinor(),
                field.equals("driver") ? (Integer) value : f.driverVersion(), f.runtimeVersion(),
                field.equals("countStatus") ? (Integer) value : f.countStatus(),
                field.equals("count") ? (Integer) value : f.deviceCount(), f.deviceName(),
                field.equals("cc") ? (Integer) value : f.ccMajor(), field.equals("cc") ? 5 : f.ccMinor(),
                field.equals("cublasProblem") ? (String) value : f.cublasProblem(),
                field.equals("cublas") ? (Integer) value : f.cublasMajor());
    }

    @SuppressWarnings("unchecked")
    static List<String> castList(Object o) { return (List<String>) o; }

    static String reason(Cuda.Facts f) {
        String r = Cuda.unusableReason(f);
        assertNotNull(r);
        assertFalse(r.contains("\n"), "one line: " + r);
        return r;
    }

    @Test
    void usableMachineHasNoReason() {
        assertNull(Cuda.unusableReason(good()));
    }

    @Test
    void missingLibrary() {
        assertEquals("no libdive.so: native library native/build/libdive.so not found",
                reason(with("library", "native library native/build/libdive.so not found")));
    }

    @Test
    void staleLibraryNamesAMissingFunction() {
        assertEquals("libdive.so lacks dive_attention and 2 more functions of dive.h (an older build? rebuild it with 'make -C native')",
                reason(with("missing", List.of("dive_attention", "dive_rope", "dive_adamw"))));
        assertTrue(reason(with("abi", 0)).startsWith("libdive.so has ABI version 0.0, this engine needs 1.x"));
    }

    @Test
    void noDriver() {
        Cuda.Facts f = new Cuda.Facts(null, List.of(), 1, 0, 0, 13000, 35, 0, null, -1, -1, null, 13);
        assertEquals("no CUDA driver: libdive.so loaded but cudaGetDeviceCount failed: " + CudaException.describe(35), reason(f));
        assertTrue(reason(f).endsWith("(cudaErrorInsufficientDriver, status 35)"), reason(f));
    }

    @Test
    void driverOlderThanTheRuntime() {
        assertEquals("CUDA driver too old: driver 12.4 < runtime 13.0 that libdive.so was built with (update the NVIDIA driver)",
                reason(with("driver", 12040)));
        assertNull(Cuda.unusableReason(with("driver", 13020)), "a newer minor driver is fine");
    }

    @Test
    void noDevice() {
        assertTrue(reason(with("countStatus", 100)).startsWith("cudaGetDeviceCount failed: "));
        assertTrue(reason(with("countStatus", 100)).endsWith("(cudaErrorNoDevice, status 100)"));
        assertTrue(reason(with("count", 0)).startsWith("no CUDA device visible"));
    }

    @Test
    void oldGpu() {
        assertEquals("GPU 0 (NVIDIA H200) has compute capability 7.5; the kernels need 8.0 or newer", reason(with("cc", 7)));
    }

    @Test
    void cublasMissingOrTooOld() {
        assertEquals("cuBLAS not found (set DIVE_CUBLAS …)", reason(with("cublasProblem", "cuBLAS not found (set DIVE_CUBLAS …)")));
        assertTrue(reason(with("cublas", 11)).startsWith("cuBLAS 11 at "), reason(with("cublas", 11)));
        assertTrue(reason(with("cublas", 11)).endsWith("is too old: need 12 or newer"));
    }

    @Test
    void thisMachinesStatusIsOneLine() {
        Cuda.Status s = Cuda.status();
        assertFalse(s.describe().isBlank());
        assertFalse(s.describe().contains("\n"), s.describe());
        assertEquals(s.reason() == null, s.usable());
        if (!s.usable()) {
            CudaUnavailableException e = assertThrows(CudaUnavailableException.class, () -> Cuda.requireUsable("device 'cuda'"));
            assertEquals("device 'cuda': no usable CUDA GPU: " + s.reason(), e.getMessage());
            assertThrows(CudaUnavailableException.class, CudaDevice::open);
        }
    }
}
