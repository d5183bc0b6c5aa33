package dive.model;

import dive.backend.ScalarBackend;
import dive.io.NpyWriter;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Interop with transformers: our Mixtral export loads as MixtralForCausalLM and gives the logits our engine computed
 * (src/test/python/check_mixtral_export.py). Runs only where {@code DIVE_PYTHON} names a python with torch and
 * transformers (e.g. {@code DIVE_PYTHON=/work/pyref/bin/python ./dive test}); skipped with that reason otherwise.
 */
@Tag("python")
class MixtralExportPythonTest {
    @TempDir Path tmp;

    @Test
    void transformersLoadsOurExportAndAgreesOnLogits() throws Exception {
        String python = System.getenv("DIVE_PYTHON");
        assumeTrue(python != null && !python.isBlank(),
                "DIVE_PYTHON is not set (a python with torch + transformers 5); skipping the transformers interop check");
        Path out = tmp.resolve("export");
        int[] ids = Fixtures.ints(MixtralFixtureTest.expected("k2_i40").get("input_ids"));
        Path logits = tmp.resolve("dive_logits.npy");
        try (LlamaModel model = LlamaModel.load(MixtralFixtureTest.dir("k2_i40"), new ScalarBackend())) {
            MixtralExport.write(out, model, MixtralExport.Options.defaults());
        }
        try (LlamaModel exported = LlamaModel.load(out, new ScalarBackend())) {
            NpyWriter.writeF32(logits, exported.logits(ids), ids.length, exported.config().vocabSize());
        }
        ProcessBuilder pb = new ProcessBuilder(python, "src/test/python/check_mixtral_export.py", out.toString(), logits.toString(),
                Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(",")));
        pb.environment().put("OMP_WAIT_POLICY", "PASSIVE");
        pb.environment().put("HF_HUB_OFFLINE", "1");
        pb.redirectErrorStream(true);
        Process p = pb.start();
        String output = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(300, TimeUnit.SECONDS), "check_mixtral_export.py did not finish");
        System.out.println("check_mixtral_export.py: " + output.strip());
        assertEquals(0, p.exitValue(), output);
        assertTrue(output.contains("ok: relative error"), output);
        assertTrue(Files.exists(out.resolve("config.json")));
    }
}
