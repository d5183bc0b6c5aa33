package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.io.SafetensorsWriter;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** The training loop on the toy bigram model: resume is bit-identical, divergence stops cleanly, bad checkpoints are refused. */
class TrainerTest {
    static final int VOCAB = 11, DIM = 4, SEQ = 6, BATCH = 3;
    @TempDir Path tmp;

    /** a repetitive stream (learnable bigrams) with a little seeded noise */
    static TokenShard shard(String name, int length, long seed) {
        SplitMix64 rng = new SplitMix64(seed);
        int[] tokens = new int[length];
        for (int i = 0; i < length; i++) tokens[i] = rng.nextDouble() < 0.2 ? (int) rng.nextLong(VOCAB) : (i * 3) % VOCAB;
        return new TokenShard(name, tokens, 1);
    }

    static Trainer.Settings settings(long maxSteps, int gradAccum, int checkpointEvery) {
        return new Trainer.Settings(gradAccum, maxSteps, 2, checkpointEvery, 0, 1.0,
                new LrSchedule(LrSchedule.Kind.COSINE, 0.05, 2, 0.005, maxSteps), new AdamW.Options(0.9, 0.99, 1e-8, 0.01, false),
                "recipe-hash", false);
    }

    Trainer trainer(TrainableModel model, Path runDir, Trainer.Settings s, int batch) throws IOException {
        List<TokenShard> data = List.of(shard("alpha", 400, 1), shard("beta", 300, 2));
        DataLoader loader = new DataLoader(data, new double[] {3, 1}, batch, SEQ, 1234);
        List<EvalSet> eval = List.of(EvalSet.of(shard("alpha-eval", 60, 3), "alpha", SEQ, BATCH, 8),
                EvalSet.of(shard("beta-eval", 60, 4), "beta", SEQ, BATCH, 8));
        return new Trainer(model, loader, eval, runDir, s);
    }

    static Trainer.Export exportOf(TrainableModel model) {
        return dir -> {
            List<Tensor> ts = new ArrayList<>();
            for (Parameter p : model.parameters()) ts.add(p.value());
            SafetensorsWriter.write(dir.resolve("model.safetensors"), ts, Map.of());
        };
    }

