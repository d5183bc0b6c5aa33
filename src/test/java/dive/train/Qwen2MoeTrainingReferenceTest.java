package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.backend.ScalarBackend;
import dive.backend.VectorBackend;
import dive.io.SafetensorsFile;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A Qwen2-MoE {@link TrainableLlama} (routed experts plus the sigmoid-gated shared expert) against PyTorch autograd
 * through Hugging Face {@code Qwen2MoeForCausalLM} ({@code src/test/python/make_qwen2moe_fixtures.py}: F32, eager
 * experts, labels = input_ids on a 2 × 12 batch), on both backends: the loss within 1e-5 relative and every parameter's
 * gradient within 1e-4 relative (max|ours − torch| / max|torch| per tensor); DIVE's stage 0 (routers and shared expert
 * gates, nothing below them trainable: the backward skips input gradients) gives those parameters torch's gradients;
 * stage 1's LoRA, at B = 0, gets ∂L/∂B = (α/r)·(∂L/∂W)·Aᵀ from torch's ∂L/∂W for the routed and the shared experts'
 * projections alike; a trained model saves as a Qwen2-MoE folder that loads back with the same logits.
 */
class Qwen2MoeTrainingReferenceTest {
    static final Path MODEL = Path.of("src/test/resources/qwen2_moe/k2"), GRADS = Path.of("src/test/resources/qwen2_moe_grad/k2");
    @TempDir Path tmp;

    static Stream<Backend> backends() { return Stream.of(new ScalarBackend(), new VectorBackend(2)); }

    static JsonNode expected() throws Exception { return new ObjectMapper().readTree(GRADS.resolve("expected.json").toFile()); }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void lossAndGradientsMatchPyTorchAutograd(Backend backend) throws Exception {
        JsonNode expected = expected();
        TrainableLlama model = TrainableLlama.fromCheckpoint(MODEL, backend);
        assertTrue(model.isMoe());
        double loss = MoeTrainingReferenceTest.lossMatchingTorch(model, expected), torchLoss = expected.get("loss").asDouble();
        double worst = checkGradients(model.parameters());
        System.out.printf("qwen2_moe k2 on %s: loss %.7f vs torch %.7f, worst gradient error %.2e%n", backend.name(), loss, torchLoss, worst);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void stage0TrainsRoutersAndSharedExpertGatesWithTorchsGradients(Backend backend) throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(MODEL, backend);
        model.prepareStage0();
        List<String> trainable = model.parameters().stream().filter(Parameter::trainable).map(Parameter::name).sorted().toList();
        assertEquals(List.of("model.layers.0.mlp.gate.weight", "model.layers.0.mlp.shared_expert_gate.weight",
                "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.shared_expert_gate.weight"), trainable);
        model.setRouting(RoutingMode.TOP_K);  // the fixture's routing
        model.lossAndGradients(TrainableLlamaReferenceTest.batch(expected()), 1f);
        double worst = checkGradients(model.parameters().stream().filter(Parameter::trainable).toList());
        System.out.printf("qwen2_moe stage 0 on %s: worst gradient error %.2e%n", backend.name(), worst);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void stage1LoraReachesRoutedAndSharedExperts(Backend backend) throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(MODEL, backend);
        model.prepareStage1(4, 8, 0, 5);
        List<Parameter> trainable = model.parameters().stream().filter(Parameter::trainable).toList();
        for (String n : List.of("model.layers.1.mlp.shared_expert.down_proj.lora_B.weight", "model.layers.0.mlp.experts.3.gate_proj.lora_A.weight",
                "model.layers.0.mlp.shared_expert_gate.weight", "model.layers.1.mlp.gate.weight", "model.norm.weight"))
            assertTrue(trainable.stream().anyMatch(p -> p.name().equals(n)), n + " trains in stage 1");
        assertTrue(trainable.stream().noneMatch(p -> p.name().contains("self_attn") || p.name().endsWith("proj.weight")), "base projections frozen");
        model.lossAndGradients(TrainableLlamaReferenceTest.batch(expected()), 1f);
        double worst = checkGradients(trainable.stream().filter(p -> !p.name().contains("lora_")).toList());
        // LoRA at B = 0: y = x·(W + s·B·A)ᵀ, so ∂L/∂B = s·(∂L/∂W)·Aᵀ with torch's ∂L/∂W; ∂L/∂A = 0
        int checkedB = 0;
        try (SafetensorsFile grads = SafetensorsFile.open(GRADS.resolve("grads.safetensors"))) {
            for (Parameter b : trainable) {
                if (!b.name().endsWith(".lora_B.weight")) continue;
                String base = b.name().replace(".lora_B.weight", "");
                Tensor gw = grads.tensor(base + ".weight"), a = model.parameter(base + ".lora_A.weight").value();
                int out = gw.rows(), in = gw.cols(), r = a.rows();
                float[] expectedB = new float[out * r];
                for (int i = 0; i < out; i++)
                    for (int j = 0; j < r; j++) {
                        double sum = 0;
                        for (int c = 0; c < in; c++) sum += (double) gw.getFloat((long) i * in + c) * a.getFloat((long) j * in + c);
                        expectedB[i * r + j] = (float) (2.0 * sum);  // α/r = 8/4
                    }
                if (MoeTrainingReferenceTest.maxAbs(expectedB) == 0) continue;  // an expert without tokens
                double rel = MoeTrainingReferenceTest.relativeError(b.gradValues(), Tensor.ofFloats("ref", expectedB, out, r), b.name());
                worst = Math.max(worst, rel);
                assertTrue(rel <= 1e-4, b.name() + ": " + rel);
                checkedB++;
                for (float g : model.parameter(base + ".lora_A.weight").gradValues()) assertEquals(0f, g, base + ".lora_A: B = 0");
            }
        }
        assertTrue(checkedB >= 2 * 3 + 6, "LoRA B of both shared experts and of the routed experts checked: " + checkedB);
        System.out.printf("qwen2_moe stage 1 on %s: worst gradient error %.2e over %d LoRA B%n", backend.name(), worst, checkedB);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void aTrainedModelSavesAsQwen2MoeAndLoadsBack(Backend backend) throws Exception {
        TrainableLlama model = TrainableLlama.fromCheckpoint(MODEL, backend);
        model.prepareStage1(2, 4, 0, 3);
        int[][] batch = TrainableLlamaReferenceTest.batch(expected());
        AdamW adam = new AdamW(AdamW.Options.DEFAULT, backend);
        List<Parameter> trainable = model.parameters().stream().filter(Parameter::trainable).toList();
        for (int step = 0; step < 3; step++) {
            model.parameters().forEach(Parameter::zeroGrad);
            model.lossAndGradients(batch, 1f);
            adam.step(trainable, 1e-2);
        }
        model.mergeLora();
        int[] ids = batch[0];
        float[] trained = model.logits(ids);
        Path out = tmp.resolve("saved-" + backend.name());
        model.saveCheckpoint(out, null, null);
        try (LlamaModel loaded = LlamaModel.load(out, new ScalarBackend())) {
            float[] again = loaded.logits(ids);
            double maxDiff = 0, maxRef = 0;
            for (int i = 0; i < again.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(again[i] - trained[i])); maxRef = Math.max(maxRef, Math.abs(trained[i])); }
            assertTrue(maxDiff <= 1e-5 * maxRef, "saved model's logits: " + maxDiff / maxRef);
        }
        try (LlamaModel original = LlamaModel.load(MODEL, new ScalarBackend())) {
            float[] before = original.logits(ids);
            double maxDiff = 0;
            for (int i = 0; i < before.length; i++) maxDiff = Math.max(maxDiff, Math.abs(before[i] - trained[i]));
            assertTrue(maxDiff > 1e-3, "three steps changed the model");
        }
    }

