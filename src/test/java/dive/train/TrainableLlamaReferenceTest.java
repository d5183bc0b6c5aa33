package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.io.SafetensorsFile;
import dive.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Loss and every parameter's gradient of {@link TrainableLlama} against PyTorch autograd through Hugging Face
 * {@code LlamaForCausalLM} ({@code src/test/python/make_grad_fixtures.py}: F32, labels = input_ids on a
 * 2 × 12 batch) for the GQA fixture (untied) and the tied-embedding fixture, on both backends.
 * Loss within 1e-5 relative; each gradient within 1e-4 relative as max|ours − torch| / max|torch| per tensor.
 */
class TrainableLlamaReferenceTest {
    static final Path MODELS = Path.of("src/test/resources/llama"), GRADS = Path.of("src/test/resources/llama_grad");

    static Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        for (String name : new String[] {"gqa", "tiny_bpe"})
            for (Backend backend : new Backend[] {new ScalarBackend(), new VectorBackend(2)}) cases.add(Arguments.of(name, backend));
        return cases.stream();
    }

    static int[][] batch(JsonNode expected) {
        JsonNode rows = expected.get("batch");
        int[][] batch = new int[rows.size()][];
        for (int b = 0; b < batch.length; b++) {
            batch[b] = new int[rows.get(b).size()];
            for (int t = 0; t < batch[b].length; t++) batch[b][t] = rows.get(b).get(t).asInt();
        }
        return batch;
    }

    @ParameterizedTest(name = "{0} on {1}")
    @MethodSource("cases")
    void lossAndGradientsMatchPyTorchAutograd(String name, Backend backend) throws Exception {
        JsonNode expected = new ObjectMapper().readTree(GRADS.resolve(name).resolve("expected.json").toFile());
        TrainableLlama model = TrainableLlama.fromCheckpoint(MODELS.resolve(name), backend);
        List<String> names = model.parameters().stream().map(Parameter::name).toList();
        List<String> torchNames = new ArrayList<>();
        expected.get("parameters").forEach(n -> torchNames.add(n.asText()));
        assertEquals(torchNames, names, "parameters in transformers' named_parameters() order");

        double loss = model.lossAndGradients(batch(expected), 1f);
        double torchLoss = expected.get("loss").asDouble();
        assertEquals(torchLoss, loss, 1e-5 * torchLoss, "loss");
        assertEquals(loss, model.loss(batch(expected)), 1e-6 * loss, "loss() without gradients");

        try (SafetensorsFile grads = SafetensorsFile.open(GRADS.resolve(name).resolve("grads.safetensors"))) {
            double worst = 0;
            for (Parameter p : model.parameters()) {
                Tensor ref = grads.tensor(p.name());
                assertEquals(ref.numel(), p.numel(), p.name());
                double maxDiff = 0, maxRef = 0;
                for (int i = 0; i < p.numel(); i++) {
                    double r = ref.getFloat(i);
                    maxDiff = Math.max(maxDiff, Math.abs(p.gradValues()[i] - r));
                    maxRef = Math.max(maxRef, Math.abs(r));
                }
                assertTrue(maxRef > 0, p.name() + ": the reference gradient is zero");
                double rel = maxDiff / maxRef;
                worst = Math.max(worst, rel);
                assertTrue(rel <= 1e-4, p.name() + ": max|ours − torch| / max|torch| = " + rel);
            }
            System.out.printf("%s on %s: loss %.7f vs torch %.7f, worst gradient error %.2e%n", name, backend.name(), loss, torchLoss, worst);
        }
    }

    @ParameterizedTest(name = "{0} on {1}")
    @MethodSource("cases")
    void gradScaleAccumulatesAndFrozenParametersGetNothing(String name, Backend backend) throws Exception {
        JsonNode expected = new ObjectMapper().readTree(GRADS.resolve(name).resolve("expected.json").toFile());
        TrainableLlama once = TrainableLlama.fromCheckpoint(MODELS.resolve(name), backend);
        TrainableLlama twice = TrainableLlama.fromCheckpoint(MODELS.resolve(name), backend);
        Parameter frozen = twice.parameters().get(3);
        frozen.setTrainable(false);
        once.lossAndGradients(batch(expected), 1f);
        twice.lossAndGradients(batch(expected), 0.5f);
        twice.lossAndGradients(batch(expected), 0.5f);
        for (int p = 0; p < once.parameters().size(); p++) {
            float[] a = once.parameters().get(p).gradValues(), b = twice.parameters().get(p).gradValues();
            double maxAbs = 0;
            for (float v : a) maxAbs = Math.max(maxAbs, Math.abs(v));
            for (int i = 0; i < a.length; i++) {
                if (p == 3) assertEquals(0f, b[i], "frozen " + frozen.name() + " got a gradient");
                else assertEquals(a[i], b[i], 1e-5 * maxAbs, once.parameters().get(p).name()); // two halves summed: F32 rounding
            }
        }
    }
}
