package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dive.backend.Backend;
import dive.backend.Backends;
import dive.backend.DeviceTensor;
import dive.backend.TestBackends;
import dive.data.Corpus;
import dive.model.LlamaModel;
import dive.model.RoutingObserver;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** cmoe through the conversion driver on the tiny fixture: its carving, router stand-in, Qwen2-MoE build and export, counts. */
class CmoeMethodTest {
    static final Path MODEL = MethodPipelineTest.MODEL;
    static final ObjectMapper JSON = new ObjectMapper();
    static final List<String> NAMES = List.of("bible-nt", "man2", "python-core");
    @TempDir Path tmp;

    @Test
    void cmoeCarvesAQwen2MoeAtThePlainActiveWidthThatIsRetrainedAndExported() throws Exception {
        Path out = tmp.resolve("out");
        ConvertRecipe recipe = ConvertRecipe.parse(new YAMLMapper().readTree(
                ConvertCommandTest.tinyRecipe(256, 256) + "train_eval_windows: 0\nmethods: [dive, cmoe]\n"), "test recipe", tmp);
        // tiny_bpe: I = 48; E = 3, k = 2, r = 0.625 → A = 2·round(48·0.375) = 36; R = ⌊(48 − 36)/(3 − 2)⌋ = 12,
        // S = 48 − 3·12 = 12: active 12 + 2·12 = 36
        DiveConversion.Request q = new DiveConversion.Request(MODEL, "bundled", 3, 2, 0.625, recipe, out, false);
        DiveConversion.run(q, TestBackends.backend());

        JsonNode entry = JSON.readTree(out.resolve("report.json").toFile()).get("methods").get("cmoe");
        assertEquals("stock Qwen2-MoE (shared expert + sigmoid gate)", entry.get("export_format").asText());
        String variant = entry.get("variant").asText();
        assertTrue(variant.startsWith("CMoE carving: a shared expert of 12 channels (highest activation rate) + 3 routed experts of 12 "
                + "channels (balanced co-activation clustering), top-2: 36 active channels (plain setting: 36)"), variant);
        assertTrue(variant.endsWith("routed down projections × 2 (renormalised top-2 weights ≈ 1/2 from a nearly flat router: each chosen "
                + "expert ≈ 1, as CMoE's)"), variant);
        // by hand: dense 63808 − 2 layers × FFN 3·64·48 = 45376 outside the FFNs; per layer router 3·64 = 192, shared expert
        // 3·64·12 = 2304, its gate 64, three routed experts 3·3·64·12 = 6912 → 9472; one routed expert (2304) idle per token and layer
        assertEquals(45376 + 2 * 9472, entry.get("params_total").asLong());
        assertEquals(45376 + 2 * 9472 - 2 * 2304, entry.get("params_active").asLong());
        assertEquals(256 + 256, entry.get("training_tokens").asLong());
        assertTrue(entry.path("grouping").isMissingNode() || entry.path("grouping").isNull(), "cmoe uses no groups");
        JsonNode config = DiveSharedMethodTest.assertQwen2MoeRun(out, "cmoe", entry, 12, 12);
        assertEquals(3, config.get("num_experts").asInt());
        assertEquals(2, config.get("num_experts_per_tok").asInt());

        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        List<int[]> calibration = new ArrayList<>();
        for (int i = 0; i < 3; i++)
            calibration.addAll(DatasetWindows.of(Corpus.bundled(), NAMES.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(4, i)).calibration());
        JsonNode side = JSON.readTree(out.resolve("cmoe/" + CmoeMethod.FILE).toFile());
        assertEquals(9 * 32, side.get("calibration_tokens").asLong(), "every dataset's 3 calibration windows of 32 tokens, pooled");
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("scalar"));
             LlamaModel built = LlamaModel.load(out.resolve("cmoe/build"), Backends.create("scalar"))) {
            // the FFN inputs x of every calibration token, per layer, through the model's hook
            List<List<float[]>> inputs = List.of(new ArrayList<>(), new ArrayList<>());
            RoutingObserver observer = new RoutingObserver() {
                @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
                @Override public void onFfnInput(Backend b, int layer, int tokens, int hidden, DeviceTensor x) {
                    for (int n = 0; n < tokens; n++) {
                        float[] row = new float[hidden];
                        b.read(x, (long) n * hidden, row, hidden);
                        inputs.get(layer).add(row);
                    }
                }
            };
            CalibrationStatistics.observe(dense, calibration, observer, n -> {});
            int d = 64, width = 48, tokens = 9 * 32;
            double[] chosen = new double[2];
            for (int l = 0; l < 2; l++) {
                JsonNode layer = side.get("layers").get(l);
                int[] shared = JSON.convertValue(layer.get("shared"), int[].class);
                int[][] experts = JSON.convertValue(layer.get("experts"), int[][].class);
                int[] representatives = JSON.convertValue(layer.get("representatives"), int[].class);
                // shared and routed channels partition the FFN's 48 channels
                int[] all = Arrays.copyOf(shared, width);
                for (int e = 0; e < 3; e++) System.arraycopy(experts[e], 0, all, 12 + 12 * e, 12);
                Arrays.sort(all);
                assertEquals(12, shared.length);
                for (int e = 0; e < 3; e++) assertEquals(12, experts[e].length, "expert " + e);
                for (int j = 0; j < width; j++) assertEquals(j, all[j], "layer " + l + ": every channel exactly once");

                // the shared expert = the 12 channels most often among a token's 10 of largest |ĥ|, ĥ the authors' normalised
                // score computed here in double from the observed x: SiLU(x·w_gate/(‖x‖‖w_gate‖))·x·w_up/(‖x‖‖w_up‖)
                String p = "model.layers." + l + ".mlp.";
                Map<String, Tensor> dw = dense.namedWeights();
                float[] gate = floats(dw.get(p + "gate_proj.weight")), up = floats(dw.get(p + "up_proj.weight"));
                float[] xs = new float[tokens * d];
                for (int n = 0; n < tokens; n++) System.arraycopy(inputs.get(l).get(n), 0, xs, n * d, d);
                long[] count = new long[width];
                for (int n = 0; n < tokens; n++) {
                    double[] score = new double[width];
                    double xn = norm(xs, n * d, d);
                    for (int j = 0; j < width; j++) {
                        double g = dot(xs, n * d, gate, j * d, d) / (xn * norm(gate, j * d, d));
                        double u = dot(xs, n * d, up, j * d, d) / (xn * norm(up, j * d, d));
                        score[j] = Math.abs(g / (1 + Math.exp(-g)) * u);
                    }
                    for (int j : top(score, 10)) count[j]++;
                }
                double[] countScore = Arrays.stream(count).asDoubleStream().toArray();
                int[] expectShared = top(countScore, 12);
                Arrays.sort(expectShared);
                assertArrayEquals(expectShared, shared, "layer " + l + " shared expert");

                // the routed experts and representatives: the carving of the host-side score of the same x
                CmoeActivations act = new CmoeActivations(width, 10);
                act.addInputs(xs, tokens, d, gate, up);
                CmoeLayer carved = CmoeCarving.carve(act, new CmoeSettings(12, 3, 12, 2), gate, up, d);
                assertArrayEquals(carved.experts(), experts, "layer " + l + " routed experts");
                assertArrayEquals(carved.representatives(), representatives, "layer " + l + " representatives");

                // the router: agreement of both candidates recomputed by CmoeRouter.topKAgreement; the chosen one's unit rows × τ,
                // τ = 0.1 / RMS of its logits over the calibration tokens
                double gateAgreement = CmoeRouter.topKAgreement(carved, xs, tokens, 2, carved.routerGate());
                double upAgreement = CmoeRouter.topKAgreement(carved, xs, tokens, 2, carved.routerUp());
                assertEquals(gateAgreement, layer.get("agreement").get("gate").asDouble(), 1.0 / tokens, "layer " + l + " gate agreement");
                assertEquals(upAgreement, layer.get("agreement").get("up").asDouble(), 1.0 / tokens, "layer " + l + " up agreement");
                boolean byGate = layer.get("router").asText().equals("gate");
                assertEquals(byGate, layer.get("agreement").get("gate").asDouble() >= layer.get("agreement").get("up").asDouble());
                float[] unit = byGate ? carved.routerGate() : carved.routerUp();
                double squares = 0;
                for (int n = 0; n < tokens; n++) for (int e = 0; e < 3; e++) squares += Math.pow(dot(xs, n * d, unit, e * d, d), 2);
                double tau = 0.1 / Math.sqrt(squares / (tokens * 3));
                assertEquals(tau, layer.get("router_scale").asDouble(), 1e-4 * tau, "layer " + l + " τ");
                Tensor router = built.namedWeights().get(p + "gate.weight");
                for (int i = 0; i < 3 * d; i++) assertEquals(tau * unit[i], router.getFloat(i), 1e-5 * (tau + Math.abs(tau * unit[i])), "router " + i);
                chosen[l] = layer.get("agreement").get(layer.get("router").asText()).asDouble();

                // the build holds exactly the dense slices: routed down × k = 2, shared down × 2 behind a zero gate
                for (int e = 0; e < 3; e++) DiveSharedMethodTest.assertSlices(dense, built, l, "experts." + e, experts[e], 2f);
                DiveSharedMethodTest.assertSlices(dense, built, l, "shared_expert", shared, 2f);
                Tensor sharedGate = built.namedWeights().get(p + "shared_expert_gate.weight");
                for (int j = 0; j < d; j++) assertEquals(0f, sharedGate.getFloat(j), "the shared expert starts ungated");
            }
            assertTrue(variant.contains(String.format(java.util.Locale.ROOT, "on the calibration tokens %.3f mean, %.3f min",
                    (chosen[0] + chosen[1]) / 2, Math.min(chosen[0], chosen[1]))), variant);
        }
    }

    @Test
    void settingsCmoeCannotHonourAreRefusedBeforeAnyWork() throws Exception {
        ConvertRecipe recipe = ConvertRecipe.parse(new YAMLMapper().readTree(
                ConvertCommandTest.tinyRecipe(256, 256) + "methods: [dive, cmoe]\n"), "test recipe", tmp);
        // E = k: no routed expert idle
        Path out = tmp.resolve("a");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DiveConversion.run(
                new DiveConversion.Request(MODEL, "bundled", 2, 2, 0.5, recipe, out, false), TestBackends.backend()));
        assertTrue(e.getMessage().startsWith("CMoE at E = 2, top-k = 2, r = 0.5 on an FFN of 48 channels: needs E > k"), e.getMessage());
        assertFalse(Files.exists(out), "nothing written");
        // E = 3, k = 2, r = 0.75: A = 2·12 = 24 < k·I/E = 32: routed experts of R = 24 channels would not fit
        Path out2 = tmp.resolve("b");
        e = assertThrows(IllegalArgumentException.class, () -> DiveConversion.run(
                new DiveConversion.Request(MODEL, "bundled", 3, 2, 0.75, recipe, out2, false), TestBackends.backend()));
        assertTrue(e.getMessage().startsWith("CMoE at E = 3, top-k = 2, r = 0.75 on an FFN of 48 channels: active width 24 is below k·I/E = 32"),
                e.getMessage());
        assertFalse(Files.exists(out2), "nothing written");
    }

    @Test
    void widthsAtThePlainActiveWidth() {
        // by hand: R = ⌊(I − A)/(E − k)⌋, S = I − E·R
        CmoeSettings top1 = CmoeSettings.atActiveWidth(1024, 8, 1, 0.5);   // A = 512: R = ⌊512/7⌋ = 73, S = 1024 − 584 = 440
        assertEquals(new CmoeSettings(440, 8, 73, 1), top1);
        assertEquals(513, top1.activeWidth());
        CmoeSettings top2 = CmoeSettings.atActiveWidth(1024, 8, 2, 0.75);  // A = 512: R = ⌊512/6⌋ = 85, S = 1024 − 680 = 344
        assertEquals(new CmoeSettings(344, 8, 85, 2), top2);
        assertEquals(514, top2.activeWidth());
        CmoeSettings tiny = CmoeSettings.atActiveWidth(5632, 8, 2, 0.75);  // A = 2816: R = ⌊2816/6⌋ = 469, S = 5632 − 3752 = 1880
        assertEquals(new CmoeSettings(1880, 8, 469, 2), tiny);
        assertEquals(2818, tiny.activeWidth());
        // E = 3, k = 2, r = 0.02 on I = 48: A = 2·47 = 94 leaves nothing to route
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CmoeSettings.atActiveWidth(48, 3, 2, 0.02));
        assertTrue(e.getMessage().contains("active width 94 leaves routed experts of 0 channels"), e.getMessage());
    }

    private static float[] floats(Tensor t) {
        float[] out = new float[Math.toIntExact(t.numel())];
        for (int i = 0; i < out.length; i++) out[i] = t.getFloat(i);
        return out;
    }

    private static double dot(float[] a, int ao, float[] b, int bo, int n) {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double) a[ao + i] * b[bo + i];
        return s;
    }

    private static double norm(float[] a, int off, int n) { return Math.sqrt(dot(a, off, a, off, n)); }

    /** the {@code count} indices of largest {@code score}, ties → lower index */
    private static int[] top(double[] score, int count) {
        return java.util.stream.IntStream.range(0, score.length).boxed()
                .sorted((a, b) -> score[a] != score[b] ? Double.compare(score[b], score[a]) : Integer.compare(a, b))
                .limit(count).mapToInt(Integer::intValue).toArray();
    }
}
