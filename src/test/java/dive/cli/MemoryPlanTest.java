package dive.cli;

import dive.convert.ConvertRecipe;
import dive.util.MemoryPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** The memory plan: its figures by hand, its one-line refusal before any work, and the line an out-of-memory error becomes. */
class MemoryPlanTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    @TempDir Path tmp;

    @Test
    void convertPlanCountsTheExpertsInTheCheckpointsDtype() throws Exception {
        // tiny_bpe: hidden 64, FFN 48, 2 layers, F32 weights; 4 experts at r 0.5 keep 24 channels each:
        // 2 layers × 4 experts × 3 matrices × 64 × 24 × 4 bytes = 147,456 bytes
        MemoryPlans.Model m = MemoryPlans.Model.of(MODEL);
        assertEquals(4, m.elementBytes());
        assertEquals(2L * 3 * 64 * 48 * 4, m.ffnBytes());
        MemoryPlan plan = MemoryPlans.convert(MODEL, ConvertRecipe.defaults(), 4, 1, 0.5);
        long experts = plan.items().stream().filter(i -> i.what().equals("experts")).mapToLong(MemoryPlan.Item::bytes).sum();
        assertEquals(2L * 4 * 3 * 64 * 24 * 4, experts);
        assertEquals(plan.items().stream().mapToLong(MemoryPlan.Item::bytes).sum(), plan.peakBytes());
        assertTrue(plan.line().startsWith("memory plan (convert): "), plan.line());
    }

    @Test
    void aPlanThatCannotFitIsRefusedInOneLineBeforeAnyWork() throws Exception {
        Path out = tmp.resolve("out");
        String before = System.getProperty("dive.memory.available");
        System.setProperty("dive.memory.available", "1000000");  // a machine with 1 MB available
        try {
            CliTest.Run r = CliTest.run("convert", MODEL.toString(), "--experts", "2", "--top-k", "1", "--ratio", "0.5", "--out", out.toString(), "-q");
            assertEquals(1, r.code());
            String[] lines = r.err().strip().split("\n");
            assertEquals(1, lines.length, r.err());
            assertTrue(lines[0].startsWith("dive convert: convert needs ≈ "), lines[0]);
            assertTrue(lines[0].contains("this machine has 1 MB available: lower the stages' batch_size or seq_len"), lines[0]);
            assertFalse(Files.exists(out), "nothing was written");
        } finally {
            if (before == null) System.clearProperty("dive.memory.available"); else System.setProperty("dive.memory.available", before);
        }
    }

    @Test
    void aPlanWhoseHeapPartExceedsTheHeapLimitIsRefused() {
        MemoryPlan plan = new MemoryPlan("test").add("activations", Runtime.getRuntime().maxMemory() + 1, true)
                .available(Long.MAX_VALUE / 4);
        var e = assertThrows(dive.util.MemoryPlanException.class, plan::check);
        assertTrue(e.getMessage().contains("of Java heap, the JVM may use"), e.getMessage());
    }

    @Test
    void outOfMemoryBecomesOneLineNamingTheStageAndThePlan() {
        new MemoryPlan("test").add("weights", 2_000_000_000L, false);
        MemoryPlan.enterStage("experts");
        String line = Main.describe(new OutOfMemoryError("Java heap space"));
        assertTrue(line.startsWith("out of memory in stage 'experts' (Java heap space)"), line);
        assertFalse(line.contains("\n"));
    }
}
