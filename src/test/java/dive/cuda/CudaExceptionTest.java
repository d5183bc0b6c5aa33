package dive.cuda;

import dive.bindings.CudaProbe;
import dive.bindings.dive_h;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Error messages for a given status: the call, the text, the symbolic name and the number, on one line. No GPU needed. */
class CudaExceptionTest {

    @Test
    void formatNamesCallTextNameAndStatus() {
        assertEquals("dive_malloc(1073741824 bytes): out of memory (cudaErrorMemoryAllocation, status 2)",
                CudaException.format("dive_malloc(1073741824 bytes)", 2, "out of memory", "cudaErrorMemoryAllocation"));
        assertEquals("a: b c (N, status 7)", CudaException.format("a", 7, "b\nc", "N"), "always one line");
    }

    @Test
    void outOfMemoryStatusReadsAsSuch() {
        CudaException e = assertThrows(CudaException.class, () -> CudaException.check(2, "dive_malloc(1073741824 bytes)"));
        // cudaGetErrorString(cudaErrorMemoryAllocation) is "out of memory"; so is the built-in text without libdive.so
        assertEquals("dive_malloc(1073741824 bytes): out of memory (cudaErrorMemoryAllocation, status 2)", e.getMessage());
        assertEquals(2, e.status());
        assertEquals("dive_malloc(1073741824 bytes)", e.call());
        assertEquals(CudaException.Library.CUDA, e.library());
    }

    @Test
    void argumentStatusIsNamedDiveErrArgument() {
        CudaException e = CudaException.cuda("dive_rmsnorm(rows=-1, d=4)", CudaException.DIVE_ERR_ARGUMENT);
        assertEquals("dive_rmsnorm(rows=-1, d=4): impossible argument (negative size or null required pointer)"
                + " (DIVE_ERR_ARGUMENT, status 10001)", e.getMessage());
    }

    @Test
    void successDoesNotThrowAndUnknownStatusesKeepTheirNumber() {
        CudaException.check(0, "dive_stream_sync");
        CudaException.checkCublas(0, "cublasGemmEx");
        CudaException e = CudaException.cuda("dive_free", 12345);
        assertTrue(e.getMessage().startsWith("dive_free: "), e.getMessage());
        assertTrue(e.getMessage().endsWith("(cudaError 12345, status 12345)"), e.getMessage());
    }

    @Test
    void cublasStatusesAreNamed() {
        CudaException e = assertThrows(CudaException.class, () -> CudaException.checkCublas(7, "cublasGemmEx(m=3)"));
        assertEquals(CudaException.Library.CUBLAS, e.library());
        assertTrue(e.getMessage().startsWith("cublasGemmEx(m=3): "), e.getMessage());
        assertTrue(e.getMessage().endsWith("(CUBLAS_STATUS_INVALID_VALUE, status 7)"), e.getMessage());
        assertTrue(CudaException.cublas("cublasCreate_v2", 1).getMessage().contains("CUBLAS_STATUS_NOT_INITIALIZED, status 1"));
    }

    @Test
    void textComesFromTheLibraryWhenItIsLoaded() {
        assumeTrue(dive_h.available().isPresent(), () -> "libdive.so not loaded: " + dive_h.unavailableReason());
        // the library's own cudaGetErrorString text, not the built-in table
        String text = CudaProbe.errorString(35);
        assertFalse(text.isBlank());
        assertEquals("dive_set_device(0): " + text + " (cudaErrorInsufficientDriver, status 35)",
                CudaException.cuda("dive_set_device(0)", 35).getMessage());
    }
}
