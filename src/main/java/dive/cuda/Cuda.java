package dive.cuda;

import dive.bindings.cublas_h;
import dive.bindings.dive_h;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Whether this machine can run the CUDA backend, decided once per JVM: the native library (libdive.so, its
 * functions and ABI version), the driver (present, not older than the runtime libdive.so was built with), a device
 * of compute capability 8.0 or newer, and cuBLAS 12 or newer. When anything is missing, {@link Status#reason()}
 * says what in one line, e.g. {@code no CUDA driver: libdive.so loaded but cudaGetDeviceCount failed: CUDA driver
 * version is insufficient for CUDA runtime version (cudaErrorInsufficientDriver, status 35)}.
 *
 * <p>Device work itself goes through a {@link CudaDevice} (one stream, one cuBLAS handle).
 */
public final class Cuda {
    private Cuda() {}

    /** the libdive.so ABI major version this engine is written against (dive_version) */
    public static final int ABI_MAJOR = 1;
    /** the oldest cuBLAS major version accepted (GemmEx with cublasComputeType_t) */
    public static final int MIN_CUBLAS_MAJOR = 12;
    /** the oldest compute capability accepted: the kernels are built for sm_80 / sm_90 (bf16 tensor cores) */
    public static final int MIN_CC_MAJOR = 8;

    /** what the probe found; {@link #reason()} is null when the GPU is usable */
    public record Status(String reason, String deviceName, long totalMemoryBytes, int ccMajor, int ccMinor, int multiprocessors,
                         int driverVersion, int runtimeVersion, int cublasMajor, int cublasMinor, Path cublasPath) {
        public boolean usable() { return reason == null; }

        /** one line: the device and the versions, or the reason it is unusable */
        public String describe() {
            if (!usable()) return reason;
            return String.format(Locale.ROOT, "%s (%.1f GiB, compute %d.%d, %d SMs), driver %s, runtime %s, cuBLAS %d.%d",
                    deviceName, totalMemoryBytes / (double) (1L << 30), ccMajor, ccMinor, multiprocessors,
                    version(driverVersion), version(runtimeVersion), cublasMajor, cublasMinor);
        }
    }

    /**
     * The raw answers of the native libraries before any judgement (the probe's input; tests build their own).
     * Statuses are dive.h statuses; -1 marks a question not asked because an earlier answer already failed.
     */
    record Facts(String libraryProblem, List<String> missingFunctions, int abiMajor, int abiMinor,
                 int driverVersion, int runtimeVersion, int countStatus, int deviceCount,
                 String deviceName, int ccMajor, int ccMinor, String cublasProblem, int cublasMajor) {}

    private static final class Holder { static final Status STATUS = probe(); }

    /** the probe's answer, computed once per JVM */
    public static Status status() { return Holder.STATUS; }

    /** true when a usable GPU is here */
    public static boolean usable() { return status().usable(); }

    /** throws {@link CudaUnavailableException} naming {@code who} (a flag or a class) and the reason when no GPU is usable */
    public static void requireUsable(String who) {
        Status s = status();
        if (!s.usable()) throw new CudaUnavailableException(who + ": no usable CUDA GPU: " + s.reason());
    }

    /** "13.0" for 13000 */
    static String version(int v) { return (v / 1000) + "." + (v % 1000) / 10; }

    /** the judgement: null when the facts describe a usable GPU, else one line saying what is missing */
    static String unusableReason(Facts f) {
        if (f.libraryProblem() != null) return "no libdive.so: " + f.libraryProblem();
        if (!f.missingFunctions().isEmpty())
            return "libdive.so lacks " + f.missingFunctions().getFirst()
                    + (f.missingFunctions().size() > 1 ? " and " + (f.missingFunctions().size() - 1) + " more functions of dive.h" : "")
                    + " (an older build? rebuild it with 'make -C native')";
        if (f.abiMajor() != ABI_MAJOR)
            return "libdive.so has ABI version " + f.abiMajor() + "." + f.abiMinor() + ", this engine needs " + ABI_MAJOR
                    + ".x (rebuild it with 'make -C native')";
        if (f.driverVersion() == 0)
            return "no CUDA driver: libdive.so loaded but "
                    + (f.countStatus() > 0 ? "cudaGetDeviceCount failed: " + CudaException.describe(f.countStatus())
                                           : "cudaDriverGetVersion found no driver (libcuda.so)");
        if (f.driverVersion() / 1000 < f.runtimeVersion() / 1000)
            return "CUDA driver too old: driver " + version(f.driverVersion()) + " < runtime " + version(f.runtimeVersion())
                    + " that libdive.so was built with (update the NVIDIA driver)";
        if (f.countStatus() != 0) return "cudaGetDeviceCount failed: " + CudaException.describe(f.countStatus());
        if (f.deviceCount() < 1) {
            String visible = System.getenv("CUDA_VISIBLE_DEVICES");
            return "no CUDA device visible" + (visible != null ? " (CUDA_VISIBLE_DEVICES=" + visible + ")" : "");
        }
        if (f.ccMajor() < MIN_CC_MAJOR)
            return "GPU 0 (" + f.deviceName() + ") has compute capability " + f.ccMajor() + "." + f.ccMinor()
                    + "; the kernels need " + MIN_CC_MAJOR + ".0 or newer";
        if (f.cublasProblem() != null) return f.cublasProblem();
        if (f.cublasMajor() < MIN_CUBLAS_MAJOR)
            return "cuBLAS " + f.cublasMajor() + " at " + cublas_h.libraryPath() + " is too old: need " + MIN_CUBLAS_MAJOR + " or newer";
        return null;
    }

    /** the dive.h functions whose symbols libdive.so lacks (bindings with no method handle) */
    static List<String> missingFunctions() {
        List<String> missing = new ArrayList<>();
        for (Field field : dive_h.class.getFields()) {
            if (!Modifier.isStatic(field.getModifiers()) || field.getType() != MethodHandle.class || !field.getName().endsWith("$MH")) continue;
            try {
                if (field.get(null) == null) missing.add(field.getName().substring(0, field.getName().length() - 3));
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
        }
        return missing;
    }

    private static Status probe() {
        try {
            Facts f = facts();
            String reason = unusableReason(f);
            if (reason != null) return new Status(reason, f.deviceName(), 0, f.ccMajor(), f.ccMinor(), 0, f.driverVersion(),
                    f.runtimeVersion(), f.cublasMajor(), 0, cublas_h.libraryPath());
            return deviceStatus(f);
        } catch (RuntimeException e) {
            return new Status("CUDA probe failed: " + e.getMessage(), null, 0, 0, 0, 0, 0, 0, 0, 0, null);
        }
    }

    private static Facts facts() {
        if (dive_h.available().isEmpty())
            return new Facts(dive_h.unavailableReason(), List.of(), -1, -1, -1, -1, -1, -1, null, -1, -1, null, -1);
        List<String> missing = missingFunctions();
        if (!missing.isEmpty()) return new Facts(null, missing, -1, -1, -1, -1, -1, -1, null, -1, -1, null, -1);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(ValueLayout.JAVA_INT), b = arena.allocate(ValueLayout.JAVA_INT);
            CudaException.check(dive_h.dive_version(a, b), "dive_version");
            int abiMajor = a.get(ValueLayout.JAVA_INT, 0), abiMinor = b.get(ValueLayout.JAVA_INT, 0);
            dive_h.dive_driver_version(a, b); // driver 0 when there is none: judged below
            int driver = a.get(ValueLayout.JAVA_INT, 0), runtime = b.get(ValueLayout.JAVA_INT, 0);
            int countStatus = dive_h.dive_device_count(a);
            int count = countStatus == 0 ? a.get(ValueLayout.JAVA_INT, 0) : 0;
            String name = null;
            int ccMajor = -1, ccMinor = -1;
            if (count > 0) {
                MemorySegment nameBuf = arena.allocate(256), total = arena.allocate(ValueLayout.JAVA_LONG), sms = arena.allocate(ValueLayout.JAVA_INT);
                CudaException.check(dive_h.dive_device_info(0, nameBuf, 256, total, a, b, sms), "dive_device_info(0)");
                name = nameBuf.getString(0);
                ccMajor = a.get(ValueLayout.JAVA_INT, 0);
                ccMinor = b.get(ValueLayout.JAVA_INT, 0);
            }
            String cublasProblem = cublas_h.available().isEmpty() ? cublas_h.unavailableReason() : null;
            int cublasMajor = -1;
            if (cublasProblem == null) {
                CudaException.checkCublas(cublas_h.cublasGetProperty(cublas_h.MAJOR_VERSION, a), "cublasGetProperty(MAJOR_VERSION)");
                cublasMajor = a.get(ValueLayout.JAVA_INT, 0);
            }
            return new Facts(null, List.of(), abiMajor, abiMinor, driver, runtime, countStatus, count, name, ccMajor, ccMinor,
                    cublasProblem, cublasMajor);
        }
    }

    private static Status deviceStatus(Facts f) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(ValueLayout.JAVA_INT), b = arena.allocate(ValueLayout.JAVA_INT);
            MemorySegment nameBuf = arena.allocate(256), total = arena.allocate(ValueLayout.JAVA_LONG), sms = arena.allocate(ValueLayout.JAVA_INT);
            CudaException.check(dive_h.dive_device_info(0, nameBuf, 256, total, a, b, sms), "dive_device_info(0)");
            CudaException.checkCublas(cublas_h.cublasGetProperty(cublas_h.MINOR_VERSION, a), "cublasGetProperty(MINOR_VERSION)");
            return new Status(null, nameBuf.getString(0), total.get(ValueLayout.JAVA_LONG, 0), f.ccMajor(), f.ccMinor(),
                    sms.get(ValueLayout.JAVA_INT, 0), f.driverVersion(), f.runtimeVersion(), f.cublasMajor(),
                    a.get(ValueLayout.JAVA_INT, 0), cublas_h.libraryPath());
        }
    }
}
