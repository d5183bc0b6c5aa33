package dive.convert;

import dive.backend.ScalarBackend;
import dive.data.Corpus;
import dive.io.NpyWriter;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;
import dive.train.TrainableLlama;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Interop with transformers: FLAP with bias compensation, written as {@code ./dive convert} writes it (a Llama with
 * {@code mlp_bias: true}, down_proj.bias = the compensation, gate/up biases zero, saved by TrainableLlama), loads in a
 * stock {@code LlamaForCausalLM} with no missing or unexpected weights and gives the logits the engine computed
 * (src/test/python/check_mixtral_export.py, which loads Llama folders as LlamaForCausalLM). Runs only where
 * {@code DIVE_PYTHON} names a python with torch and transformers; skipped with that reason otherwise.
 */
@Tag("python")
class BaselineExportPythonTest {
    @TempDir Path tmp;

    @Test
    void compensatedFlapLoadsInTransformersWithTheEnginesLogits() throws Exception {
        dive.model.ReferencePython.interpreter();
        Path model = BaselineConversionTest.MODEL;
        Tokenizer tokenizer = Tokenizer.load(model.resolve("tokenizer.json"));
        List<int[]> pooled = new ArrayList<>();
        List<String> names = List.of("bible-nt", "man2", "python-core");
        for (int i = 0; i < names.size(); i++)
            pooled.addAll(DatasetWindows.of(Corpus.bundled(), names.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).calibration());
        Path out = tmp.resolve("flap");
        int[] ids = pooled.getFirst();
        Path logits = tmp.resolve("dive_logits.npy");
        try (LlamaModel dense = LlamaModel.load(model, new ScalarBackend())) {
            CalibrationStatistics stats = CalibrationStatistics.collect(dense, pooled);
            int[][] kept = new FlapMethod().keptChannels(dense, pooled, stats, 24);
            LlamaConfig config = DensePruningMethod.prunedConfig(dense.config(), 24, true);
            Map<String, Tensor> weights = DensePruningMethod.prunedWeights(dense, kept, stats);
            TrainableLlama.copyOf(config, weights::get, "flap", new ScalarBackend()).saveCheckpoint(out, model.resolve("tokenizer.json"), DType.F32);
        }
        try (LlamaModel exported = LlamaModel.load(out, new ScalarBackend())) {
            assertTrue(exported.config().mlpBias());
            NpyWriter.writeF32(logits, exported.logits(ids), ids.length, exported.config().vocabSize());
        }
        String output = dive.model.ReferencePython.run("check_mixtral_export.py", out.toString(), logits.toString(),
                Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(",")));
        assertTrue(output.contains("ok: relative error") && output.contains("LlamaForCausalLM"), output);
    }
}