    static byte[] bytes(TrainableModel model) {
        var out = new java.io.ByteArrayOutputStream();
        for (Parameter p : model.parameters()) out.writeBytes(p.value().data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        return out.toByteArray();
    }

    /** wraps a model; fails (throws, or returns NaN, or poisons a gradient) on the n-th lossAndGradients call */
    static final class Faulty implements TrainableModel {
        final TrainableModel inner; final int failAtCall; final String mode; int calls;
        Faulty(TrainableModel inner, int failAtCall, String mode) { this.inner = inner; this.failAtCall = failAtCall; this.mode = mode; }
        @Override public List<Parameter> parameters() { return inner.parameters(); }
        @Override public double loss(int[][] batch) { return inner.loss(batch); }
        @Override public dive.backend.Backend backend() { return inner.backend(); }
        @Override public double lossAndGradients(int[][] batch, float gradScale) {
            double loss = inner.lossAndGradients(batch, gradScale);
            if (++calls != failAtCall) return loss;
            switch (mode) {
                case "crash" -> throw new IllegalStateException("simulated crash");
                case "nan-loss" -> { return Double.NaN; }
                default -> { GradAccess.setAt(inner.parameters().get(2), inner.backend(), 1, Float.POSITIVE_INFINITY); return loss; }
            }
        }
    }

    @Test
    void resumeContinuesBitIdentically() throws Exception {
        // straight: 8 steps, checkpoints every 4
        ToyBigramModel straight = new ToyBigramModel(VOCAB, DIM, 7);
        Trainer.Result r = trainer(straight, tmp.resolve("a"), settings(8, 2, 4), BATCH).run(exportOf(straight));
        assertEquals(8, r.steps());
        assertEquals(8L * 2 * BATCH * SEQ, r.tokensSeen());

        // interrupted during step 6 (call 11 of 2 micro-batches per step), then resumed from step 4 in a fresh process-like state
        Path b = tmp.resolve("b");
        ToyBigramModel first = new ToyBigramModel(VOCAB, DIM, 7);
        var crash = assertThrows(IllegalStateException.class, () -> trainer(new Faulty(first, 11, "crash"), b, settings(8, 2, 4), BATCH).run(exportOf(first)));
        assertEquals("simulated crash", crash.getMessage());
        ToyBigramModel resumed = new ToyBigramModel(VOCAB, DIM, 7);
        Trainer t = trainer(resumed, b, settings(8, 2, 4), BATCH);
        assertEquals(4, t.resume());
        t.run(exportOf(resumed));

        assertArrayEquals(bytes(straight), bytes(resumed));
        assertArrayEquals(Files.readAllBytes(tmp.resolve("a/final/model.safetensors")), Files.readAllBytes(b.resolve("final/model.safetensors")));
        // the logs agree line by line (apart from the measured speed)
        List<String> logA = stripSpeed(tmp.resolve("a").resolve(Trainer.LOG_FILE)), logB = stripSpeed(b.resolve(Trainer.LOG_FILE));
        assertEquals(9, logA.size()); // step 0 (eval only) + 8 steps
        assertEquals(logA, logB);
        // the loss went down on the learnable stream, and the eval losses were logged per dataset
        JsonNode firstLine = new ObjectMapper().readTree(logA.getFirst()), lastLine = new ObjectMapper().readTree(logA.getLast());
        assertTrue(lastLine.at("/eval/alpha/loss").asDouble() < firstLine.at("/eval/alpha/loss").asDouble(), logA.toString());
        assertEquals(Math.exp(lastLine.at("/eval/beta/loss").asDouble()), lastLine.at("/eval/beta/ppl").asDouble(), 1e-9);
        var png = ImageIO.read(tmp.resolve("a").resolve(Trainer.PLOT_FILE).toFile());
        assertEquals(800, png.getWidth());
    }

    static List<String> stripSpeed(Path log) throws IOException {
        return Files.readAllLines(log).stream().map(s -> s.replaceAll("\"tokens_per_second\":[0-9.E-]+,?", "")).toList();
    }

    @Test
    void gradientAccumulationEqualsOneLargerBatch() throws Exception {
        // 2 micro-batches of B rows draw the same rows as one batch of 2B (the loader draws row by row),
        // and two gradients scaled by 1/2 of means over B·T equal the gradient of the mean over 2B·T
        ToyBigramModel accumulated = new ToyBigramModel(VOCAB, DIM, 9), large = new ToyBigramModel(VOCAB, DIM, 9);
        trainer(accumulated, tmp.resolve("acc"), settings(3, 2, 0), BATCH).run(exportOf(accumulated));
        trainer(large, tmp.resolve("large"), settings(3, 1, 0), 2 * BATCH).run(exportOf(large));
        for (int k = 0; k < 3; k++) {
            assertArrayEquals(large.parameters().get(k).value().toFloatArray(), accumulated.parameters().get(k).value().toFloatArray(), 2e-5f);
        }
        assertFalse(java.util.Arrays.equals(new ToyBigramModel(VOCAB, DIM, 9).embedding.value().toFloatArray(),
                large.embedding.value().toFloatArray()), "training changed nothing");
    }

    @Test
    void nanLossStopsNamingTheStepAndKeepsTheCheckpoint() throws Exception {
        Path run = tmp.resolve("nan");
        ToyBigramModel model = new ToyBigramModel(VOCAB, DIM, 7);
        var e = assertThrows(TrainingDivergedException.class,
                () -> trainer(new Faulty(model, 5, "nan-loss"), run, settings(8, 1, 3), BATCH).run(exportOf(model)));
        assertTrue(e.getMessage().startsWith("step 5: loss is NaN"), e.getMessage());
        assertTrue(e.getMessage().contains("step-00000003"), e.getMessage());
        assertEquals(run.resolve("checkpoints/step-00000003"), TrainState.latest(run));
        assertFalse(Files.exists(run.resolve("final")));

        ToyBigramModel other = new ToyBigramModel(VOCAB, DIM, 7);
        var g = assertThrows(TrainingDivergedException.class,
                () -> trainer(new Faulty(other, 2, "inf-grad"), tmp.resolve("inf"), settings(8, 1, 3), BATCH).run(exportOf(other)));
        assertTrue(g.getMessage().startsWith("step 2: the gradient of parameter 'out.bias' is NaN or infinite"), g.getMessage());
        assertTrue(g.getMessage().contains("no checkpoint was written yet"), g.getMessage());
    }

    @Test
    void resumeRefusesForeignOrCorruptCheckpoints() throws Exception {
        Path run = tmp.resolve("r");
        ToyBigramModel model = new ToyBigramModel(VOCAB, DIM, 7);
        trainer(model, run, settings(2, 1, 2), BATCH).run(exportOf(model));

        // another model shape: names the tensor and the file; the new model is left untouched
        ToyBigramModel wider = new ToyBigramModel(VOCAB, DIM + 1, 7);
        byte[] before = bytes(wider);
        var e = assertThrows(IOException.class, () -> trainer(wider, run, settings(2, 1, 2), BATCH).resume());
        assertTrue(e.getMessage().contains("parameters.safetensors: tensor 'embed.weight' is F32[11, 4], the model's parameter is F32[11, 5]"), e.getMessage());
        assertArrayEquals(before, bytes(wider));

        // another recipe
        var h = assertThrows(IOException.class, () -> new Trainer(new ToyBigramModel(VOCAB, DIM, 7), new DataLoader(List.of(shard("a", 100, 1)), new double[] {1}, 1, SEQ, 1),
                List.of(), run, new Trainer.Settings(1, 2, 0, 0, 0, 0, new LrSchedule(LrSchedule.Kind.CONSTANT, 0.1, 0, 0, 2), AdamW.Options.DEFAULT, "other", false)).resume());
        assertTrue(h.getMessage().contains("written for another recipe"), h.getMessage());

        // a truncated parameters file
        Path params = run.resolve("checkpoints/step-00000002/parameters.safetensors");
        byte[] full = Files.readAllBytes(params);
        Files.write(params, java.util.Arrays.copyOf(full, full.length - 8));
        var c = assertThrows(IOException.class, () -> trainer(new ToyBigramModel(VOCAB, DIM, 7), run, settings(2, 1, 2), BATCH).resume());
        assertTrue(c.getMessage().contains("parameters.safetensors"), c.getMessage());

        // nothing to resume
        var n = assertThrows(IOException.class, () -> trainer(new ToyBigramModel(VOCAB, DIM, 7), tmp.resolve("empty"), settings(2, 1, 2), BATCH).resume());
        assertTrue(n.getMessage().contains("no checkpoint to resume from"), n.getMessage());
    }

    @Test
    void keepsOnlyTheNewestCheckpoints() throws Exception {
        Path run = tmp.resolve("keep");
        ToyBigramModel model = new ToyBigramModel(VOCAB, DIM, 7);
        Trainer.Settings s = settings(5, 1, 1);
        s = new Trainer.Settings(1, 5, 0, 1, 2, 1.0, s.schedule(), s.optimizer(), "k", false);
        trainer(model, run, s, BATCH).run(exportOf(model));
        try (var files = Files.list(run.resolve("checkpoints"))) {
            assertEquals(List.of("latest", "step-00000004", "step-00000005"), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
        assertEquals(5, TrainState.readInfo(TrainState.latest(run)).step());
    }

    @Test
    void evalSetIsTheMeanOverFixedWindows() {
        TokenShard s = shard("e", 50, 5); // 50 / 7 = 7 windows
        EvalSet set = EvalSet.of(s, "e", SEQ, 3, 100);
        assertEquals(7, set.windows());
        assertEquals(List.of(3, 3, 1), set.batches().stream().map(b -> b.length).toList());
        ToyBigramModel model = new ToyBigramModel(VOCAB, DIM, 1);
        double sum = 0;
        for (int w = 0; w < 7; w++) sum += model.loss(new int[][] {java.util.Arrays.copyOfRange(s.tokens(), w * 7, w * 7 + 7)});
        assertEquals(sum / 7, set.meanLoss(model), 1e-12);
        var e = assertThrows(IllegalArgumentException.class, () -> EvalSet.of(shard("tiny", 6, 1), "tiny", SEQ, 3, 8));
        assertTrue(e.getMessage().contains("eval split of dataset 'tiny' has 6 tokens"), e.getMessage());
    }
}
