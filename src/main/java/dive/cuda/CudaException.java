package dive.cuda;

import dive.bindings.cublas_h;
import dive.bindings.dive_h;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;

/**
 * A failed CUDA runtime call, kernel launch or cuBLAS call: names the call (with its sizes where they help), the
 * error text and the status, e.g. {@code dive_malloc(1073741824 bytes): out of memory (cudaErrorMemoryAllocation,
 * status 2)}. Statuses of dive.h are cudaError_t values or {@code DIVE_ERR_ARGUMENT} (10001); cuBLAS calls give
 * cublasStatus_t values.
 */
public class CudaException extends RuntimeException {
    /** dive.h's status for an impossible argument (negative size, null required pointer) */
    public static final int DIVE_ERR_ARGUMENT = 10001;

    public enum Library { CUDA, CUBLAS }

    private final String call;
    private final int status;
    private final Library library;

    public CudaException(String call, int status, Library library, String message) {
        super(message);
        this.call = call;
        this.status = status;
        this.library = library;
    }

    /** the failing call as named in the message, e.g. "dive_malloc(1024 bytes)" */
    public String call() { return call; }
    /** the cudaError_t / DIVE_ERR_ARGUMENT / cublasStatus_t value */
    public int status() { return status; }
    public Library library() { return library; }

    /** throws a {@link CudaException} for a non-zero dive.h status */
    public static void check(int status, String call) {
        if (status != 0) throw cuda(call, status);
    }

    /** throws a {@link CudaException} for a non-zero cuBLAS status */
    public static void checkCublas(int status, String call) {
        if (status != 0) throw cublas(call, status);
    }

    /** the exception for a dive.h status, with the library's error text when the library is loaded */
    public static CudaException cuda(String call, int status) {
        return new CudaException(call, status, Library.CUDA, format(call, status, cudaText(status), cudaName(status)));
    }

    /** the exception for a cuBLAS status, with cuBLAS's status string when cuBLAS is loaded */
    public static CudaException cublas(String call, int status) {
        String name = cublas_h.available().isPresent() ? cublas_h.cublasGetStatusString(status) : null;
        if (name == null || name.isBlank() || name.startsWith("cuBLAS status")) name = CUBLAS_NAMES.getOrDefault(status, "cublasStatus " + status);
        String text = CUBLAS_TEXT.getOrDefault(status, "cuBLAS error");
        return new CudaException(call, status, Library.CUBLAS, format(call, status, text, name));
    }

    /** "CALL: TEXT (NAME, status N)" — one line */
    public static String format(String call, int status, String text, String name) {
        return (call + ": " + text + " (" + name + ", status " + status + ")").replace('\n', ' ');
    }

    /** "TEXT (NAME, status N)" for a dive.h status: what a reason line shows */
    public static String describe(int status) {
        return cudaText(status) + " (" + cudaName(status) + ", status " + status + ")";
    }

    /** the symbolic name of a dive.h status: cudaErrorMemoryAllocation, DIVE_ERR_ARGUMENT, … */
    public static String cudaName(int status) {
        if (status == DIVE_ERR_ARGUMENT) return "DIVE_ERR_ARGUMENT";
        String name = CUDA_NAMES.get(status);
        return name != null ? name : "cudaError " + status;
    }

