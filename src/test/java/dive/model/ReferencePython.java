package dive.model;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The live reference of the {@code python}-tagged interop tests: the interpreter named by {@code DIVE_PYTHON} (torch +
 * transformers; {@code ./dive test} sets it up from the local wheels), or the test is skipped saying so.
 */
public final class ReferencePython {
    private ReferencePython() {}

    /** the interpreter; skips the calling test where there is none (call it first, before any costly setup) */
    public static String interpreter() {
        String python = System.getenv("DIVE_PYTHON");
        assumeTrue(python != null && !python.isBlank(),
                "DIVE_PYTHON is not set (a python with torch + transformers 5); skipping the transformers interop check");
        return python;
    }

    /** runs src/test/python/SCRIPT with args, offline and with passive OpenMP threads; asserts exit 0 and returns stdout */
    public static String run(String script, String... args) throws IOException, InterruptedException {
        List<String> command = new ArrayList<>(List.of(interpreter(), "src/test/python/" + script));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command);
        pb.environment().put("OMP_WAIT_POLICY", "PASSIVE");
        pb.environment().put("HF_HUB_OFFLINE", "1");
        java.nio.file.Path errors = java.nio.file.Files.createTempFile("dive-" + script, ".stderr");
        try {
            pb.redirectError(errors.toFile());
            Process p = pb.start();
            String output = new String(p.getInputStream().readAllBytes()).strip();
            assertTrue(p.waitFor(300, TimeUnit.SECONDS), script + " did not finish");
            System.out.println(script + ": " + output);
            assertEquals(0, p.exitValue(), script + " failed: " + output + "\n" + java.nio.file.Files.readString(errors).strip());
            return output;
        } finally {
            java.nio.file.Files.deleteIfExists(errors);
        }
    }
}
