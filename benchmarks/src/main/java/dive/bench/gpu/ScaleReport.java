package dive.bench.gpu;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The 1.1B-shape table of the GPU run's results file: what {@link ScaleGpuBenchmark} (the engine) and
 * {@code benchmarks/peers/hf_gpu_speed.py} (transformers) printed, side by side, with the targets —
 * decode at batch 1 ≥ 60 % of the GPU's HBM bandwidth; LoRA step ≥ 35 % MFU (the counted FLOPs of
 * {@link ScaleGpuBenchmark}; the 6·N convention is shown beside it); grouped expert matmul ≥ 0.8 × cuBLAS dense BF16
 * (the worst of the JMH grouped ÷ cuBLAS pairs, {@link GpuBenchReport#targets}); zero host↔device transfers inside a
 * layer (the transfer counts beyond each step's edges). A side that was skipped or did not run shows "not measured",
 * and its SKIPPED or ERROR lines are listed under the table.
 *
 * <p>{@code java dive.bench.gpu.ScaleReport --engine engine.log --peer peer.log [--jmh jmh-results.json]
 * [--note TEXT]... [--out table.md]}
 */
public final class ScaleReport {
    private ScaleReport() {}

    /** one side's output: RESULT values by key, and the lines that explain a missing value */
    record Side(Map<String, Double> values, List<String> notes) {
        Double get(String key) { return values.get(key); }

        static Side parse(Path file) throws IOException {
            Map<String, Double> values = new LinkedHashMap<>();
            List<String> notes = new ArrayList<>();
            if (file == null || !Files.isRegularFile(file)) {
                notes.add("no output" + (file == null ? "" : " (" + file.getFileName() + " missing)"));
                return new Side(values, notes);
            }
            for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                line = line.strip();
                if (line.startsWith("RESULT ")) {
                    int eq = line.indexOf('='), sp = line.indexOf(' ', eq + 1);
                    if (eq < 0) continue;
                    String key = line.substring(7, eq);
                    String value = sp < 0 ? line.substring(eq + 1) : line.substring(eq + 1, sp);
                    try {
                        values.put(key, Double.parseDouble(value));
                    } catch (NumberFormatException e) {
                        notes.add("unreadable result line: " + line);
                    }
                } else if (line.startsWith("SKIPPED ") || line.startsWith("ERROR ") || line.contains("not measured")
                        || line.contains("timed runs (the time budget") || line.startsWith("ScaleGpuBenchmark: ")
                        || line.startsWith("hf_gpu_speed: ")) {
                    notes.add(line.replaceFirst("^INFO ", ""));
                }
            }
            return new Side(values, notes);
        }
    }

    static String table(Side engine, Side peer, List<GpuBenchReport.Target> jmhTargets, boolean jmhPresent, List<String> extraNotes) {
        StringBuilder md = new StringBuilder();
        md.append("| metric | engine | transformers | ratio | target |\n|---|---:|---:|---:|---|\n");
        rate(md, "prefill tok/s (8 × 128 tokens, last logits)", engine.get("prefill_tok_s"), peer.get("prefill_tok_s"));
        rate(md, "decode tok/s (batch 1, 64 steps after 128 tokens)", engine.get("decode_tok_s"), peer.get("decode_tok_s"));
        fraction(md, "decode: fraction of HBM bandwidth (weight bytes per token × tok/s ÷ peak)",
                engine.get("decode_hbm_fraction"), peer.get("decode_hbm_fraction"), 0.60, "≥ 60 %");
        rate(md, "LoRA step tok/s (r 16 on q,k,v,o,gate,up,down; 4 × 512)", engine.get("lora_step_tok_s"), peer.get("lora_step_tok_s"));
        fraction(md, "LoRA step MFU, counted FLOPs (4·N_lin + 6·N_lora + 6·L·T·d_q per token)",
                engine.get("lora_step_mfu"), peer.get("lora_step_mfu"), 0.35, "≥ 35 %");
        fraction(md, "LoRA step MFU, 6·N convention (6·(N_lin + N_lora) per token)",
                engine.get("lora_step_mfu_6n"), peer.get("lora_step_mfu_6n"), Double.NaN, "— (shown for comparison)");
        // grouped expert matmul ÷ cuBLAS dense, from the JMH group
        List<GpuBenchReport.Target> grouped = jmhTargets.stream().filter(t -> t.name().startsWith("(a)")).toList();
        if (grouped.isEmpty()) {
            md.append("| grouped expert matmul ÷ cuBLAS dense BF16 (JMH) | not measured | — | — | ≥ 0.8× — not measured"
                    + (jmhPresent ? " (no grouped/cuBLAS pair in the JMH results)" : " (no JMH results)") + " |\n");
        } else {
            double worst = Double.POSITIVE_INFINITY, best = 0;
            String worstCase = "";
            for (GpuBenchReport.Target t : grouped) {
                if (t.ratio() < worst) { worst = t.ratio(); worstCase = t.key(); }
                best = Math.max(best, t.ratio());
            }
            md.append(String.format(Locale.ROOT, "| grouped expert matmul ÷ cuBLAS dense BF16 (JMH, %d cases; worst: %s) | %.2f–%.2f× | — | — | ≥ 0.8× — %s |%n",
                    grouped.size(), worstCase, worst, best, worst >= 0.8 ? "met" : "**not met**"));
        }
        transfers(md, "host↔device transfers per decode step (in / out)", engine, "decode");
        transfers(md, "host↔device transfers per batched prefill (in / out)", engine, "prefill");
        transfers(md, "host↔device transfers per LoRA training step (in / out)", engine, "train");
        md.append('\n');
        List<String> notes = new ArrayList<>(extraNotes);
        for (String n : engine.notes()) notes.add("engine: " + n);
        for (String n : peer.notes()) notes.add("transformers: " + n);
        for (String n : notes) md.append("- ").append(n).append('\n');
        if (!notes.isEmpty()) md.append('\n');
        md.append("""
                Ratio: engine ÷ transformers (above 1: the engine is faster). Fractions use the peak of the GPU's name \
                (H100 SXM 3.35 TB/s and 989 TFLOP/s, H100 PCIe 2.0 and 756, H200 4.8 and 989; dense BF16). The counted \
                FLOPs of a LoRA step leave out the frozen base's weight gradient, which is not computed: 4·N_lin for the \
                base (forward and backward to the input), 6·N_lora for the adapters, 6·L·T·d_q for causal attention; the \
                6·N row is the full-finetune convention papers quote (1.5 × the counted figure at this shape). The \
                transfer rows count the backend's host↔device copies of one step; "inside a layer" is what exceeds the \
                step's edges (ids and positions in; logits, loss and gradient norm out).
                """);
        return md.toString();
    }

    private static void rate(StringBuilder md, String metric, Double engine, Double peer) {
        md.append("| ").append(metric).append(" | ").append(num(engine, "%.1f")).append(" | ").append(num(peer, "%.1f"))
                .append(" | ").append(engine != null && peer != null && peer > 0 ? String.format(Locale.ROOT, "%.2f", engine / peer) : "—")
                .append(" | — |\n");
    }

    private static void fraction(StringBuilder md, String metric, Double engine, Double peer, double bound, String target) {
        String verdict = Double.isNaN(bound) ? "" : engine == null ? " — not measured" : engine >= bound ? " — met" : " — **not met**";
        md.append("| ").append(metric).append(" | ").append(percent(engine)).append(" | ").append(percent(peer))
                .append(" | ").append(engine != null && peer != null && peer > 0 ? String.format(Locale.ROOT, "%.2f", engine / peer) : "—")
                .append(" | ").append(target).append(verdict).append(" |\n");
    }

    private static void transfers(StringBuilder md, String metric, Side engine, String step) {
        Double in = engine.get("transfers_" + step + "_to_device"), out = engine.get("transfers_" + step + "_to_host");
        Double inside = engine.get("inlayer_transfers_" + step);
        String cell = in == null || out == null ? "not measured"
                : String.format(Locale.ROOT, "%d / %d (%d inside layers)", in.longValue(), out.longValue(), inside == null ? 0 : inside.longValue());
        String verdict = inside == null ? "not measured" : inside == 0 ? "met" : "**not met**";
        md.append("| ").append(metric).append(" | ").append(cell).append(" | — | — | 0 inside a layer — ").append(verdict).append(" |\n");
    }

    private static String num(Double v, String format) { return v == null ? "not measured" : String.format(Locale.ROOT, format, v); }

    private static String percent(Double v) { return v == null ? "not measured" : String.format(Locale.ROOT, "%.1f %%", 100 * v); }

    public static void main(String[] args) throws IOException {
        Path engine = null, peer = null, jmh = null, out = null;
        List<String> notes = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (i + 1 >= args.length) throw new IllegalArgumentException("ScaleReport: " + args[i] + " needs a value");
            switch (args[i]) {
                case "--engine" -> engine = Path.of(args[++i]);
                case "--peer" -> peer = Path.of(args[++i]);
                case "--jmh" -> jmh = Path.of(args[++i]);
                case "--out" -> out = Path.of(args[++i]);
                case "--note" -> notes.add(args[++i]);
                default -> throw new IllegalArgumentException("ScaleReport: unknown argument " + args[i]
                        + " (expected --engine FILE --peer FILE [--jmh FILE] [--note TEXT]... [--out FILE])");
            }
        }
        boolean jmhPresent = jmh != null && Files.isRegularFile(jmh) && Files.size(jmh) > 0;
        List<GpuBenchReport.Target> targets = jmhPresent ? GpuBenchReport.targets(GpuBenchReport.parse(jmh)) : List.of();
        String md = table(Side.parse(engine), Side.parse(peer), targets, jmhPresent, notes);
        if (out == null) System.out.print(md);
        else Files.writeString(out, md, StandardCharsets.UTF_8);
    }
}
