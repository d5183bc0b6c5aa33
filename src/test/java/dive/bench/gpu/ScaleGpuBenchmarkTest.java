package dive.bench.gpu;

import dive.backend.Backend;
import dive.backend.VectorBackend;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The 1.1B-shape GPU measurement's plumbing on the CPU: the engine-written checkpoint loads and has the shape's
 * parameter count, the benchmark's code path runs end to end on a small checkpoint (its transfer counts are the steps'
 * edges), the peak table reads the device names nvidia-smi gives, and the report pairs and judges the lines.
 */
class ScaleGpuBenchmarkTest {

    @Test
    void theOneBShapeHasTinyLlamasParameterCount() {
        LlamaConfig c = LlamaConfig.parse(ScaleCheckpoint.configJson(22, 2048, 5632, 32, 4, 32000), "test");
        long embedding = 32000L * 2048, norms = (2L * 22 + 1) * 2048;
        assertEquals(1_100_048_384L, ScaleGpuBenchmark.linearParams(c) + embedding + norms);
        assertEquals(1_034_420_224L, ScaleGpuBenchmark.linearParams(c));
        // LoRA r 16 on the seven projections: r·(in + out) each, 22 layers
        long lora = 22L * 16 * (2 * (2048 + 2048) + 2 * (2048 + 256) + 3 * (2048 + 5632));
        var shape = new ScaleGpuBenchmark.Shape(ScaleGpuBenchmark.linearParams(c), lora, 22, 2048);
        assertEquals(4.0 * 1_034_420_224L + 6.0 * lora + 6.0 * 22 * 512 * 2048, shape.loraStepFlopsPerToken(512), 1);
        assertEquals(6.0 * (1_034_420_224L + lora), shape.sixNFlopsPerToken(), 1);
    }

    @Test
    void engineCheckpointLoadsAndRunsEndToEnd(@TempDir Path dir) throws Exception {
        Path model = dir.resolve("model");
        long params = ScaleCheckpoint.write(model, 2, 64, 96, 4, 2, 128, 0);
        Backend backend = new VectorBackend(2);
        try (LlamaModel m = LlamaModel.load(model, backend)) {
            assertEquals(params, m.namedWeights().values().stream().mapToLong(t -> t.numel()).sum());
            assertEquals("bfloat16", m.config().dtype());
            float[] logits = m.forwardLast(new int[] {1, 2, 3}, m.newCache(4));
            for (float x : logits) assertTrue(Float.isFinite(x));
        }
        // the same bytes again from the same seed
        Path again = dir.resolve("again");
        ScaleCheckpoint.write(again, 2, 64, 96, 4, 2, 128, 0);
        assertArrayEquals(Files.readAllBytes(model.resolve("model.safetensors")), Files.readAllBytes(again.resolve("model.safetensors")));

        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        int rc = ScaleGpuBenchmark.run(new String[] {model.toString(), "--device", "cpu", "--threads", "2", "--gpu-name", "NVIDIA H100 80GB HBM3",
                "--prefill-batch", "2", "--prompt", "8", "--decode", "4", "--train-batch", "2", "--train-seq", "8", "--rank", "2"},
                new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertEquals(0, rc, out);
        Map<String, Double> results = new TreeMap<>();
        for (String line : out.split("\\R"))
            if (line.startsWith("RESULT ")) {
                String kv = line.substring(7, line.indexOf(' ', 7));
                results.put(kv.substring(0, kv.indexOf('=')), Double.parseDouble(kv.substring(kv.indexOf('=') + 1)));
            }
        for (String key : List.of("prefill_tok_s", "decode_tok_s", "decode_hbm_fraction", "lora_step_tok_s", "lora_step_mfu", "lora_step_mfu_6n"))
            assertTrue(results.get(key) > 0, key + " in\n" + out);
        assertEquals(Map.of("transfers_decode_to_device", 2.0, "transfers_decode_to_host", 1.0, "inlayer_transfers_decode", 0.0,
                        "transfers_prefill_to_device", 2.0, "transfers_prefill_to_host", 2.0, "inlayer_transfers_prefill", 0.0,
                        "transfers_train_to_device", 3.0, "transfers_train_to_host", 2.0, "inlayer_transfers_train", 0.0),
                new TreeMap<>(results).entrySet().stream().filter(e -> e.getKey().contains("transfers"))
                        .collect(java.util.stream.Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue)), out);
        assertTrue(out.contains("INFO peak=H100 SXM hbm_tb_s=3.350 bf16_tflops=989"), out);
        assertTrue(out.contains("median of 3"), out);
    }

    @Test
    void peakTableReadsNvidiaSmiNames() {
        assertEquals("H100 SXM", ScaleGpuBenchmark.peak("NVIDIA H100 80GB HBM3").label());
        assertEquals(3.35, ScaleGpuBenchmark.peak("NVIDIA H100 80GB HBM3").hbmTBs());
        assertEquals("H100 PCIe", ScaleGpuBenchmark.peak("NVIDIA H100 PCIe").label());
        assertEquals(756, ScaleGpuBenchmark.peak("NVIDIA H100 PCIe").bf16TFlops());
        assertEquals("H100 NVL", ScaleGpuBenchmark.peak("NVIDIA H100 NVL").label());
        assertEquals("H200 SXM", ScaleGpuBenchmark.peak("NVIDIA H200").label());
        assertEquals(4.8, ScaleGpuBenchmark.peak("NVIDIA H200").hbmTBs());
        assertEquals("H200 NVL", ScaleGpuBenchmark.peak("NVIDIA H200 NVL").label());
        assertEquals("A100 SXM 80GB", ScaleGpuBenchmark.peak("NVIDIA A100-SXM4-80GB").label());
        assertEquals("A100 80GB PCIe", ScaleGpuBenchmark.peak("NVIDIA A100 80GB PCIe").label());
        assertEquals("A100 40GB", ScaleGpuBenchmark.peak("NVIDIA A100-PCIE-40GB").label());
        assertNull(ScaleGpuBenchmark.peak("NVIDIA GH200 480GB"));
        assertNull(ScaleGpuBenchmark.peak("NVIDIA GeForce RTX 4090"));
        assertNull(ScaleGpuBenchmark.peak(null));
    }

