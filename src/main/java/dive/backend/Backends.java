package dive.backend;

import dive.cuda.Cuda;
import dive.cuda.CudaException;
import dive.cuda.CudaUnavailableException;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * Makes the backend from its three parameters: a device — {@code auto} (the GPU when one works, else the CPU),
 * {@code cuda}, {@code cpu} — a CPU backend — {@code scalar}, {@code vector}, {@code auto} (vector when the Vector API
 * module is present) — and the CPU threads of the vector backend (default: all cores). The CPU backend also runs the
 * CUDA backend's CPU fallbacks. The caller chooses (the command line from its flags {@code --device}, {@code --backend},
 * {@code --threads}) and passes the backend on to the library; nothing here reads a setting of its own. The device
 * and, when {@code auto} lands on the CPU, the one-line reason are logged once.
 */
public final class Backends {
    /** heap bytes the CPU backend may keep for GEMM-ready copies of read-only weights (the memory plan counts them) */
    public static long packedWeightCacheBytes() { return Math.max(0, PackedWeights.BUDGET_BYTES); }

    private static final Logger LOG = Logger.getLogger(Backends.class.getName());
    /** the CUDA backend per CPU backend name and thread count (0: the default), made once per JVM */
    private static final Map<String, CudaBackend> CUDA = new ConcurrentHashMap<>();
    /** vector backends with their own pool, per thread count, made once per JVM (each owns a thread pool) */
    private static final Map<Integer, VectorBackend> VECTOR = new ConcurrentHashMap<>();
    private static final AtomicBoolean DEVICE_LOGGED = new AtomicBoolean();
    private static final List<String> DEVICES = List.of("auto", "cuda", "cpu");

    private Backends() {}

    /** a backend by name: scalar, vector, auto (a CPU backend), or cuda (the GPU, with the auto CPU backend for fallbacks) */
    public static Backend create(String name) {
        if (name.equals("cuda")) return create("cuda", "auto");
        return createCpu(name, 0);
    }

    /**
     * A backend on {@code device} (auto, cuda, cpu) with {@code cpuBackend} (scalar, vector, auto) for the CPU, the
     * vector backend on all cores. The CUDA backend is made once per JVM and CPU backend and shared (it is thread-safe).
     *
     * @throws IllegalArgumentException for an unknown device or CPU backend name
     * @throws CudaUnavailableException for device cuda where no GPU is usable, naming the reason
     */
    public static Backend create(String device, String cpuBackend) {
        return make(device, cpuBackend, 0);
    }

    /**
     * As {@link #create(String, String)}, the vector backend with {@code threads} threads (≥ 1; the scalar backend
     * has one thread whatever the count).
     */
    public static Backend create(String device, String cpuBackend, int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads " + threads + ": expected ≥ 1");
        return make(device, cpuBackend, threads);
    }

    /** {@code threads} 0: the vector backend's default pool */
    private static Backend make(String device, String cpuBackend, int threads) {
        if (!DEVICES.contains(device)) throw new IllegalArgumentException("device '" + device + "': expected auto, cuda or cpu");
        CpuBackend cpu = createCpu(cpuBackend, threads);
        switch (device) {
            case "cpu" -> { return cpu; }
            case "cuda" -> {
                Cuda.requireUsable("device 'cuda'");
                CudaBackend cuda = sharedCuda(cpuBackend, threads, cpu);
                logDeviceOnce("device: cuda (" + Cuda.status().describe() + ")");
                return cuda;
            }
            default -> {  // auto
                String reason = Cuda.status().reason();
                if (reason == null) {
                    try {
                        CudaBackend cuda = sharedCuda(cpuBackend, threads, cpu);
                        logDeviceOnce("device: cuda (" + Cuda.status().describe() + ")");
                        return cuda;
                    } catch (CudaException | CudaUnavailableException e) {
                        reason = "the GPU failed to start: " + e.getMessage();
                    }
                }
                logDeviceOnce(cpuFallbackLine(reason));
                return cpu;
            }
        }
    }

    /** the line device auto logs when it runs on the CPU: "device: cpu (REASON)", one line */
    public static String cpuFallbackLine(String reason) {
        return ("device: cpu (" + reason + ")").replace('\n', ' ');
    }

    private static void logDeviceOnce(String line) {
        if (DEVICE_LOGGED.compareAndSet(false, true)) LOG.info(line);
    }

    private static CudaBackend sharedCuda(String cpuName, int threads, CpuBackend cpu) {
        return CUDA.computeIfAbsent(cpuName + "/" + threads, key -> new CudaBackend(cpu));
    }

    /** {@code threads} 0: the vector backend's default pool */
    private static CpuBackend createCpu(String name, int threads) {
        switch (name) {
            case "scalar" -> { LOG.fine("backend: scalar (requested)"); return new ScalarBackend(); }
            case "vector", "auto" -> {
                if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
                    if (name.equals("vector"))
                        throw new IllegalStateException("cpu backend 'vector' needs the module jdk.incubator.vector (JVM flag --add-modules jdk.incubator.vector)");
                    LOG.info("backend: scalar (jdk.incubator.vector not loaded; add --add-modules jdk.incubator.vector)");
                    return new ScalarBackend();
                }
                CpuBackend v = threads == 0 ? new VectorBackend() : VECTOR.computeIfAbsent(threads, VectorBackend::new);
                LOG.fine("backend: " + v.name());
                return v;
            }
            default -> throw new IllegalArgumentException("cpu backend '" + name
                    + "': expected scalar, vector or auto (for the GPU choose device cuda)");
        }
    }
}
