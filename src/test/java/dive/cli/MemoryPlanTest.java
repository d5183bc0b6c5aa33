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

    /**
     * The plan's MoE training activations hold what a training step really allocates on the backend (counted by the CPU
     * backend's live-byte peak over one step): stage 0 routes every row through every expert, so its step keeps E
     * experts' activations per row, not k (the plan once counted k and the JVM ran out of heap at stage 0).
     */
    @Test
    void moeTrainingActivationsCoverAMeasuredStepAtBothRoutings() throws Exception {
        Path k2 = Path.of("src/test/resources/mixtral/k2_i40");  // hidden 48, FFN 40, 2 layers, 4 experts, top-2, vocab 128
        dive.backend.VectorBackend backend = new dive.backend.VectorBackend(1);
        dive.train.TrainableLlama model = dive.train.TrainableLlama.fromCheckpoint(k2, backend);
        dive.model.LlamaConfig c = model.config();
        int batch = 4, seq = 32, rows = batch * seq, e = c.moe().numLocalExperts(), k = c.moe().numExpertsPerTok();
        int[][] ids = new int[batch][seq + 1];
        java.util.Random r = new java.util.Random(1);
        for (int[] row : ids) for (int i = 0; i < row.length; i++) row[i] = r.nextInt(c.vocabSize());

        model.prepareStage0();
        long soft = measuredStep(model, backend, ids);
        long planSoft = MemoryPlans.moeTrainingBytes(c, rows, e, c.intermediateSize(), e);
        assertTrue(soft <= planSoft, "stage 0 step allocated " + soft + " bytes, plan " + planSoft);
        assertTrue(soft >= planSoft / 2, "plan " + planSoft + " far above the measured " + soft);
        // the k-slot figure the plan used before is below what soft routing allocates
        assertTrue(soft > MemoryPlans.moeTrainingBytes(c, rows, k, c.intermediateSize(), e), "soft routing keeps every expert's rows");

        model.prepareStage1(4, 8, 0.1, 0);
        long topK = measuredStep(model, backend, ids);
        long planTopK = MemoryPlans.moeTrainingBytes(c, rows, k, c.intermediateSize(), e)
                + MemoryPlans.loraBytes(c, (long) rows * k, c.intermediateSize(), 4, 0.1);
        assertTrue(topK <= planTopK, "stage 1 step allocated " + topK + " bytes, plan " + planTopK);
        assertTrue(topK >= planTopK / 2, "plan " + planTopK + " far above the measured " + topK);
    }

    /** bytes allocated on the backend at the peak of one training step, above what was live before it */
    private static long measuredStep(dive.train.TrainableLlama model, dive.backend.CpuBackend backend, int[][] ids) {
        for (dive.train.Parameter p : model.parameters()) p.zeroGrad();
        model.lossAndGradients(ids, 1f);  // gradients and moments allocated once, outside the measured step
        for (dive.train.Parameter p : model.parameters()) p.zeroGrad();
        long before = backend.liveBytes();
        backend.resetPeakBytes();
        model.lossAndGradients(ids, 1f);
        return backend.peakBytes() - before;
    }

    /** serve's plan: the KV budget as asked, one step's activations by hand, and a budget the machine lacks refused before binding */
    @Test
    void servePlanCountsTheKvBudgetAndOneStepAndRefusesWhatCannotFit() throws Exception {
        // tiny_bpe: hidden 64, 2 layers, FFN 48, vocab as its config says; a step of 8 decode rows + 16 prompt rows
        MemoryPlan plan = MemoryPlans.serve(MODEL, 8, 16, 5L << 20);
        dive.model.LlamaConfig c = dive.model.LlamaConfig.load(MODEL);
        long perRow = 3L * 64 + 2L * c.queryDim() + 2L * c.kvDim() + 3L * 48;
        assertEquals(5L << 20, bytes(plan, "KV caches"));
        assertEquals(4 * (24 * perRow + 8L * c.vocabSize()), bytes(plan, "activations"));
        assertTrue(plan.line().startsWith("memory plan (serve): "), plan.line());
        CliTest.Run r = CliTest.run("serve", MODEL.toString(), "--port", "0", "--kv-budget-mb", "100000000", "-q");
        assertEquals(1, r.code(), r.out() + r.err());
        assertTrue(r.err().strip().startsWith("dive serve: serve needs ≈ ") && r.err().contains("lower --kv-budget-mb"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
    }

    private static long bytes(MemoryPlan plan, String what) {
        return plan.items().stream().filter(i -> i.what().equals(what)).mapToLong(MemoryPlan.Item::bytes).sum();
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
