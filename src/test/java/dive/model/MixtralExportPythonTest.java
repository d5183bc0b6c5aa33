package dive.model;

import dive.backend.ScalarBackend;
import dive.io.NpyWriter;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Interop with transformers: our Mixtral export loads as MixtralForCausalLM and gives the logits our engine computed
 * (src/test/python/check_mixtral_export.py). Runs only where {@code DIVE_PYTHON} names a python with torch and
 * transformers (e.g. {@code DIVE_PYTHON=.venv-ref/bin/python ./dive test}); skipped with that reason otherwise.
 */
@Tag("python")
class MixtralExportPythonTest {
    @TempDir Path tmp;

    @Test
    void transformersLoadsOurExportAndAgreesOnLogits() throws Exception {
        ReferencePython.interpreter();
        Path out = tmp.resolve("export");
        int[] ids = Fixtures.ints(MixtralFixtureTest.expected("k2_i40").get("input_ids"));
        Path logits = tmp.resolve("dive_logits.npy");
        try (LlamaModel model = LlamaModel.load(MixtralFixtureTest.dir("k2_i40"), new ScalarBackend())) {
            MixtralExport.write(out, model, MixtralExport.Options.defaults());
        }
        try (LlamaModel exported = LlamaModel.load(out, new ScalarBackend())) {
            NpyWriter.writeF32(logits, exported.logits(ids), ids.length, exported.config().vocabSize());
        }
        String output = ReferencePython.run("check_mixtral_export.py", out.toString(), logits.toString(),
                Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(",")));
        assertTrue(output.contains("ok: relative error"), output);
        assertTrue(Files.exists(out.resolve("config.json")));
    }

    @Test
    void aBf16ExportLoadsInTransformersAndGivesTheEnginesLogits() throws Exception {
        ReferencePython.interpreter();
        Path out = tmp.resolve("export-bf16");
        int[] ids = Fixtures.ints(MixtralFixtureTest.expected("k2_i40").get("input_ids"));
        Path logits = tmp.resolve("dive_logits_bf16.npy");
        try (LlamaModel model = LlamaModel.load(MixtralFixtureTest.dir("k2_i40"), new ScalarBackend())) {
            MixtralExport.write(out, model, MixtralExport.Options.defaults().withDtype(dive.tensor.DType.BF16));
        }
        try (LlamaModel exported = LlamaModel.load(out, new ScalarBackend())) {
            for (var t : exported.namedWeights().values()) assertEquals(dive.tensor.DType.BF16, t.dtype(), t.name());
            NpyWriter.writeF32(logits, exported.logits(ids), ids.length, exported.config().vocabSize());
        }
        assertTrue(Files.readString(out.resolve("config.json")).contains("\"bfloat16\""));
        String output = ReferencePython.run("check_mixtral_export.py", out.toString(), logits.toString(),
                Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(",")));
        assertTrue(output.contains("ok: relative error"), output);
    }
}
