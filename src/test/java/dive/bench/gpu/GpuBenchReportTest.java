package dive.bench.gpu;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The GPU report's target ratios, on a hand-written JMH JSON whose ratios are worked out by hand below. */
class GpuBenchReportTest {

    private static String result(String benchmark, String params, double ops, String secondaryName, double secondary) {
        return """
                {"benchmark": "dive.bench.gpu.%s", "mode": "thrpt", "params": {%s},
                 "primaryMetric": {"score": %s, "scoreError": 1.0, "scoreUnit": "ops/s"},
                 "secondaryMetrics": {"%s": {"score": %s, "scoreUnit": "ops/s"}}}""".formatted(benchmark, params, ops, secondaryName, secondary);
    }

    @Test
    void targetsPairTheRightResultsAndComputeTheRatios(@TempDir Path dir) throws IOException {
        String json = "[" + String.join(",",
                // (a) rows 8192, N 1024: grouped balanced 300, skewed 240 TFLOP/s; cuBLAS 500 → 0.60 (met), 0.48 (not met)
                result("GroupedMatmulGpuBenchmark.groupedMatmulBf16", "\"rows\": \"8192\", \"expertWidth\": \"1024\", \"routing\": \"balanced\"", 10, "teraFlop", 300),
                result("GroupedMatmulGpuBenchmark.groupedMatmulBf16", "\"rows\": \"8192\", \"expertWidth\": \"1024\", \"routing\": \"skewed\"", 8, "teraFlop", 240),
                // a different shape's cuBLAS result that must not be paired with the 1024 ones
                result("CublasGemmGpuBenchmark.cublasGemmBf16", "\"rows\": \"8192\", \"expertWidth\": \"2048\"", 9, "teraFlop", 900),
                result("CublasGemmGpuBenchmark.cublasGemmBf16", "\"rows\": \"8192\", \"expertWidth\": \"1024\"", 17, "teraFlop", 500),
                // (b) 1500 GB/s vs copy 4000 GB/s → 0.375, not met
                result("RoutingGpuBenchmark.routeSortGather", "\"tokens\": \"8192\"", 100, "gigabytes", 1500),
                result("RoutingGpuBenchmark.deviceCopy", "\"tokens\": \"8192\"", 300, "gigabytes", 4000),
                // (c) MoE 100 ops/s, dense 125 ops/s → MoE time / dense time = 125 / 100 = 1.25, met
                result("MoeLayerGpuBenchmark.moeLayer", "\"tokens\": \"8192\"", 100, "tokens", 819200),
                result("MoeLayerGpuBenchmark.denseFfn", "\"tokens\": \"8192\"", 125, "tokens", 1024000),
                // (d)
                result("CalibrationGpuBenchmark.calibrationBatch", "\"batchTokens\": \"8192\"", 50, "tokens", 409600)) + "]";
        Path file = dir.resolve("jmh.json");
        Files.writeString(file, json);
        // the same results split over two files, as run.sh's benchmark groups write them, merged by main
        int cut = json.indexOf(",{\"benchmark\": \"dive.bench.gpu.RoutingGpuBenchmark");
        assertTrue(cut > 0);
        Path first = dir.resolve("a.json"), second = dir.resolve("b.json");
        Files.writeString(first, json.substring(0, cut) + "]");
        Files.writeString(second, "[" + json.substring(cut + 1));

        List<GpuBenchReport.Target> targets = GpuBenchReport.targets(GpuBenchReport.parse(file));
        assertEquals(4, targets.size(), targets.toString());
        GpuBenchReport.Target balanced = targets.get(0), skewed = targets.get(1), routing = targets.get(2), moe = targets.get(3);
        assertTrue(balanced.key().contains("balanced"));
        assertEquals(300.0 / 500.0, balanced.ratio(), 1e-12);
        assertTrue(balanced.met());
        assertEquals(240.0 / 500.0, skewed.ratio(), 1e-12);
        assertFalse(skewed.met());
        assertEquals(0.375, routing.ratio(), 1e-12);
        assertFalse(routing.met());
        assertEquals(1.25, moe.ratio(), 1e-12);
        assertTrue(moe.met());

        Path md = dir.resolve("report.md"), merged = dir.resolve("all.json");
        GpuBenchReport.main(new String[]{"--out", md.toString(), "--merged", merged.toString(), first.toString(), second.toString()});
        assertEquals(9, GpuBenchReport.parse(merged).size());
        assertEquals(targets, GpuBenchReport.targets(GpuBenchReport.parse(merged)));
        String text = Files.readString(md);
        assertTrue(text.contains("| 0.600 | ≥ 0.60 | yes |"), text);
        assertTrue(text.contains("| 0.375 | ≥ 0.50 | **no** |"), text);
        assertTrue(text.contains("409600 tokens/s"), text);
    }

    @Test
    void skippedBenchmarksGiveNoRatio(@TempDir Path dir) throws IOException {
        // without a GPU every secondary result is 0: no ratio may be claimed
        String json = "[" + result("GroupedMatmulGpuBenchmark.groupedMatmulBf16", "\"rows\": \"8192\", \"expertWidth\": \"1024\", \"routing\": \"balanced\"", 1e9, "teraFlop", 0)
                + "," + result("CublasGemmGpuBenchmark.cublasGemmBf16", "\"rows\": \"8192\", \"expertWidth\": \"1024\"", 1e9, "teraFlop", 0) + "]";
        Path file = dir.resolve("jmh.json");
        Files.writeString(file, json);
        List<GpuBenchReport.Result> results = GpuBenchReport.parse(file);
        assertTrue(GpuBenchReport.targets(results).isEmpty());
        String text = GpuBenchReport.markdown(results);
        assertTrue(text.contains("No target could be computed"), text);
        assertTrue(text.contains("0 (skipped)"), text);
    }

    @Test
    void badJsonNamesTheFile(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("broken.json");
        Files.writeString(file, "{\"benchmark\": 1}");
        IOException e = assertThrows(IOException.class, () -> GpuBenchReport.parse(file));
        assertTrue(e.getMessage().contains("broken.json") && e.getMessage().contains("array"), e.getMessage());
    }
}