    @Test
    void reportPairsTheSidesAndJudgesTheTargets(@TempDir Path dir) throws Exception {
        Path engine = dir.resolve("engine.log"), peer = dir.resolve("peer.log");
        Files.writeString(engine, """
                INFO gpu=NVIDIA H100 80GB HBM3
                RESULT prefill_tok_s=20000 tok/s # 8 x 128
                RESULT decode_tok_s=500 tok/s # batch 1
                RESULT decode_hbm_fraction=0.3088 of peak # ...
                RESULT transfers_decode_to_device=2 transfers # 8 B
                RESULT transfers_decode_to_host=1 transfers # 128000 B
                RESULT inlayer_transfers_decode=0 transfers # beyond the edges
                RESULT lora_step_tok_s=10000 tok/s # ...
                RESULT lora_step_mfu=0.40 of peak # ...
                RESULT lora_step_mfu_6n=0.60 of peak # ...
                RESULT transfers_train_to_device=5 transfers # ...
                RESULT transfers_train_to_host=2 transfers # ...
                RESULT inlayer_transfers_train=2 transfers # ...
                """);
        Files.writeString(peer, """
                RESULT prefill_tok_s=40000 tok/s # 8 x 128
                RESULT decode_tok_s=250 tok/s # batch 1
                RESULT decode_hbm_fraction=0.1544 of peak # ...
                INFO LoRA training step not measured: the time budget of 60 s is spent
                """);
        Path jmh = dir.resolve("jmh.json");
        Files.writeString(jmh, """
                [{"benchmark": "dive.bench.gpu.GroupedMatmulGpuBenchmark.groupedMatmulBf16", "params": {"rows": "8192", "expertWidth": "1024", "routing": "balanced"},
                  "primaryMetric": {"score": 1}, "secondaryMetrics": {"teraFlop": {"score": 450}}},
                 {"benchmark": "dive.bench.gpu.GroupedMatmulGpuBenchmark.groupedMatmulBf16", "params": {"rows": "8192", "expertWidth": "1024", "routing": "skewed"},
                  "primaryMetric": {"score": 1}, "secondaryMetrics": {"teraFlop": {"score": 350}}},
                 {"benchmark": "dive.bench.gpu.CublasGemmGpuBenchmark.cublasGemmBf16", "params": {"rows": "8192", "expertWidth": "1024"},
                  "primaryMetric": {"score": 1}, "secondaryMetrics": {"teraFlop": {"score": 500}}}]
                """);
        String md = ScaleReport.table(ScaleReport.Side.parse(engine), ScaleReport.Side.parse(peer),
                GpuBenchReport.targets(GpuBenchReport.parse(jmh)), true, List.of("checkpoint: written by transformers"));
        assertTrue(md.contains("| prefill tok/s (8 × 128 tokens, last logits) | 20000.0 | 40000.0 | 0.50 | — |"), md);
        assertTrue(md.contains("| 30.9 % | 15.4 % | 2.00 | ≥ 60 % — **not met** |"), md);
        assertTrue(md.contains("| 40.0 % | not measured | — | ≥ 35 % — met |"), md);
        assertTrue(md.contains("| 0.70–0.90× | — | — | ≥ 0.8× — **not met** |"), md);
        assertTrue(md.contains("worst: rows 8192, N 1024, skewed"), md);
        assertTrue(md.contains("| 2 / 1 (0 inside layers) | — | — | 0 inside a layer — met |"), md);
        assertTrue(md.contains("| 5 / 2 (2 inside layers) | — | — | 0 inside a layer — **not met** |"), md);
        assertTrue(md.contains("host↔device transfers per batched prefill (in / out) | not measured |"), md);
        assertTrue(md.contains("- transformers: LoRA training step not measured: the time budget of 60 s is spent"), md);
        assertTrue(md.contains("- checkpoint: written by transformers"), md);
    }

    @Test
    void reportOfSkippedSidesSaysNotMeasuredWithTheReasons(@TempDir Path dir) throws Exception {
        Path engine = dir.resolve("engine.log"), peer = dir.resolve("peer.log");
        Files.writeString(engine, "SKIPPED ScaleGpuBenchmark: device 'cuda': no usable CUDA GPU: no driver\n");
        Files.writeString(peer, "SKIPPED hf_gpu_speed: no torch in python3 (ModuleNotFoundError)\n");
        String md = ScaleReport.table(ScaleReport.Side.parse(engine), ScaleReport.Side.parse(peer), List.of(), false, List.of());
        assertFalse(md.contains("— met"), md);
        assertTrue(md.contains("≥ 60 % — not measured"), md);
        assertTrue(md.contains("≥ 0.8× — not measured (no JMH results)"), md);
        assertTrue(md.contains("- engine: SKIPPED ScaleGpuBenchmark: device 'cuda': no usable CUDA GPU: no driver"), md);
        assertTrue(md.contains("- transformers: SKIPPED hf_gpu_speed: no torch in python3"), md);
        assertTrue(ScaleReport.Side.parse(dir.resolve("absent.log")).notes().get(0).startsWith("no output"));
    }
}