    /** the error text of a dive.h status: the library's (cudaGetErrorString) when it is loaded, else a built-in one */
    static String cudaText(int status) {
        if (status == DIVE_ERR_ARGUMENT) return "impossible argument (negative size or null required pointer)";
        if (dive_h.dive_error_string$MH != null) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(256);
                if (dive_h.dive_error_string(status, buf, 256) == 0) {
                    String s = buf.getString(0);
                    if (!s.isBlank()) return s;
                }
            } catch (RuntimeException ignored) { /* fall through to the built-in text */ }
        }
        return CUDA_TEXT.getOrDefault(status, "CUDA error");
    }

    // cudaError_t values (driver_types.h of CUDA 13) that the engine may meet
    private static final Map<Integer, String> CUDA_NAMES = Map.ofEntries(
            Map.entry(1, "cudaErrorInvalidValue"), Map.entry(2, "cudaErrorMemoryAllocation"),
            Map.entry(3, "cudaErrorInitializationError"), Map.entry(4, "cudaErrorCudartUnloading"),
            Map.entry(9, "cudaErrorInvalidConfiguration"), Map.entry(34, "cudaErrorStubLibrary"),
            Map.entry(35, "cudaErrorInsufficientDriver"), Map.entry(46, "cudaErrorDevicesUnavailable"),
            Map.entry(98, "cudaErrorInvalidDeviceFunction"), Map.entry(100, "cudaErrorNoDevice"),
            Map.entry(101, "cudaErrorInvalidDevice"), Map.entry(209, "cudaErrorNoKernelImageForDevice"),
            Map.entry(214, "cudaErrorECCUncorrectable"), Map.entry(218, "cudaErrorInvalidPtx"),
            Map.entry(222, "cudaErrorUnsupportedPtxVersion"), Map.entry(304, "cudaErrorOperatingSystem"),
            Map.entry(400, "cudaErrorInvalidResourceHandle"), Map.entry(600, "cudaErrorNotReady"),
            Map.entry(700, "cudaErrorIllegalAddress"), Map.entry(701, "cudaErrorLaunchOutOfResources"),
            Map.entry(702, "cudaErrorLaunchTimeout"), Map.entry(710, "cudaErrorAssert"),
            Map.entry(714, "cudaErrorHardwareStackError"), Map.entry(715, "cudaErrorIllegalInstruction"),
            Map.entry(716, "cudaErrorMisalignedAddress"), Map.entry(719, "cudaErrorLaunchFailure"),
            Map.entry(803, "cudaErrorSystemDriverMismatch"), Map.entry(804, "cudaErrorCompatNotSupportedOnDevice"),
            Map.entry(999, "cudaErrorUnknown"));

    // texts as cudaGetErrorString gives them, for when libdive.so is not loaded
    private static final Map<Integer, String> CUDA_TEXT = Map.ofEntries(
            Map.entry(1, "invalid argument"), Map.entry(2, "out of memory"), Map.entry(3, "initialization error"),
            Map.entry(35, "CUDA driver version is insufficient for CUDA runtime version"),
            Map.entry(100, "no CUDA-capable device is detected"), Map.entry(101, "invalid device ordinal"),
            Map.entry(209, "no kernel image is available for execution on the device"),
            Map.entry(700, "an illegal memory access was encountered"),
            Map.entry(701, "too many resources requested for launch"), Map.entry(719, "unspecified launch failure"),
            Map.entry(999, "unknown error"));

    // cublasStatus_t values (cublas_api.h)
    private static final Map<Integer, String> CUBLAS_NAMES = Map.of(
            1, "CUBLAS_STATUS_NOT_INITIALIZED", 3, "CUBLAS_STATUS_ALLOC_FAILED", 7, "CUBLAS_STATUS_INVALID_VALUE",
            8, "CUBLAS_STATUS_ARCH_MISMATCH", 11, "CUBLAS_STATUS_MAPPING_ERROR", 13, "CUBLAS_STATUS_EXECUTION_FAILED",
            14, "CUBLAS_STATUS_INTERNAL_ERROR", 15, "CUBLAS_STATUS_NOT_SUPPORTED", 16, "CUBLAS_STATUS_LICENSE_ERROR");

    private static final Map<Integer, String> CUBLAS_TEXT = Map.of(
            1, "cuBLAS could not initialise (no GPU or driver?)", 3, "cuBLAS could not allocate device memory",
            7, "an unsupported value or parameter was passed to cuBLAS", 8, "the GPU lacks a feature this call needs",
            11, "cuBLAS could not access GPU memory", 13, "the GPU program failed to execute",
            14, "cuBLAS internal error", 15, "the requested combination of types/operations is not supported",
            16, "cuBLAS licence error");
}
