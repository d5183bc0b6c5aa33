package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.io.SafetensorsFile;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Loss and every parameter's gradient of an MoE {@link TrainableLlama} (top-k routing) against PyTorch autograd through
 * Hugging Face {@code MixtralForCausalLM} ({@code src/test/python/make_moe_grad_fixtures.py}: F32, eager experts,
 * labels = input_ids on a 2 × 12 batch): top-2 (tied embeddings), top-1 (untied), and top-2 with transformers'
 * load-balancing loss (router_aux_loss_coef 0.02 and 1, output_router_logits), on both backends. With top-1 the
 * routing weight is softmax over one logit = 1: the router gets no gradient from the LM loss (ours exactly 0, torch's
 * rounding noise below 1e-6 of the largest gradient).
 * Loss within 1e-5 relative; each gradient within 1e-4 relative as max|ours − torch| / max|torch| per tensor.
 */
class MoeTrainingReferenceTest {
    static final Path MODELS = Path.of("src/test/resources/mixtral"), GRADS = Path.of("src/test/resources/moe_grad");

    static Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        for (String name : new String[] {"k2_i40", "k1", "k2_i40_aux0.02", "k2_i40_aux1"})
            for (Backend backend : new Backend[] {new ScalarBackend(), new VectorBackend(2)}) cases.add(Arguments.of(name, backend));
        return cases.stream();
    }

    static JsonNode expected(String name) throws Exception {
        return new ObjectMapper().readTree(GRADS.resolve(name).resolve("expected.json").toFile());
    }

    @ParameterizedTest(name = "{0} on {1}")
    @MethodSource("cases")
    void lossAndGradientsMatchPyTorchAutograd(String name, Backend backend) throws Exception {
        JsonNode expected = expected(name);
        TrainableLlama model = TrainableLlama.fromCheckpoint(MODELS.resolve(expected.get("model").asText().substring("mixtral/".length())), backend);
        assertTrue(model.isMoe());
        boolean aux = !expected.get("router_aux_loss_coef").isNull();
        if (aux) model.setAuxLossCoef(expected.get("router_aux_loss_coef").asDouble());
        int[][] batch = TrainableLlamaReferenceTest.batch(expected);
        double loss = lossMatchingTorch(model, expected), torchLoss = expected.get("loss").asDouble();
        assertEquals(expected.get("lm_loss").asDouble(), model.lastLmLoss(), 1e-5 * torchLoss, "cross-entropy part");
        if (aux) assertEquals(expected.get("aux_loss").asDouble(), model.lastAuxLoss(), 1e-5 * expected.get("aux_loss").asDouble(), "aux loss");
        else assertTrue(Double.isNaN(model.lastAuxLoss()));
        assertEquals(model.lastLmLoss(), model.loss(batch), 1e-6 * loss, "loss() = the cross-entropy, without gradients");

        int[][] load = model.lastExpertLoad();
        int k = model.config().moe().numExpertsPerTok();
        for (int[] layer : load) assertEquals(batch.length * (batch[0].length - 1) * k, java.util.Arrays.stream(layer).sum(), "N·k assignments per layer");

        try (SafetensorsFile grads = SafetensorsFile.open(GRADS.resolve(name).resolve("grads.safetensors"))) {
            double worst = 0, maxAll = 0;
            for (Parameter p : model.parameters()) for (float v : grads.tensor(p.name()).toFloatArray()) maxAll = Math.max(maxAll, Math.abs(v));
            for (Parameter p : model.parameters()) {
                if (k == 1 && !aux && p.name().endsWith("block_sparse_moe.gate.weight")) {
                    for (float g : p.gradValues()) assertEquals(0f, g, p.name() + ": top-1 weights are constant 1");
                    for (float g : grads.tensor(p.name()).toFloatArray()) assertTrue(Math.abs(g) < 1e-6 * maxAll, p.name() + " torch: " + g);
                    continue;
                }
                Tensor ref = grads.tensor(p.name());
                if (maxAbs(ref.toFloatArray()) == 0) { // an expert that got no token in this batch
                    assertEquals(0.0, maxAbs(p.gradValues()), p.name() + ": torch's gradient is zero (the expert got no token)");
                    int expert = Integer.parseInt(p.name().replaceAll(".*experts\\.(\\d+)\\..*", "$1"));
                    int layer = Integer.parseInt(p.name().replaceAll("model\\.layers\\.(\\d+)\\..*", "$1"));
                    assertEquals(0, load[layer][expert], p.name() + ": tokens routed to the expert");
                    continue;
                }
                double rel = relativeError(p.gradValues(), ref, p.name());
                worst = Math.max(worst, rel);
                assertTrue(rel <= 1e-4, p.name() + ": max|ours − torch| / max|torch| = " + rel);
            }
            System.out.printf("%s on %s: loss %.7f vs torch %.7f, worst gradient error %.2e%n", name, backend.name(), loss, torchLoss, worst);
        }
    }

    /**
     * the model's parameter names are torch's (the fixture's "parameters"); one training step on the fixture's batch gives
     * torch's loss within 1e-5 relative: returns it (the gradients are in the parameters)
     */
    static double lossMatchingTorch(TrainableLlama model, JsonNode expected) {
        TreeSet<String> names = new TreeSet<>(), torchNames = new TreeSet<>();
        model.parameters().forEach(p -> names.add(p.name()));
        expected.get("parameters").forEach(n -> torchNames.add(n.asText()));
        assertEquals(torchNames, names, "parameter names (checkpoint names)");
        double loss = model.lossAndGradients(TrainableLlamaReferenceTest.batch(expected), 1f);
        double torchLoss = expected.get("loss").asDouble();
        assertEquals(torchLoss, loss, 1e-5 * torchLoss, "loss");
        return loss;
    }

    static double maxAbs(float[] a) {
        double m = 0;
        for (float v : a) m = Math.max(m, Math.abs(v));
        return m;
    }

    static double relativeError(float[] ours, Tensor ref, String name) {
        assertEquals(ref.numel(), ours.length, name);
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < ours.length; i++) {
            double r = ref.getFloat(i);
            maxDiff = Math.max(maxDiff, Math.abs(ours[i] - r));
            maxRef = Math.max(maxRef, Math.abs(r));
        }
        assertTrue(maxRef > 0, name + ": the reference gradient is zero");
        return maxDiff / maxRef;
    }

    /** the aux cases can fail: the aux loss moves the router gradients by more than the 1e-4 tolerance (coef 1: by far more) */
    @Test
    void auxLossChangesTheRouterGradientsBeyondTheTolerance() throws Exception {
        try (SafetensorsFile plain = SafetensorsFile.open(GRADS.resolve("k2_i40").resolve("grads.safetensors"));
             SafetensorsFile small = SafetensorsFile.open(GRADS.resolve("k2_i40_aux0.02").resolve("grads.safetensors"));
             SafetensorsFile large = SafetensorsFile.open(GRADS.resolve("k2_i40_aux1").resolve("grads.safetensors"))) {
            for (int l = 0; l < 2; l++) {
                String n = "model.layers." + l + ".block_sparse_moe.gate.weight";
                double relSmall = relativeError(plain.tensor(n).toFloatArray(), small.tensor(n), n);
                double relLarge = relativeError(plain.tensor(n).toFloatArray(), large.tensor(n), n);
                assertTrue(relSmall > 5e-4, n + ": the aux loss (0.02) moves the router gradient by only " + relSmall);
                assertTrue(relLarge > 1e-2, n + ": the aux loss (1) moves the router gradient by only " + relLarge);
            }
        }
    }
}
