package dive.backend;

import dive.cuda.Cuda;
import dive.cuda.CudaException;
import dive.cuda.CudaUnavailableException;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * Chooses the backend: a device — {@code auto} (the GPU when one works, else the CPU), {@code cuda}, {@code cpu} — and
 * a CPU backend — {@code scalar}, {@code vector}, {@code auto} (vector when the Vector API module is present). The
 * CPU backend also runs the CUDA backend's CPU fallbacks. System properties {@code dive.device} and
 * {@code dive.backend} (flags {@code --device}, {@code --backend}) give the choice for {@link #select()}. The choice
 * and, when {@code auto} lands on the CPU, the one-line reason are logged once.
 */
public final class Backends {
    /** heap bytes the CPU backend may keep for GEMM-ready copies of read-only weights (the memory plan counts them) */
    public static long packedWeightCacheBytes() { return Math.max(0, PackedWeights.BUDGET_BYTES); }

    private static final Logger LOG = Logger.getLogger(Backends.class.getName());
    private static final Map<String, Backend> SELECTED = new ConcurrentHashMap<>();
    private static final Map<String, CudaBackend> CUDA = new ConcurrentHashMap<>();
    private static final AtomicBoolean DEVICE_LOGGED = new AtomicBoolean();

    private Backends() {}

    /** the backend of properties dive.device (default auto) and dive.backend (default auto), made once per pair */
    public static Backend select() {
        String device = System.getProperty("dive.device", "auto"), cpu = System.getProperty("dive.backend", "auto");
        return SELECTED.computeIfAbsent(device + "/" + cpu, key -> create(device, cpu));
    }

    /** a backend by name: scalar, vector, auto (a CPU backend), or cuda (the GPU, with the auto CPU backend for fallbacks) */
    public static Backend create(String name) {
        if (name.equals("cuda")) return create("cuda", "auto");
        return createCpu(name, "--backend / property dive.backend");
    }

    /**
     * A backend on {@code device} (auto, cuda, cpu) with {@code cpuBackend} (scalar, vector, auto) for the CPU. The CUDA
     * backend is made once per JVM and CPU backend name and shared (it is thread-safe).
     *
     * @throws CudaUnavailableException for device cuda where no GPU is usable, naming the reason
     */
    public static Backend create(String device, String cpuBackend) {
        Backend cpu = createCpu(cpuBackend, "--backend / property dive.backend");
        switch (device) {
            case "cpu" -> { return cpu; }
            case "cuda" -> {
                Cuda.requireUsable("--device cuda");
                CudaBackend cuda = sharedCuda(cpuBackend, cpu);
                logDeviceOnce("device: cuda (" + Cuda.status().describe() + ")");
                return cuda;
            }
            case "auto" -> {
                String reason = Cuda.status().reason();
                if (reason == null) {
                    try {
                        CudaBackend cuda = sharedCuda(cpuBackend, cpu);
                        logDeviceOnce("device: cuda (" + Cuda.status().describe() + ")");
                        return cuda;
                    } catch (CudaException | CudaUnavailableException e) {
                        reason = "the GPU failed to start: " + e.getMessage();
                    }
                }
                logDeviceOnce(cpuFallbackLine(reason));
                return cpu;
            }
            default -> throw new IllegalArgumentException("unknown device '" + device
                    + "' (flag --device / property dive.device): expected auto, cuda or cpu");
        }
    }

    /** the line --device auto prints when it runs on the CPU: "device: cpu (REASON)", one line */
    public static String cpuFallbackLine(String reason) {
        return ("device: cpu (" + reason + ")").replace('\n', ' ');
    }

    private static void logDeviceOnce(String line) {
        if (DEVICE_LOGGED.compareAndSet(false, true)) LOG.info(line);
    }

    private static CudaBackend sharedCuda(String cpuName, Backend cpu) {
        return CUDA.computeIfAbsent(cpuName, key -> new CudaBackend(cpu));
    }

    private static Backend createCpu(String name, String flag) {
        switch (name) {
            case "scalar" -> { LOG.fine("backend: scalar (requested)"); return new ScalarBackend(); }
            case "vector", "auto" -> {
                if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
                    if (name.equals("vector")) throw new IllegalStateException("dive.backend=vector needs --add-modules jdk.incubator.vector");
                    LOG.info("backend: scalar (jdk.incubator.vector not loaded; add --add-modules jdk.incubator.vector)");
                    return new ScalarBackend();
                }
                Backend v = new VectorBackend();
                LOG.fine("backend: " + v.name());
                return v;
            }
            default -> throw new IllegalArgumentException("unknown backend '" + name + "' (flag " + flag
                    + "): expected scalar, vector or auto (the GPU is --device cuda)");
        }
    }
}