    /** a fresh Qwen2-MoE: every parameter with the config's shape (the shared expert wider than the routed ones), trains, saves */
    @org.junit.jupiter.api.Test
    void aFreshlyInitializedQwen2MoeHasTheConfigsShapesAndSaves() throws Exception {
        dive.model.LlamaConfig config = dive.model.LlamaConfig.load(MODEL);
        TrainableLlama model = TrainableLlama.initialize(config, new ScalarBackend(), 1);
        assertArrayEquals(new long[] {24, 32}, model.parameter("model.layers.1.mlp.shared_expert.gate_proj.weight").value().shape());
        assertArrayEquals(new long[] {32, 24}, model.parameter("model.layers.1.mlp.shared_expert.down_proj.weight").value().shape());
        assertArrayEquals(new long[] {16, 32}, model.parameter("model.layers.1.mlp.experts.3.up_proj.weight").value().shape());
        assertArrayEquals(new long[] {1, 32}, model.parameter("model.layers.0.mlp.shared_expert_gate.weight").value().shape());
        int[][] batch = TrainableLlamaReferenceTest.batch(expected());
        double loss = model.lossAndGradients(batch, 1f);
        assertTrue(Math.abs(loss - Math.log(96)) < 0.5, "near-uniform predictions at init: " + loss);
        Path out = tmp.resolve("fresh");
        model.saveCheckpoint(out, null, null);
        try (LlamaModel loaded = LlamaModel.load(out, new ScalarBackend())) {
            assertArrayEquals(model.logits(batch[0]), loaded.logits(batch[0]), 1e-5f);
        }
    }

    /** every parameter's gradient against torch's; returns the worst relative error */
    private static double checkGradients(List<Parameter> params) throws Exception {
        double worst = 0;
        try (SafetensorsFile grads = SafetensorsFile.open(GRADS.resolve("grads.safetensors"))) {
            List<String> checked = new ArrayList<>();
            for (Parameter p : params) {
                Tensor ref = grads.tensor(p.name());
                if (MoeTrainingReferenceTest.maxAbs(ref.toFloatArray()) == 0) {
                    assertEquals(0.0, MoeTrainingReferenceTest.maxAbs(p.gradValues()), p.name() + ": torch's gradient is zero");
                    continue;
                }
                double rel = MoeTrainingReferenceTest.relativeError(p.gradValues(), ref, p.name());
                worst = Math.max(worst, rel);
                assertTrue(rel <= 1e-4, p.name() + ": max|ours − torch| / max|torch| = " + rel);
                checked.add(p.name());
            }
            assertFalse(checked.isEmpty());
        }
        return worst;
    }
}
