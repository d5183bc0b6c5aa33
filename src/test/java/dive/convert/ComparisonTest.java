package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** The comparison's arithmetic against hand computations on made-up reports, and its plan file's errors. */
class ComparisonTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void spreadIsMeanSampleStdMinMax() {
        Comparison.Spread s = Comparison.Spread.of(new double[]{1, 2, 3, 4});
        assertEquals(2.5, s.mean(), 1e-15);
        assertEquals(Math.sqrt(5.0 / 3.0), s.std(), 1e-15);  // Σ(x − 2.5)² = 5, n − 1 = 3
        assertEquals(1, s.min());
        assertEquals(4, s.max());
        assertEquals(0, Comparison.Spread.of(new double[]{7}).std());
    }

    @Test
    void geometricMeanOverDatasets() {
        assertEquals(4, Comparison.geometricMean(Map.of("a", 2.0, "b", 8.0)), 1e-12);
        assertEquals(6, Comparison.geometricMean(Map.of("a", 4.0, "b", 9.0)), 1e-12);
    }

    /** a report.json as DiveConversion writes it, with the fields the comparison reads */
    private static JsonNode report(double[] dense, double[] dive, double[] flap) throws Exception {
        String ppl = "{\"a\": %s, \"b\": %s}";
        return JSON.readTree("""
                {"dense": {"ppl": %s, "params_total": 100, "params_active": 100},
                 "methods": {
                   "dive": {"ppl_after_retraining": %s, "params_total": 300, "params_active": 60, "training_tokens": 1000},
                   "flap": {"ppl_after_retraining": %s, "params_total": 60, "params_active": 60, "training_tokens": 1000}}}
                """.formatted(ppl.formatted(dense[0], dense[1]), ppl.formatted(dive[0], dive[1]), ppl.formatted(flap[0], flap[1])));
    }

    @Test
    void aRunIsFinishedOnlyWithAnEntryForEveryMethodOfThePlan(@TempDir Path folder) throws Exception {
        assertFalse(Comparison.finished(folder, List.of("dive")), "no report.json yet");
        Files.writeString(folder.resolve("report.json"), report(new double[]{4, 9}, new double[]{2, 8}, new double[]{6, 6}).toString());
        assertTrue(Comparison.finished(folder, List.of("dive", "flap")));
        assertTrue(Comparison.finished(folder, List.of("dive")));
        // a method added to the plan after this run (or its folder removed to build it again): the run resumes
        assertFalse(Comparison.finished(folder, List.of("dive", "flap", "cmoe")));
    }

    @Test
    void gapsArePairedBySeed() throws Exception {
        // geometric means: dense 6, 6, 6; dive 4, 4, 4; flap 6, 5, 3 → gaps +50 %, +25 %, −25 %
        List<JsonNode> reports = List.of(
                report(new double[]{4, 9}, new double[]{2, 8}, new double[]{6, 6}),
                report(new double[]{4, 9}, new double[]{4, 4}, new double[]{5, 5}),
                report(new double[]{9, 4}, new double[]{1, 16}, new double[]{3, 3}));
        List<Comparison.Row> rows = Comparison.summariseSetting(new Comparison.Setting(2, 1, 0.5), List.of(0L, 1L, 2L), reports);
        assertEquals(List.of("dense", "dive", "flap"), rows.stream().map(Comparison.Row::method).toList());
        Comparison.Row flap = rows.get(2);
        assertArrayEquals(new double[]{6, 5, 3}, flap.perSeed(), 1e-12);
        assertEquals((0.5 + 0.25 - 0.25) / 3, flap.gapToDive().mean(), 1e-12);
        assertEquals(-0.25, flap.gapToDive().min(), 1e-12);
        assertEquals("within the seed spread", flap.verdict());
        assertEquals(14.0 / 3, flap.ppl().mean(), 1e-12);
        assertEquals(Math.sqrt(((6 - 14.0 / 3) * (6 - 14.0 / 3) + (5 - 14.0 / 3) * (5 - 14.0 / 3) + (3 - 14.0 / 3) * (3 - 14.0 / 3)) / 2), flap.ppl().std(), 1e-12);
        assertEquals(60L, flap.paramsActive());
        assertNull(rows.get(1).verdict(), "DIVE is not compared with itself");
        assertNull(rows.get(1).gapToDive());

        // every seed worse than DIVE → the verdict says so
        List<JsonNode> worse = List.of(reports.get(0), reports.get(1));
        List<Comparison.Row> w = Comparison.summariseSetting(new Comparison.Setting(2, 1, 0.5), List.of(0L, 1L), worse);
        // gaps +50 % and +25 %: mean 0.375, std 0.177, 2·std/√2 = 0.25 < 0.375 → exceeds the spread
        assertEquals("DIVE better (exceeds the seed spread)", w.get(2).verdict());
        assertEquals("reference (dense model)", w.get(0).verdict());
    }

    /**
     * Training-free rows: each method's held-out perplexity before any retraining (ppl_before_retraining) is summarised
     * beside the retrained one, in comparison.json and comparison.md, and in a run's own summary table.
     */
    @Test
    void trainingFreePerplexityIsSummarisedBesideTheRetrainedOne() throws Exception {
        // before retraining: dive geo-means 8 and 10, flap 6 and 12 (hand: √(4·16) = 8, √(10·10) = 10, √(4·9) = 6, √(9·16) = 12)
        String r0 = """
                {"model": "m", "datasets": ["a", "b"], "dense": {"ppl": {"a": 4, "b": 9}, "params_total": 100, "params_active": 100},
                 "methods": {
                   "dive": {"ppl_before_retraining": {"a": 4, "b": 16}, "ppl_after_retraining": {"a": 2, "b": 8}, "params_total": 300,
                            "params_active": 60, "training_tokens": 1000, "export": "model"},
                   "flap": {"ppl_before_retraining": {"a": 4, "b": 9}, "ppl_after_retraining": {"a": 6, "b": 6}, "params_total": 60,
                            "params_active": 60, "training_tokens": 1000, "export": "flap/model"}}}""";
        String r1 = r0.replace("{\"a\": 4, \"b\": 16}", "{\"a\": 10, \"b\": 10}").replace("{\"a\": 4, \"b\": 9}, \"ppl_after", "{\"a\": 9, \"b\": 16}, \"ppl_after");
        List<JsonNode> reports = List.of(JSON.readTree(r0), JSON.readTree(r1));
        Comparison.Setting setting = new Comparison.Setting(2, 1, 0.5);
        List<Comparison.Row> rows = Comparison.summariseSetting(setting, List.of(0L, 1L), reports);
        assertEquals(9, rows.get(1).beforeRetraining().mean(), 1e-12);
        assertEquals(9, rows.get(2).beforeRetraining().mean(), 1e-12);
        assertEquals(Math.sqrt(18), rows.get(2).beforeRetraining().std(), 1e-12);  // (6 − 9)² + (12 − 9)² = 18, n − 1 = 1
        assertNull(rows.get(0).beforeRetraining(), "the dense model is not retrained");
        Comparison.Summary summary = new Comparison.Summary(List.of(0L, 1L), "m",
                List.of(new Comparison.SettingSummary(setting, rows, List.of(0L, 1L), false)), List.of());
        @SuppressWarnings("unchecked") Map<String, Object> flapJson = ((List<Map<String, Object>>) ((List<Map<String, Object>>) summary.toJson()
                .get("settings")).getFirst().get("methods")).get(2);
        assertEquals(List.of("method", "per_seed", "ppl", "ppl_before_retraining", "gap_to_dive", "verdict", "params_active", "params_total",
                "training_tokens"), List.copyOf(flapJson.keySet()), "comparison.json's row keys");
        String md = Comparison.markdown(summary);
        assertTrue(md.contains("| before retraining |"), md);
        assertTrue(md.contains("| 9.00 ± 4.24 |"), md);

        List<List<String>> table = ConversionReport.summaryRows(JSON.readTree(r0), Path.of("out"));
        assertEquals(List.of("method", "ppl (geo. mean)", "before retraining", "active params", "total params", "training tokens", "model"), table.get(0));
        assertEquals("8.00", table.get(2).get(2));
        assertEquals("6.00", table.get(3).get(2));
        assertEquals("—", table.get(1).get(2));
    }

    @Test
    void summaryFilesAndMissingRuns(@TempDir Path out) throws Exception {
        Path plan = out.resolve("plan.yaml");
        Files.writeString(plan, "settings: [{experts: 2, top_k: 1, ratio: 0.5}]\nseeds: [3, 4]\nconvert: {methods: [dive, flap]}\n");
        Comparison.Plan p = Comparison.Plan.load(plan);
        assertEquals(List.of(3L, 4L), p.seeds());
        assertEquals(List.of("dive", "flap"), p.convert().methods());
        assertEquals(7, p.convert().withSeed(7).seed());
        Path missing = Comparison.runFolder(out, p.settings().get(0), 4).resolve("report.json");
        assertTrue(assertThrows(java.io.IOException.class, () -> Comparison.summarise(p, out, true)).getMessage().contains("no run of the plan has finished"));
        Files.createDirectories(Comparison.runFolder(out, p.settings().get(0), 3));
        Files.writeString(Comparison.runFolder(out, p.settings().get(0), 3).resolve("report.json"),
                report(new double[]{4, 9}, new double[]{2, 8}, new double[]{6, 6}).toString());
        var e = assertThrows(java.io.IOException.class, () -> Comparison.summarise(p, out, false));
        assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());
        // a look while it runs: the finished seed only, marked incomplete
        Comparison.summarise(p, out, true);
        String partial = Files.readString(out.resolve("comparison.md"));
        assertTrue(partial.contains("## E=2, top-1, r=0.50 — incomplete: seeds [3] of [3, 4]"), partial);
        assertTrue(partial.contains("| flap | 6.00 ± 0.00 [6.00, 6.00] | 6.00 | +50.0% ± 0.0% | one seed: no spread |"), partial);
        Files.createDirectories(missing.getParent());
        Files.writeString(missing, report(new double[]{4, 9}, new double[]{4, 4}, new double[]{5, 5}).toString());
        Comparison.summarise(p, out, false);
        String md = Files.readString(out.resolve("comparison.md"));
        assertTrue(md.contains("| flap | 5.50 ± 0.71 [5.00, 6.00] | 6.00, 5.00 | +37.5% ± 17.7% | DIVE better (exceeds the seed spread) |"), md);
        assertTrue(Files.size(out.resolve("comparison.png")) > 1000);
        assertEquals(2, JSON.readTree(out.resolve("comparison.json").toFile()).path("settings").get(0).path("methods").get(2).path("per_seed").size());
    }

    @Test
    void verdictNeedsSignAndTwoStandardErrors() {
        // +10 %, +1 %: same sign, mean 0.055, std 0.0636, 2·std/√2 = 0.09 > 0.055 → not beyond the spread
        assertEquals("DIVE better on every seed (within 2 standard errors)", Comparison.verdict(Comparison.Spread.of(new double[]{0.10, 0.01})));
        assertEquals("DIVE worse (exceeds the seed spread)", Comparison.verdict(Comparison.Spread.of(new double[]{-0.05, -0.06, -0.055})));
        assertEquals("within the seed spread", Comparison.verdict(Comparison.Spread.of(new double[]{-0.05, 0.06, 0.01})));
        assertEquals("one seed: no spread", Comparison.verdict(Comparison.Spread.of(new double[]{0.2})));
    }

    @Test
    void planErrorsNameTheKey(@TempDir Path dir) throws Exception {
        Path plan = dir.resolve("plan.yaml");
        Files.writeString(plan, "settings: [{experts: 2, top_k: 1, ratio: 0.5}]\nseeds: [0]\nconvert: {seed: 3}\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Comparison.Plan.load(plan)).getMessage().contains("seed is set per run"));
        Files.writeString(plan, "settings: [{experts: 2, top_k: 1, ratio: 0.5}]\nseeds: [0, 0]\nconvert: {}\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Comparison.Plan.load(plan)).getMessage().contains("seed is named twice"));
        Files.writeString(plan, "settings: [{experts: 2, top_k: 1}]\nseeds: [0]\nconvert: {}\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Comparison.Plan.load(plan)).getMessage().contains("'ratio'"));
        Files.writeString(plan, "settings: [{experts: 2, top_k: 1, ratio: 0.5}]\nseeds: [0]\nconvert: {}\nrepeats: 2\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Comparison.Plan.load(plan)).getMessage().contains("unknown key 'repeats'"));
        Files.writeString(plan, "settings: [{experts: 2, top_k: 1, ratio: 0.5}]\nseeds: [0]\nconvert: {stage1: {lr: -1}}\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Comparison.Plan.load(plan)).getMessage().contains("lr"));
    }
}
