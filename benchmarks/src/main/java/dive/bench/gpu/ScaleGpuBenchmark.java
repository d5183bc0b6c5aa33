package dive.bench.gpu;

import dive.backend.Backend;
import dive.backend.Backends;
import dive.backend.Transfers;
import dive.cuda.CudaUnavailableException;
import dive.model.KVCache;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import dive.train.AdamW;
import dive.train.Gradients;
import dive.train.Parameter;
import dive.train.TrainableLlama;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * The engine on a GPU at TinyLlama-1.1B's shape, end to end through the product API ({@link Backends#create},
 * {@link LlamaModel}, {@link TrainableLlama}, {@link AdamW}, {@link Backend#transfers()}):
 * <ol>
 *   <li><b>prefill</b>: {@code forwardBatch} of B × T tokens (default 8 × 128) into fresh KV caches, last logits only:
 *       tokens/s;</li>
 *   <li><b>decode</b> at batch 1: after a T-token prompt, S greedy steps (default 64; {@code forwardLast} of one token,
 *       argmax on the host): tokens/s, and the fraction of the GPU's HBM bandwidth it reaches,
 *       {@code weight bytes read per token × tokens/s ÷ peak bandwidth}, where the bytes read per token are those of
 *       every weight of the checkpoint in its own dtype except the embedding table (one row of it is read); the KV
 *       cache's reads are left out (printed apart: under 1 % of the weights at these lengths);</li>
 *   <li><b>LoRA training step</b>: rank 16 (α 32, no dropout) on q, k, v, o, gate, up and down of every layer, the base
 *       frozen, B × T tokens (default 4 × 512): zero the gradients, {@code lossAndGradients}, clip to global norm 1,
 *       AdamW; tokens/s and MFU = counted FLOPs ÷ time ÷ the GPU's dense BF16 peak, the FLOPs per token being
 *       <pre>
 *   4·N_lin                the frozen base: forward 2·N_lin, backward to the input 2·N_lin (no weight gradient)
 * + 6·N_lora               the adapters: forward, backward to the input, weight gradient (2·N_lora each)
 * + 6·L·T·d_q              attention scores and the weighted sum, causal (half the T × T matrix): forward 2·T·d_q,
 *                          backward 4·T·d_q, per layer
 *       </pre>
 *       with N_lin the weights of every Linear and the LM head (the embedding is a gather: no FLOPs), N_lora the
 *       adapters' parameters, L layers, T the sequence length, d_q = heads × head_dim. Also printed: the same time
 *       against the full-finetune convention 6·(N_lin + N_lora)·tokens ({@code lora_step_mfu_6n}, 1.5 × the counted
 *       figure at this shape), as papers quote MFU;</li>
 *   <li><b>host↔device transfers</b> of one decode step, one batched prefill and one training step, from
 *       {@link Backend#transfers()}, against the edges each must have (decode: ids + positions in, the logits row out;
 *       prefill: ids + positions in, one logits row per sequence out; training step: inputs, targets, positions in,
 *       the loss and the gradient norm out — as {@code TransferCountTest} derives them). Any more lie inside the
 *       layers ({@code inlayer_transfers_*}, target 0).</li>
 * </ol>
 * Every measurement has W warm-up runs (default 1; the first forward also uploads the weights) and R timed runs
 * (default 3) and reports their median; a run's end is a value back on the host (the logits, or a read-back of the last
 * adapter after the optimizer), so the GPU's work is inside the time. A time budget ({@code --budget-s}, default 100)
 * cuts the timed runs to fit (then says so) rather than let a caller's timeout lose the results: each result line is
 * printed as soon as it is measured.
 *
 * <p>Output, one line per metric: {@code RESULT key=value unit # what}; facts about the run: {@code INFO key=value};
 * without a GPU one line {@code SKIPPED ScaleGpuBenchmark: <reason>} and exit status 0. Peaks by device name
 * ({@link #peak}): H100 SXM 3.35 TB/s and 989 TFLOP/s, H100 PCIe 2.0 and 756, H100 NVL 3.9 and 835, H200 4.8 and 989,
 * H200 NVL 4.8 and 835, A100 (80 GB SXM 2.039, 80 GB PCIe 1.935, 40 GB 1.555) and 312 — dense BF16, no sparsity.
 *
 * <pre>java … dive.bench.gpu.ScaleGpuBenchmark MODEL_DIR [--gpu-name NAME] [--device cuda] [--prefill-batch 8]
 *      [--prompt 128] [--decode 64] [--train-batch 4] [--train-seq 512] [--rank 16] [--warmup 1] [--runs 3]
 *      [--budget-s 100] [--threads N] [--no-train]</pre>
 * {@code --device cpu} runs the same code on the CPU backend (tests use it on a small checkpoint).
 */
public final class ScaleGpuBenchmark {
    private ScaleGpuBenchmark() {}

    /** the LoRA targets of the training step: every projection of every layer */
    static final Set<String> LORA_TARGETS = Set.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    record Options(Path model, String device, String gpuName, int prefillBatch, int prompt, int decode, int trainBatch,
                   int trainSeq, int rank, int warmup, int runs, double budgetS, int threads, boolean train) {}

    /** a GPU's peak HBM bandwidth (TB/s) and dense BF16 tensor-core throughput (TFLOP/s), from its datasheet */
    record Peak(String label, double hbmTBs, double bf16TFlops) {}

    private record PeakRow(Pattern name, Peak peak) {}

    /** most specific first: the first pattern found in the device name wins */
    private static final List<PeakRow> PEAKS = List.of(
            row("\\bH100\\b.*\\bNVL\\b", "H100 NVL", 3.9, 835),
            row("\\bH100\\b.*\\bPCIe\\b", "H100 PCIe", 2.0, 756),
            row("\\bH100\\b", "H100 SXM", 3.35, 989),
            row("\\bH200\\b.*\\bNVL\\b", "H200 NVL", 4.8, 835),
            row("\\bH200\\b", "H200 SXM", 4.8, 989),
            row("\\bA100\\b.*\\b80GB\\b.*\\bPCIe\\b|\\bA100\\b.*\\bPCIe\\b.*\\b80GB\\b", "A100 80GB PCIe", 1.935, 312),
            row("\\bA100\\b.*\\b80GB\\b", "A100 SXM 80GB", 2.039, 312),
            row("\\bA100\\b", "A100 40GB", 1.555, 312));

    private static PeakRow row(String regex, String label, double tbs, double tflops) {
        return new PeakRow(Pattern.compile(regex, Pattern.CASE_INSENSITIVE), new Peak(label, tbs, tflops));
    }

    /** the peaks of the GPU called {@code deviceName} (as nvidia-smi names it), or null when it is not in the table */
    static Peak peak(String deviceName) {
        if (deviceName == null) return null;
        for (PeakRow r : PEAKS) if (r.name.matcher(deviceName).find()) return r.peak;
        return null;
    }

    /** the shape's counts the fractions are computed from */
    record Shape(long linearParams, long loraParams, int layers, int queryDim) {
        /** FLOPs of one LoRA training step per token at sequence length {@code seq} (the formula of the class comment) */
        double loraStepFlopsPerToken(int seq) {
            return 4.0 * linearParams + 6.0 * loraParams + 6.0 * layers * (double) seq * queryDim;
        }

        /** the full-finetune convention: 6 FLOPs per parameter per token */
        double sixNFlopsPerToken() { return 6.0 * (linearParams + loraParams); }
    }

    /** weights of every Linear and the LM head: the parameters a token's matmuls multiply by */
    static long linearParams(LlamaConfig c) {
        long d = c.hiddenSize(), f = c.intermediateSize();
        long perLayer = 2 * (long) c.queryDim() * d + 2 * (long) c.kvDim() * d + 3 * f * d;
        return c.numHiddenLayers() * perLayer + (long) c.vocabSize() * d;
    }

    /** bytes of weights one decode token reads: every weight in its dtype but the embedding table, of which one row */
    static long weightBytesPerToken(LlamaModel model) {
        long bytes = 0;
        for (var e : model.namedWeights().entrySet()) {
            Tensor t = e.getValue();
            if (e.getKey().equals("model.embed_tokens.weight")) bytes += (long) model.config().hiddenSize() * t.dtype().bytes;
            else bytes += t.numel() * t.dtype().bytes;
        }
        return bytes;
    }

    static double median(double[] xs) {
        double[] s = xs.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }

    public static void main(String[] args) throws Exception {
        int rc = run(args, System.out);
        System.out.flush();
        System.exit(rc);  // the CPU backend's worker threads must not keep the JVM alive
    }

    /** the whole benchmark, lines to {@code out}; returns the exit status */
    static int run(String[] args, PrintStream out) throws Exception {
        Options o = parse(args);
        long t0 = System.nanoTime();
        Backend backend;
        try {
            backend = o.threads > 0 ? Backends.create(o.device, "auto", o.threads) : Backends.create(o.device, "auto");
        } catch (CudaUnavailableException e) {
            out.println("SKIPPED ScaleGpuBenchmark: " + oneLine(e.getMessage()));
            return 0;
        }
        if (!Files.isRegularFile(o.model.resolve("config.json"))) {
            out.println("ScaleGpuBenchmark: no checkpoint at " + o.model + " (config.json missing)");
            return 1;
        }
        String gpuName = o.gpuName != null ? o.gpuName : (backend.isCpu() ? "cpu" : nvidiaSmiName());
        Peak peak = peak(gpuName);
        out.println("INFO backend=" + backend.name());
        out.println("INFO gpu=" + gpuName);
        if (peak != null) {
            out.printf(Locale.ROOT, "INFO peak=%s hbm_tb_s=%.3f bf16_tflops=%.0f%n", peak.label, peak.hbmTBs, peak.bf16TFlops);
        } else {
            out.println("INFO peak=unknown (" + gpuName + " is not in the peak table: no bandwidth or MFU fractions)");
        }
        Clock clock = new Clock(t0, o.budgetS, out);

        // ---------------------------------------------------------------- inference: prefill and decode
        int rc = 0;
        LlamaConfig config = LlamaConfig.load(o.model);
        try (LlamaModel model = LlamaModel.load(o.model, backend)) {
            long weightBytes = weightBytesPerToken(model);
            out.printf(Locale.ROOT, "INFO model=%s layers=%d hidden=%d ffn=%d heads=%d kv_heads=%d vocab=%d dtype=%s%n", o.model,
                    config.numHiddenLayers(), config.hiddenSize(), config.intermediateSize(), config.numAttentionHeads(),
                    config.numKeyValueHeads(), config.vocabSize(), config.dtype());
            out.printf(Locale.ROOT, "INFO weight_bytes_per_token=%d linear_params=%d%n", weightBytes, linearParams(config));
            Random random = new Random(1);

            // prefill: B sequences of T tokens, one batched forward, last logits of each
            int[][] ids = new int[o.prefillBatch][o.prompt];
            for (int[] row : ids) for (int i = 0; i < row.length; i++) row[i] = 3 + random.nextInt(config.vocabSize() - 3);
            Transfers.Snapshot[] prefillTransfers = new Transfers.Snapshot[1];
            double[] prefill = clock.measure("prefill", o.warmup, o.runs, () -> {
                KVCache[] caches = new KVCache[o.prefillBatch];
                for (int b = 0; b < caches.length; b++) caches[b] = model.newCache(o.prompt);
                try {
                    var before = backend.transfers().snapshot();
                    long s = System.nanoTime();
                    model.forwardBatch(ids, caches, false);
                    double dt = (System.nanoTime() - s) / 1e9;
                    prefillTransfers[0] = backend.transfers().snapshot().since(before);
                    return dt;
                } finally {
                    for (KVCache c : caches) c.close();
                }
            });
            if (prefill != null) {
                double tokens = (double) o.prefillBatch * o.prompt;
                result(out, "prefill_tok_s", tokens / median(prefill), "tok/s",
                        o.prefillBatch + " x " + o.prompt + " tokens, one forwardBatch, last logits; median of " + prefill.length
                                + " (" + seconds(prefill) + ")");
                transfers(out, "prefill", prefillTransfers[0], 2, o.prefillBatch);
            }

            // decode at batch 1: a T-token prompt (not timed), then S greedy steps
            int[] prompt = ids[0];
            Transfers.Snapshot[] stepTransfers = new Transfers.Snapshot[1];
            double[] decode = clock.measure("decode", o.warmup, o.runs, () -> {
                try (KVCache cache = model.newCache(o.prompt + o.decode)) {
                    float[] logits = model.forwardLast(prompt, cache);
                    long s = System.nanoTime();
                    for (int step = 0; step < o.decode; step++) {
                        var before = backend.transfers().snapshot();
                        logits = model.forwardLast(new int[] {argmax(logits)}, cache);
                        stepTransfers[0] = backend.transfers().snapshot().since(before);
                    }
                    return (System.nanoTime() - s) / 1e9;
                }
            });
            if (decode != null) {
                double tokS = o.decode / median(decode);
                result(out, "decode_tok_s", tokS, "tok/s", "batch 1, " + o.decode + " greedy steps after a " + o.prompt
                        + "-token prompt; median of " + decode.length + " (" + seconds(decode) + ")");
                if (peak != null)
                    result(out, "decode_hbm_fraction", weightBytes * tokS / (peak.hbmTBs * 1e12), "of peak",
                            String.format(Locale.ROOT, "%.4g GB of weights per token x tok/s / %.2f TB/s (%s)", weightBytes / 1e9,
                                    peak.hbmTBs, peak.label));
                long kvBytes = 2L * config.numHiddenLayers() * (o.prompt + o.decode / 2) * config.kvDim() * 4;
                out.printf(Locale.ROOT, "INFO decode_kv_bytes_per_token=%d (F32 keys and values at the mean position, not counted above)%n", kvBytes);
                transfers(out, "decode", stepTransfers[0], 2, 1);
            }
        } catch (Exception | OutOfMemoryError e) {
            out.println("ERROR ScaleGpuBenchmark inference: " + oneLine(String.valueOf(e)));
            e.printStackTrace(out);
            rc = 1;
        }

        // ---------------------------------------------------------------- LoRA training step
        if (!o.train) {
            out.println("INFO training step not measured (--no-train)");
        } else if (clock.left() <= 0) {
            out.println("INFO LoRA training step not measured: the time budget of " + o.budgetS + " s is spent");
        } else {
            try (TrainableLlama model = TrainableLlama.fromCheckpoint(o.model, backend)) {
                model.addLora(new TrainableLlama.LoraConfig(o.rank, 2.0 * o.rank, 0.0, LORA_TARGETS, 5));
                List<Parameter> params = model.parameters();
                long loraParams = 0;
                Parameter lastTrainable = null;
                for (Parameter p : params)
                    if (p.trainable()) { loraParams += p.numel(); lastTrainable = p; }
                Shape shape = new Shape(linearParams(config), loraParams, config.numHiddenLayers(), config.queryDim());
                out.printf(Locale.ROOT, "INFO lora_rank=%d lora_params=%d flops_per_token=%.4e flops_per_token_6n=%.4e%n", o.rank,
                        loraParams, shape.loraStepFlopsPerToken(o.trainSeq), shape.sixNFlopsPerToken());
                AdamW adam = new AdamW(AdamW.Options.DEFAULT, backend);
                Random random = new Random(2);
                int[][] batch = new int[o.trainBatch][o.trainSeq + 1];  // T inputs, their T targets shifted by one
                for (int[] row : batch) for (int i = 0; i < row.length; i++) row[i] = 3 + random.nextInt(config.vocabSize() - 3);
                Transfers.Snapshot[] trainTransfers = new Transfers.Snapshot[1];
                Tensor fence = lastTrainable.value();
                double[] steps = clock.measure("LoRA training step", o.warmup, o.runs, () -> {
                    var before = backend.transfers().snapshot();
                    long s = System.nanoTime();
                    Gradients.zero(params);
                    model.lossAndGradients(batch, 1f);
                    Gradients.clipByGlobalNorm(params, 1.0, backend);
                    adam.step(params, 1e-4);
                    trainTransfers[0] = backend.transfers().snapshot().since(before);
                    backend.readBack(fence);  // the last adapter after AdamW on the host: the step's work is done
                    return (System.nanoTime() - s) / 1e9;
                });
                if (steps != null) {
                    double tokens = (double) o.trainBatch * o.trainSeq, t = median(steps);
                    result(out, "lora_step_tok_s", tokens / t, "tok/s", "LoRA r " + o.rank + " on q,k,v,o,gate,up,down, "
                            + o.trainBatch + " x " + o.trainSeq + " tokens, AdamW + clipping; median of " + steps.length + " (" + seconds(steps) + ")");
                    if (peak != null) {
                        result(out, "lora_step_mfu", shape.loraStepFlopsPerToken(o.trainSeq) * tokens / t / (peak.bf16TFlops * 1e12), "of peak",
                                "(4 N_lin + 6 N_lora + 6 L T d_q) x tokens / time / " + fmt(peak.bf16TFlops) + " TFLOP/s (" + peak.label + ")");
                        result(out, "lora_step_mfu_6n", shape.sixNFlopsPerToken() * tokens / t / (peak.bf16TFlops * 1e12), "of peak",
                                "6 (N_lin + N_lora) x tokens / time / " + fmt(peak.bf16TFlops) + " TFLOP/s (full-finetune convention)");
                    }
                    transfers(out, "train", trainTransfers[0], 3, 2);
                }
            } catch (Exception | OutOfMemoryError e) {
                out.println("ERROR ScaleGpuBenchmark LoRA training step: " + oneLine(String.valueOf(e)));
                e.printStackTrace(out);
                rc = 1;
            }
        }
        out.printf(Locale.ROOT, "INFO total_s=%.1f%n", (System.nanoTime() - t0) / 1e9);
        return rc;
    }

    /** prints the transfers of one step and how many of them are beyond the step's edges */
    static void transfers(PrintStream out, String what, Transfers.Snapshot s, int edgesIn, int edgesOut) {
        if (s == null) return;
        result(out, "transfers_" + what + "_to_device", s.toDevice(), "transfers", s.bytesToDevice() + " B; the edges are " + edgesIn);
        result(out, "transfers_" + what + "_to_host", s.toHost(), "transfers", s.bytesToHost() + " B; the edges are " + edgesOut);
        long inside = Math.max(0, s.toDevice() - edgesIn) + Math.max(0, s.toHost() - edgesOut);
        result(out, "inlayer_transfers_" + what, inside, "transfers", "beyond the step's edges (target 0)");
    }

    static void result(PrintStream out, String key, double value, String unit, String what) {
        String v = value == Math.rint(value) && Math.abs(value) < 1e15 ? String.valueOf((long) value) : String.format(Locale.ROOT, "%.4g", value);
        out.println("RESULT " + key + "=" + v + " " + unit + " # " + what);
        out.flush();
    }

    private static String fmt(double x) { return x == Math.rint(x) ? String.valueOf((long) x) : String.valueOf(x); }

    private static String seconds(double[] xs) {
        StringBuilder b = new StringBuilder();
        for (double x : xs) b.append(b.isEmpty() ? "" : ", ").append(String.format(Locale.ROOT, "%.4f", x));
        return b.append(" s").toString();
    }

    static int argmax(float[] xs) {
        int best = 0;
        for (int i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
        return best;
    }

    /** a timed run: returns its seconds */
    @FunctionalInterface
    interface Run { double seconds() throws Exception; }

    /** warm-up and timed runs within the time budget */
    static final class Clock {
        final long t0;
        final double budgetS;
        final PrintStream out;

        Clock(long t0, double budgetS, PrintStream out) { this.t0 = t0; this.budgetS = budgetS; this.out = out; }

        double left() { return budgetS - (System.nanoTime() - t0) / 1e9; }

        /**
         * {@code warmup} untimed runs, then up to {@code runs} timed ones, as many as the budget leaves room for
         * (at least one); null when not even the warm-up fits (then says so)
         */
        double[] measure(String what, int warmup, int runs, Run run) throws Exception {
            double last = 0;
            for (int w = 0; w < warmup; w++) {
                if (left() <= 0) {
                    out.println("INFO " + what + " not measured: the time budget of " + budgetS + " s is spent");
                    return null;
                }
                long s = System.nanoTime();
                run.seconds();
                last = (System.nanoTime() - s) / 1e9;
            }
            List<Double> times = new ArrayList<>();
            for (int r = 0; r < runs; r++) {
                if (r > 0 && left() < last * 1.5) {
                    out.printf(Locale.ROOT, "INFO %s: %d of %d timed runs (the time budget of %.0f s)%n", what, r, runs, budgetS);
                    break;
                }
                long s = System.nanoTime();
                times.add(run.seconds());
                last = (System.nanoTime() - s) / 1e9;
            }
            return times.stream().mapToDouble(Double::doubleValue).toArray();
        }
    }

    static String oneLine(String s) { return s == null ? "(no reason given)" : s.replaceAll("\\s*\\R\\s*", " ").trim(); }

    /** the first GPU's name from nvidia-smi, or "unknown" */
    static String nvidiaSmiName() {
        try {
            Process p = new ProcessBuilder("nvidia-smi", "--query-gpu=name", "--format=csv,noheader").redirectErrorStream(true).start();
            String line;
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                line = r.readLine();
            }
            if (!p.waitFor(10, TimeUnit.SECONDS)) p.destroyForcibly();
            return line == null || line.isBlank() || p.exitValue() != 0 ? "unknown" : line.trim();
        } catch (Exception e) {
            return "unknown";
        }
    }

    static Options parse(String[] args) {
        Path model = null;
        String device = "cuda", gpuName = null;
        int prefillBatch = 8, prompt = 128, decode = 64, trainBatch = 4, trainSeq = 512, rank = 16, warmup = 1, runs = 3, threads = 0;
        double budget = 100;
        boolean train = true;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--no-train")) { train = false; continue; }
            if (!a.startsWith("--")) {
                if (model != null) usage("two checkpoints given: " + model + " and " + a);
                model = Path.of(a);
                continue;
            }
            if (i + 1 >= args.length) usage("flag " + a + " needs a value");
            String v = args[++i];
            switch (a) {
                case "--device" -> device = v;
                case "--gpu-name" -> gpuName = v;
                case "--prefill-batch" -> prefillBatch = positive(a, v);
                case "--prompt" -> prompt = positive(a, v);
                case "--decode" -> decode = positive(a, v);
                case "--train-batch" -> trainBatch = positive(a, v);
                case "--train-seq" -> trainSeq = positive(a, v);
                case "--rank" -> rank = positive(a, v);
                case "--warmup" -> warmup = Integer.parseInt(v);
                case "--runs" -> runs = positive(a, v);
                case "--threads" -> threads = positive(a, v);
                case "--budget-s" -> budget = Double.parseDouble(v);
                default -> usage("unknown flag " + a);
            }
        }
        if (model == null) usage("no checkpoint folder given");
        return new Options(model, device, gpuName, prefillBatch, prompt, decode, trainBatch, trainSeq, rank, warmup, runs, budget, threads, train);
    }

    private static int positive(String flag, String v) {
        int x = Integer.parseInt(v);
        if (x < 1) usage(flag + " " + v + ": expected ≥ 1");
        return x;
    }

    private static void usage(String why) {
        throw new IllegalArgumentException("ScaleGpuBenchmark: " + why + "; usage: ScaleGpuBenchmark MODEL_DIR [--gpu-name NAME]"
                + " [--device cuda|cpu] [--prefill-batch 8] [--prompt 128] [--decode 64] [--train-batch 4] [--train-seq 512]"
                + " [--rank 16] [--warmup 1] [--runs 3] [--budget-s 100] [--threads N] [--no-train]");
    }
}
