package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backend;
import dive.backend.DeviceTensor;
import dive.model.DenseFfn;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.Qwen2MoeExport;
import dive.model.RoutingObserver;
import dive.model.SharedExpertMoeFfn;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.IntConsumer;

/**
 * The CMoE baseline ({@code cmoe}; Pei et al., arXiv 2502.04416, see {@link CmoeCarving}) through the pipeline, built and
 * exported as a stock Qwen2-MoE. No groups: CMoE is data-driven but not domain-grouped; it calibrates on every dataset's
 * calibration windows pooled ({@link Method.Context#pooledCalibration()}).
 *
 * <h2>Widths: the plain setting's active width</h2>
 * {@link CmoeSettings#atActiveWidth}: A = k·round(I·(1 − r)); R = ⌊(I − A)/(E − k)⌋ channels per routed expert, the
 * shared expert S = I − E·R (leftovers join it), so S + k·R = A or a few channels more and every channel is in exactly one
 * expert (I = 1024, E = 8: top-1 r 0.5 → R = 73, S = 440, active 513; top-2 r 0.75 → R = 85, S = 344, active 514;
 * TinyLlama I = 5632, E = 8: top-1 r 0.5 → R = 402, S = 2416, active 2818; top-2 r 0.75 → R = 469, S = 1880, active 2818).
 * {@link #check} refuses, before any work, E ≤ k, R &lt; 1, S &lt; 1 (Qwen2-MoE needs a shared expert), bias
 * compensation and output scales (Qwen2-MoE experts hold no biases).
 *
 * <h2>Build</h2>
 * <ol>
 * <li><b>Calibration</b>: {@link CmoeActivations#collectNormalized}, the authors' normalised score
 *     ĥ_j = SiLU(x̂·ŵ_gate,j)·(x̂·ŵ_up,j) from each layer's FFN input x ({@link RoutingObserver#onFfnInput}), K_a = 10
 *     active channels per token. On the dense model's own activations (layer ℓ+1 sees dense outputs), as every method
 *     here calibrates; the authors feed each layer the outputs of the already carved layers before it — not done here
 *     (it needs the carved layer's forward inside calibration; the dense inputs keep CMoE on the same calibration
 *     footing as the other methods).
 * <li><b>Carving</b>: {@link CmoeCarving} per layer (shared = highest activation rate, balanced co-activation clustering
 *     of the rest, representative channels, the analytical router).
 * <li><b>Linear router stand-in</b>: Qwen2-MoE's router is linear, CMoE's score |(r_up·x)·SiLU(r_gate·x)| is not. Two
 *     candidates per layer, the representatives' unit W_gate rows and their unit W_up rows; a second forward over the
 *     same calibration windows counts, per layer, the tokens on which each candidate's top-k equals the analytical
 *     router's ({@link CmoeRouter#sameTopK}, as {@link CmoeRouter#topKAgreement}); the candidate with the higher
 *     agreement is taken (ties → W_gate). Only calibration tokens are used, never evaluation windows. Its rows are
 *     scaled by τ = {@value #ROUTER_LOGIT_RMS} / RMS of its logits on those tokens (a positive scale keeps every top-k
 *     choice), so the router's softmax starts nearly flat. Agreements, choices and τ go to {@code cmoe.json} and the
 *     agreement into the variant text.
 * <li><b>Combine weights</b>: CMoE adds every chosen expert with weight 1 (1 + p·σ, σ = 0 at carving); Qwen2-MoE's
 *     renormalised top-k weights sum to 1. Every routed expert's down projection is × k: for k = 1 the weight is exactly
 *     1; for k &gt; 1 the nearly flat router gives each chosen expert ≈ 1/k, so ≈ 1 after the factor (exact in binary for
 *     k a power of two). The shared expert is exact (zero shared_expert_gate, down × 2: σ(0) = ½).
 * <li><b>Experts</b>: slices of the dense FFN ({@link SharedExpertMoeFfn#fromChannels}), written with
 *     {@link Qwen2MoeExport#write} into the build folder (atomic); {@code cmoe.json} in the method's folder: per layer the
 *     shared channels, each expert's channels, the representatives, both candidates' agreement, the router taken, τ.
 * </ol>
 * The load-balancing bias of CMoE is zero after carving and moves only during CMoE's own fine-tuning; here the
 * retraining is the one common to every MoE method: stage 0 trains the routers and the shared experts' gates (soft
 * routing), stages 1 and 2 LoRA on routed and shared experts + routers + gates + RMSNorms (the driver picks the names from
 * the built Qwen2-MoE config). The bias, σ and CMoE's own LoRA recipe are not used.
 *
 * <h2>Memory (TinyLlama-1.1B: d = 2048, I = 5632, 22 layers; default 16 windows × 256 tokens of 24 datasets, N = 98,304)</h2>
 * Calibration keeps per layer only the markers (4·N·K_a bytes: 3.9 MB, 87 MB for 22 layers, up to twice that while the
 * arrays grow) and the weight rows' norms (2·I doubles); nothing of size N × I is kept: each batch (N_b ≈ 2048 tokens) is
 * reduced layer by layer (transient 92 MB on the backend, 109 MB on the host, see {@link CmoeActivations#collectNormalized}).
 * Time at that scale is not measured yet (the host part is N·I·L normalised scores, 1.2·10¹⁰ SiLUs, beside two forwards).
 * The carving adds under 1 MB per layer; the router fit a (2E, d) F32 candidate matrix per layer (131 KB at E = 8) and
 * N_b·2E floats per batch. The built experts hold the whole FFN once in the dense dtype (as {@code dive_shared}: 1.5 GB in
 * BF16), written and freed at the end of the build.
 */
