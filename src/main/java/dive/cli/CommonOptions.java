package dive.cli;

import dive.api.Engine;
import dive.backend.Backend;
import dive.backend.Backends;
import picocli.CommandLine.Option;

import java.nio.file.Path;

/** Options every model command takes. */
final class CommonOptions {
    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "compute backend: auto (default: the fastest that works here), vector (Vector API), scalar (plain reference)")
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
        return Backends.create(backend);
    }

    /** for commands whose training code picks its backend itself ({@code Backends.select()}): --backend, --threads, -q for all */
    Backend applyGlobally() {
        if (!backend.equals("auto")) System.setProperty("dive.backend", backend);
        return backend();
    }

    Engine load(Path modelDir) throws Exception {
        return Engine.load(modelDir, backend());
    }
}
