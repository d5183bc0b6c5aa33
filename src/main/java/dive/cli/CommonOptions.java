package dive.cli;

import dive.api.Engine;
import dive.backend.Backend;
import dive.backend.Backends;
import picocli.CommandLine.Option;

import java.nio.file.Path;

/** Options every model command takes. */
final class CommonOptions {
    @Option(names = "--device", paramLabel = "auto|cuda|cpu", defaultValue = "${sys:dive.device:-auto}",
            description = "where to compute: auto (default: the GPU when one works, else the CPU, saying why once), cuda, cpu")
    String device;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "CPU backend: auto (default: the fastest that works here), vector (Vector API), scalar (plain reference)")
    String backend;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads for the kernels (default: all cores)")
    Integer threads;

    @Option(names = {"-q", "--quiet"}, description = "no progress bars or log lines")
    boolean quiet;

    Backend backend() {
        if (threads != null) {
            if (threads < 1) throw new IllegalArgumentException("--threads " + threads + ": expected ≥ 1");
            System.setProperty("dive.threads", Integer.toString(threads));
        }
        Main.quietLogs(quiet);
        return Backends.create(device, backend);
    }

    /**
     * Runs {@code body} with the flags as the system properties that Backends.select() reads (for training and conversion
     * code), restoring the properties afterwards.
     */
    <T> T withSelection(java.util.concurrent.Callable<T> body) throws Exception {
        String device0 = System.getProperty("dive.device"), backend0 = System.getProperty("dive.backend");
        System.setProperty("dive.device", device);
        System.setProperty("dive.backend", backend);
        try {
            return body.call();
        } finally {
            restore("dive.device", device0);
            restore("dive.backend", backend0);
        }
    }

    private static void restore(String key, String value) {
        if (value == null) System.clearProperty(key); else System.setProperty(key, value);
    }

    Engine load(Path modelDir) throws Exception {
        return Engine.load(modelDir, backend());
    }
}