public final class CmoeMethod implements Method {
    public static final String NAME = "cmoe";
    static final String FILE = "cmoe.json";
    /** the RMS of the linear router's logits on the calibration tokens after scaling (keeps its softmax nearly flat) */
    static final double ROUTER_LOGIT_RMS = 0.1;
    private static final ObjectMapper JSON = new ObjectMapper();

    @Override public String name() { return NAME; }

    @Override public Family family() { return Family.MOE; }

    @Override
    public void check(DiveConversion.Request q, LlamaConfig dense) {
        DiveSharedMethod.refuseBiases(NAME, q.recipe());
        settings(q, dense);
    }

    /** the carving's widths at the plain setting's active width; refused with a message naming the setting */
    static CmoeSettings settings(DiveConversion.Request q, LlamaConfig dense) {
        CmoeSettings s = CmoeSettings.atActiveWidth(dense.intermediateSize(), q.experts(), q.topK(), q.ratio());
        if (s.sharedWidth() < 1)
            throw new IllegalArgumentException("CMoE at E = " + q.experts() + ", top-k = " + q.topK() + ", r = " + q.ratio() + " on an FFN of "
                    + dense.intermediateSize() + " channels: no channel left for the shared expert (a Qwen2-MoE export needs one)");
        return s;
    }

    @Override
    public String variant(Context c) {
        CmoeSettings s = settings(c.request(), c.denseConfig());
        int k = s.topK();
        StringBuilder v = new StringBuilder("CMoE carving: a shared expert of " + s.sharedWidth() + " channels (highest activation rate) + "
                + s.experts() + " routed experts of " + s.expertWidth() + " channels (balanced co-activation clustering), top-" + k + ": "
                + s.activeWidth() + " active channels (plain setting: " + k * Pruning.keptWidth(s.intermediateSize(), c.request().ratio())
                + "); activity: top-" + s.activeNeurons() + " channels per token by the authors' normalised score on every dataset's "
                + "calibration windows pooled");
        Path file = c.dir().resolve(FILE);
        try {
            if (Files.isRegularFile(file)) {
                JsonNode json = JSON.readTree(file.toFile());
                int gate = 0, layers = json.get("layers").size();
                double sum = 0, min = 1;
                for (JsonNode l : json.get("layers")) {
                    if (l.get("router").asText().equals("gate")) gate++;
                    double a = l.get("agreement").get(l.get("router").asText()).asDouble();
                    sum += a;
                    min = Math.min(min, a);
                }
                v.append(" (").append(json.get("calibration_tokens").asLong()).append(" tokens); router: linear stand-in of the "
                        + "representatives' unit W_gate rows in ").append(gate).append(" and W_up rows in ").append(layers - gate)
                        .append(" of ").append(layers).append(" layers, top-").append(k).append(" agreement with CMoE's analytical router "
                        + "on the calibration tokens ").append(String.format(Locale.ROOT, "%.3f mean, %.3f min", sum / layers, min))
                        .append(" (").append(FILE).append(")");
            }
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(file + ": " + e.getMessage(), e);
        }
        return v.append("; routed down projections × ").append(k).append(k == 1 ? " (top-1 weight exactly 1, as CMoE's)"
                : " (renormalised top-" + k + " weights ≈ 1/" + k + " from a nearly flat router: each chosen expert ≈ 1, as CMoE's)").toString();
    }

