package dive.cli;

import dive.api.Engine;
import dive.backend.Backend;
import dive.backend.Backends;
import dive.cuda.CudaUnavailableException;
import picocli.CommandLine.Option;

import java.nio.file.Path;

/** Options every model command takes; {@link #backend()} makes the one backend the command passes to the library. */
final class CommonOptions {
    @Option(names = "--device", paramLabel = "auto|cuda|cpu", defaultValue = "auto",
            description = "where to compute: auto (default: the GPU when one works, else the CPU, saying why once), cuda, cpu")
    String device;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "CPU backend: auto (default: the fastest that works here), vector (Vector API), scalar (plain reference)")
    String backend;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads for the kernels (default: all cores)")
    Integer threads;

    @Option(names = {"-q", "--quiet"}, description = "no progress bars or log lines")
    boolean quiet;

    private Backend made;

    /**
     * The backend of --device, --backend and --threads (made once per command; applies --quiet first). A bad value is
     * reported naming its flag.
     */
    Backend backend() {
        Main.quietLogs(quiet);
        if (made == null) made = create(device, backend, threads);
        return made;
    }

    /** the backend of the flags' values ({@code threads} null: all cores), errors naming the flag */
    static Backend create(String device, String cpuBackend, Integer threads) {
        try {
            return threads == null ? Backends.create(device, cpuBackend) : Backends.create(device, cpuBackend, threads);
        } catch (CudaUnavailableException e) {
            CudaUnavailableException flagged = new CudaUnavailableException(asFlags(e.getMessage()));
            flagged.initCause(e);
            throw flagged;
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(asFlags(e.getMessage()), e);
        } catch (IllegalStateException e) {
            throw new IllegalStateException(asFlags(e.getMessage()), e);
        }
    }

    /**
     * a backend message with the parameter it names as the flag: "device 'tpu': …" → "--device 'tpu': …",
     * "cpu backend 'x': …" → "--backend 'x': …", "threads 0: …" → "--threads 0: …"
     */
    static String asFlags(String message) {
        if (message == null) return null;
        for (String[] p : new String[][] {{"device ", "--device "}, {"cpu backend ", "--backend "}, {"threads ", "--threads "}})
            if (message.startsWith(p[0])) return p[1] + message.substring(p[0].length());
        return message;
    }

    Engine load(Path modelDir) throws Exception {
        return Engine.load(modelDir, backend());
    }

    /** the model folder on {@link #backend()}, checked as {@code flags} say */
    Engine load(Path modelDir, LoadFlags flags) throws Exception {
        return Engine.load(modelDir, backend(), flags.options());
    }
}
