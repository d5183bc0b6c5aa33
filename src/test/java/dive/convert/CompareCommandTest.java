package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.TestBackends;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code ./dive compare} end to end on the tiny_bpe fixture: one setting × two seeds, two methods, tiny budgets; the
 * summary's numbers are the runs' own reports; --summary-only on a half-finished comparison; a rerun redoes only the
 * unfinished seed.
 */
class CompareCommandTest {
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path tmp;

    static final String PLAN = """
            settings: [{experts: 2, top_k: 1, ratio: 0.5}]
            seeds: [0, 1]
            convert:
              methods: [dive, flap]
              datasets: [bible-nt, man2, python-core]
              calibration_windows: 3
              eval_windows: 2
              final_eval_windows: 2
              seqlen: 32
              stage0: {tokens: 128, batch_size: 4, seq_len: 32, lr: 1.0e-3}
              stage1: {tokens: 256, batch_size: 4, seq_len: 32, lr: 1.0e-3}
            """;

    int compare(Path plan, Path out, String... extra) {
        String[] base = {"compare", ConvertCommandTest.MODEL.toString(), "--plan", plan.toString(), "--out", out.toString(), "-q"};
        String[] args = java.util.Arrays.copyOf(base, base.length + extra.length);
        System.arraycopy(extra, 0, args, base.length, extra.length);
        return TestBackends.runCli(args);
    }

    @Test
    void comparesSeedsSummarisesPartiallyAndResumes() throws Exception {
        Path plan = tmp.resolve("plan.yaml"), out = tmp.resolve("out");
        Files.writeString(plan, PLAN);
        assertEquals(0, compare(plan, out));

        JsonNode summary = JSON.readTree(out.resolve("comparison.json").toFile());
        JsonNode methods = summary.path("settings").get(0).path("methods");
        assertEquals("dense", methods.get(0).path("method").asText());
        assertEquals("dive", methods.get(1).path("method").asText());
        assertEquals("flap", methods.get(2).path("method").asText());
        Path seed0 = Comparison.runFolder(out, new Comparison.Setting(2, 1, 0.5), 0), seed1 = Comparison.runFolder(out, new Comparison.Setting(2, 1, 0.5), 1);
        for (int i = 0; i < 2; i++) {
            JsonNode report = JSON.readTree((i == 0 ? seed0 : seed1).resolve("report.json").toFile());
            java.util.Map<String, Double> ppl = new java.util.LinkedHashMap<>();
            report.path("methods").path("flap").path("ppl_after_retraining").properties().forEach(e -> ppl.put(e.getKey(), e.getValue().asDouble()));
            assertEquals(3, ppl.size());
            assertEquals(Comparison.geometricMean(ppl), methods.get(2).path("per_seed").get(i).asDouble(), 1e-12, "flap, seed " + i);
        }
        assertTrue(Files.size(out.resolve("comparison.png")) > 1000);
        assertTrue(Files.readString(seed1.resolve("report.md")).contains("Made by `./dive compare " + ConvertCommandTest.MODEL + " --plan " + plan
                + " --data bundled --out " + out + " (run E=2, top-1, r=0.50, seed 1)`"));

        // half-finished: seed 1 lost its report; --summary-only summarises seed 0 and says so
        byte[] seed0Report = Files.readAllBytes(seed0.resolve("report.json"));
        Files.delete(seed1.resolve("report.json"));
        assertEquals(0, compare(plan, out, "--summary-only"));
        assertTrue(Files.readString(out.resolve("comparison.md")).contains("— incomplete: seeds [0] of [0, 1]"));

        // the rerun finishes seed 1 and leaves seed 0 as it was
        assertEquals(0, compare(plan, out));
        assertTrue(Files.isRegularFile(seed1.resolve("report.json")));
        assertArrayEquals(seed0Report, Files.readAllBytes(seed0.resolve("report.json")));
        assertFalse(Files.readString(out.resolve("comparison.md")).contains("incomplete"));
    }
}