    @Override
    public String exportFormat(Context c) { return DiveSharedMethod.EXPORT_FORMAT; }

    @Override
    public void export(Path from, Path to, Context c, DType dtype) throws Exception { DiveSharedMethod.exportQwen2Moe(from, to, c, dtype); }

    @Override
    public void build(BuildContext c) throws Exception {
        DiveConversion.Request q = c.request();
        LlamaModel dense = c.dense();
        LlamaConfig dc = dense.config();
        CmoeSettings settings = settings(q, dc);
        List<int[]> windows = c.context().pooledCalibration();
        long calibrationTokens = windows.stream().mapToLong(w -> w.length).sum();
        int layers = dc.numHiddenLayers(), d = dc.hiddenSize(), experts = settings.experts(), k = settings.topK();
        CmoeCarving.Result carved;
        RouterFit[] fits;
        try (Progress bar = new Progress("cmoe calibration", 2L * windows.size(), "windows", q.progress())) {
            CmoeActivations[] activations = CmoeActivations.collectNormalized(dense, windows, settings.activeNeurons(), bar::step);
            carved = CmoeCarving.carve(dense, activations, settings);
            fits = fitRouters(dense, carved.layers(), windows, k, bar::step);
        }

        Map<String, Tensor> weights = DiveSharedMethod.nonFfnWeights(dense);
        List<Map<String, Object>> sides = new ArrayList<>();
        try (TensorArena arena = TensorArena.shared()) {  // the experts, freed once written
            for (int l = 0; l < layers; l++) {
                CmoeLayer layer = carved.layers()[l];
                RouterFit fit = fits[l];
                boolean gate = fit.gateAgreement() >= fit.upAgreement();
                double rms = gate ? fit.gateLogitRms() : fit.upLogitRms();
                double scale = rms > 0 ? ROUTER_LOGIT_RMS / rms : 1;
                float[] unit = gate ? layer.routerGate() : layer.routerUp(), router = new float[experts * d];  // (E, d)
                for (int i = 0; i < router.length; i++) router[i] = (float) (scale * unit[i]);
                String prefix = "model.layers." + l + ".";
                SharedExpertMoeFfn.fromChannels((DenseFfn) dense.feedForward(l), layer.shared(), layer.experts(),
                        Tensor.ofFloats(prefix + "mlp.gate.weight", router, experts, d), k, k, prefix, arena).collectWeights(prefix, weights);
                Map<String, Object> side = new LinkedHashMap<>();
                side.put("shared", layer.shared());
                side.put("experts", layer.experts());
                side.put("representatives", layer.representatives());
                side.put("agreement", Map.of("gate", fit.gateAgreement(), "up", fit.upAgreement()));
                side.put("router", gate ? "gate" : "up");
                side.put("router_scale", scale);
                sides.add(side);
            }
            Map<String, Object> json = new LinkedHashMap<>();
            json.put("shared_width", settings.sharedWidth());
            json.put("expert_width", settings.expertWidth());
            json.put("experts", experts);
            json.put("top_k", k);
            json.put("active_width", settings.activeWidth());
            json.put("active_neurons", settings.activeNeurons());
            json.put("score", "normalised: SiLU(x̂·ŵ_gate)·(x̂·ŵ_up), unit-norm x and weight rows");
            json.put("calibration_windows", windows.size());
            json.put("calibration_tokens", calibrationTokens);
            json.put("routed_down_factor", k);
            json.put("router_logit_rms", ROUTER_LOGIT_RMS);
            json.put("layers", sides);
            AtomicFiles.writeString(c.dir().resolve(FILE), JSON.writeValueAsString(json) + "\n");
            Qwen2MoeExport.write(c.buildDir(), dc.toQwen2Moe(settings.expertWidth(), settings.sharedWidth(), experts, k), weights,
                    Qwen2MoeExport.Options.defaults().withTokenizerFrom(c.context().modelDir()));
        }
    }

