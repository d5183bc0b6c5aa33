package dive.model;

import dive.backend.ScalarBackend;
import dive.io.NpyWriter;
import dive.tensor.DType;
import dive.tensor.TensorArena;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Interop with transformers: a Qwen2-MoE the engine built (the gqa dense fixture with a 40-channel shared expert behind a
 * random, non-zero gate, 4 random 24-channel routed experts, top-2, random routers) and exported by
 * {@link Qwen2MoeExport} loads as Qwen2MoeForCausalLM without missing or unexpected weights and gives the engine's
 * logits within 1e-4 relative (src/test/python/check_mixtral_export.py), in F32 and as a BF16 export. Runs only where
 * {@code DIVE_PYTHON} names a python with torch and transformers; skipped with that reason otherwise.
 */
@Tag("python")
class Qwen2MoeExportPythonTest {
    @TempDir Path tmp;

    private void check(DType dtype) throws Exception {
        ReferencePython.interpreter();
        Path out = tmp.resolve("export-" + dtype);
        int[] ids = Fixtures.ints(Fixtures.expected("gqa").get("input_ids"));
        try (LlamaModel dense = LlamaModel.load(Fixtures.dir("gqa"), new ScalarBackend()); TensorArena arena = TensorArena.shared()) {
            Qwen2MoeBuild.Built built = Qwen2MoeBuild.fromDense(dense, 40, 4, 24, 2, false, true, 11, arena);
            Qwen2MoeExport.write(out, built.config(), built.weights(), Qwen2MoeExport.Options.defaults().withDtype(dtype));
        }
        Path logits = tmp.resolve("dive_logits_" + dtype + ".npy");
        try (LlamaModel exported = LlamaModel.load(out, new ScalarBackend())) {
            for (var t : exported.namedWeights().values()) assertEquals(dtype, t.dtype(), t.name());
            NpyWriter.writeF32(logits, exported.logits(ids), ids.length, exported.config().vocabSize());
        }
        String output = ReferencePython.run("check_mixtral_export.py", out.toString(), logits.toString(),
                Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(",")));
        System.out.println("qwen2_moe export " + dtype + ": " + output.strip());
        assertTrue(output.contains("ok: relative error") && output.contains("Qwen2MoeForCausalLM"), output);
    }

    @Test
    void transformersLoadsOurF32ExportAndAgreesOnLogits() throws Exception { check(DType.F32); }

    @Test
    void transformersLoadsOurBf16ExportAndAgreesOnLogits() throws Exception { check(DType.BF16); }
}