    /**
     * One layer's linear router candidates on the calibration tokens: the share of tokens whose top-k under the
     * representatives' unit W_gate rows (W_up rows) is the analytical router's, and the RMS of those logits over tokens
     * and experts.
     */
    record RouterFit(long tokens, double gateAgreement, double upAgreement, double gateLogitRms, double upLogitRms) {}

    /**
     * Runs {@code windows} through {@code dense} once more (each from an empty context, batched as
     * {@link CalibrationStatistics}) and measures both linear candidates of every carved layer on the FFN inputs x:
     * per layer and batch one (N_b, d) × (d, 2E) product on the backend (x · [routerGate; routerUp]ᵀ, the dot products
     * that both the analytical score and the candidates' logits are made of), the rest on the host; nothing is kept
     * but counts.
     */
    static RouterFit[] fitRouters(LlamaModel dense, CmoeLayer[] carved, List<int[]> windows, int k, IntConsumer windowsDone) {
        int layers = carved.length;
        Tensor[] candidates = new Tensor[layers];
        for (int l = 0; l < layers; l++) {
            CmoeLayer c = carved[l];
            float[] both = new float[2 * c.routerGate().length];  // (2E, d): routerGate rows, then routerUp rows
            System.arraycopy(c.routerGate(), 0, both, 0, c.routerGate().length);
            System.arraycopy(c.routerUp(), 0, both, c.routerGate().length, c.routerUp().length);
            candidates[l] = Tensor.ofFloats("cmoe.layers." + l + ".router_candidates", both, 2L * c.numExperts(), c.hidden());
        }
        long[] tokensSeen = new long[layers], gateSame = new long[layers], upSame = new long[layers];
        double[] gateSquares = new double[layers], upSquares = new double[layers];
        RoutingObserver observer = new RoutingObserver() {
            @Override public void onRouting(int layer, int tokens, float[] routerLogits, int[] expertIds, float[] expertWeights) {}
            @Override public void onFfnInput(Backend b, int layer, int tokens, int hidden, DeviceTensor x) {
                CmoeLayer c = carved[layer];
                int e = c.numExperts();
                float[] dots = new float[tokens * 2 * e];  // (N_b, 2E)
                try (DeviceTensor out = b.allocate(DType.F32, dots.length)) {
                    b.matmul(out, x, tokens, candidates[layer]);
                    b.read(out, 0, dots, dots.length);
                }
                double[] g = new double[e], u = new double[e], score = new double[e];
                for (int n = 0; n < tokens; n++) {
                    for (int r = 0; r < e; r++) {
                        g[r] = dots[n * 2 * e + r];
                        u[r] = dots[n * 2 * e + e + r];
                        score[r] = CmoeRouter.score(g[r], u[r]);
                        gateSquares[layer] += g[r] * g[r];
                        upSquares[layer] += u[r] * u[r];
                    }
                    double[] p = CmoeRouter.softmax(score);
                    if (CmoeRouter.sameTopK(p, c.selectionBias(), g, k)) gateSame[layer]++;
                    if (CmoeRouter.sameTopK(p, c.selectionBias(), u, k)) upSame[layer]++;
                }
                tokensSeen[layer] += tokens;
            }
        };
        CalibrationStatistics.observe(dense, windows, observer, windowsDone);
        RouterFit[] out = new RouterFit[layers];
        for (int l = 0; l < layers; l++) {
            double n = tokensSeen[l], values = n * carved[l].numExperts();
            out[l] = new RouterFit(tokensSeen[l], gateSame[l] / n, upSame[l] / n, Math.sqrt(gateSquares[l] / values), Math.sqrt(upSquares[l] / values));
        }
        return out;
    }
}
