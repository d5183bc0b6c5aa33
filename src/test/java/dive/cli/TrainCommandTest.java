package dive.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.io.SafetensorsFile;
import dive.tensor.DType;
import dive.train.ModelFactory;
import dive.train.ToyBigramModel;
import dive.train.TokenShard;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code dive train} end to end with the toy bigram model (registered as model kind "toy") on two datasets of the
 * bundled corpus, a BPE tokenizer trained on their train split; and the recipe errors, each before any work.
 */
class TrainCommandTest {
    @TempDir Path tmp;

    @BeforeAll
    static void registerToy() {
        ModelFactory.register("toy", (recipe, tokenizer, json, backend) -> {
            ToyBigramModel model = new ToyBigramModel(tokenizer.vocabSize(), recipe.model().spec().path("dim").asInt(4), recipe.seed());
            return new ModelFactory.Built(model, ModelFactory.parametersExport(model, recipe.outputDtype()));
        });
    }

    static final String RECIPE = """
            model: {toy: {dim: 6}}
            tokenizer: {train: {vocab_size: 300}}
            data: {corpus: bundled, datasets: {man2: 1, bible-nt: 1}, eval_windows: 4}
            schedule: {kind: cosine, lr: 0.05, warmup: 2, min_lr: 0.005}
            optimizer: {betas: [0.9, 0.99], weight_decay: 0.0, clip: 1.0}
            batch_size: 4
            seq_len: 16
            grad_accum: 2
            max_steps: 6
            eval_every: 3
            checkpoint_every: 3
            seed: 5
            output: BF16
            """;

    Path recipe(String text) throws Exception {
        Path file = tmp.resolve("r" + System.nanoTime() + ".yaml");
        Files.writeString(file, text);
        return file;
    }

    @Test
    void trainsResumesAndExports() throws Exception {
        Path run = tmp.resolve("run");
        Path file = recipe(RECIPE);
        CliTest.Run r = CliTest.run("train", "--recipe", file.toString(), "--out", run.toString(), "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("trained 6 steps (768 tokens)"), r.out()); // 6 · 2 · 4 · 16

        List<String> log = Files.readAllLines(run.resolve("train-log.jsonl"));
        assertEquals(7, log.size());
        ObjectMapper json = new ObjectMapper();
        JsonNode first = json.readTree(log.getFirst()), last = json.readTree(log.getLast());
        assertTrue(first.has("eval") && first.path("eval").has("man2") && first.path("eval").has("bible-nt"));
        // a uniform-ish start: eval loss near ln(300); training lowers it
        assertEquals(Math.log(300), first.at("/eval/man2/loss").asDouble(), 0.5);
        assertTrue(last.at("/eval/man2/loss").asDouble() < first.at("/eval/man2/loss").asDouble(), log.toString());
        assertEquals(0.05 / 2, json.readTree(log.get(1)).path("lr").asDouble(), 1e-12); // warm-up step 0

        // the trained tokenizer is the run's; the shards record its hash
        String tokSha = TokenShard.sha256(Files.readAllBytes(run.resolve("tokenizer.json")));
        assertEquals(tokSha, json.readTree(run.resolve("data/man2.train.json").toFile()).path("tokenizer_sha256").asText());
        try (SafetensorsFile f = SafetensorsFile.open(run.resolve("final/model.safetensors"))) {
            assertEquals(DType.BF16, f.tensor("embed.weight").dtype());
            assertArrayEquals(new long[] {300, 6}, f.tensor("embed.weight").shape());
        }
        assertTrue(Files.isRegularFile(run.resolve("loss.png")));

        // the same run folder again without --resume: refused, nothing touched
        byte[] finalBytes = Files.readAllBytes(run.resolve("final/model.safetensors"));
        CliTest.Run again = CliTest.run("train", "--recipe", file.toString(), "--out", run.toString(), "-q");
        assertEquals(1, again.code());
        assertTrue(again.err().contains("already holds a training run: pass --resume"), again.err());
        // --resume from the step-6 checkpoint: nothing left to do, same model
        CliTest.Run resumed = CliTest.run("train", "--recipe", file.toString(), "--out", run.toString(), "--resume", "-q");
        assertEquals(0, resumed.code(), resumed.err());
        assertArrayEquals(finalBytes, Files.readAllBytes(run.resolve("final/model.safetensors")));

        // resume with another recipe: refused by hash
        Path other = recipe(RECIPE.replace("seed: 5", "seed: 6"));
        CliTest.Run foreign = CliTest.run("train", "--recipe", other.toString(), "--out", run.toString(), "--resume", "-q");
        assertEquals(1, foreign.code());
        assertTrue(foreign.err().contains("written for another recipe"), foreign.err());
    }

    void assertRefused(String recipeText, String expected) throws Exception {
        Path run = tmp.resolve("bad" + System.nanoTime());
        CliTest.Run r = CliTest.run("train", "--recipe", recipe(recipeText).toString(), "--out", run.toString(), "-q");
        assertEquals(1, r.code(), r.out());
        assertTrue(r.err().contains(expected), "expected «" + expected + "» in: " + r.err());
        assertFalse(Files.exists(run.resolve("tokenizer.json")) || Files.exists(run.resolve("checkpoints")), "work started before the check");
    }

    @Test
    void badRecipesAreRefusedNamingTheKey() throws Exception {
        assertRefused(RECIPE + "learning_rate: 1\n", "learning_rate: unknown key");
        assertRefused(RECIPE.replace("lr: 0.05", "lr: -0.05"), "schedule.lr: -0.05: expected a finite value > 0");
        assertRefused(RECIPE.replace("batch_size: 4", "batch_size: 0"), "batch_size: 0: expected 1");
        assertRefused(RECIPE.replace("bible-nt: 1", "bible: 1"), "data.datasets: 'bible' is not in the corpus");
        assertRefused(RECIPE + "max_tokens: 100\n", "give exactly one of max_steps and max_tokens");
        assertRefused(RECIPE.replace("kind: cosine", "kind: linear"), "schedule.kind: expected cosine or constant");
        assertRefused(RECIPE.replace("optimizer: {", "optimizer: {momentum: 1, "), "optimizer.momentum: unknown key");
        assertRefused(RECIPE.replace("model: {toy: {dim: 6}}", "model: {config: {model_type: llama, rms_norm_eps: 1.0e-5, rope_theta: 10000.0, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, "
                + "num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 8}}"),
                "seq_len 16 exceeds the model's max_position_embeddings 8");
        assertRefused(RECIPE.replace("model: {toy: {dim: 6}}", "model: {mystery: {}}"), "model.mystery: unknown model kind");
        CliTest.Run resumeNothing = CliTest.run("train", "--recipe", recipe(RECIPE).toString(), "--out", tmp.resolve("none").toString(), "--resume", "-q");
        assertTrue(resumeNothing.err().contains("no checkpoint to resume from"), resumeNothing.err());
    }

    @Test
    void tooSmallDatasetIsRefused() throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus.resolve("tiny"));
        Files.writeString(corpus.resolve("manifest.json"), "{\"version\":1,\"datasets\":[{\"name\":\"tiny\",\"domain\":\"x\",\"source\":\"s\",\"license\":\"l\","
                + "\"documents\":{\"train\":1,\"calib\":0,\"eval\":1},\"bytes\":{\"train\":1,\"calib\":0,\"eval\":1},"
                + "\"sha256\":{\"train\":\"" + "0".repeat(64) + "\",\"calib\":\"" + "0".repeat(64) + "\",\"eval\":\"" + "0".repeat(64) + "\"}}]}");
        Files.writeString(corpus.resolve("tiny/train.jsonl"), "{\"id\":\"a\",\"text\":\"hi\"}\n");
        Files.writeString(corpus.resolve("tiny/eval.jsonl"), "{\"id\":\"b\",\"text\":\"hello there\"}\n");
        Path file = recipe(RECIPE.replace("corpus: bundled, datasets: {man2: 1, bible-nt: 1}", "corpus: corpus, datasets: [tiny]").replace("vocab_size: 300", "vocab_size: 260"));
        CliTest.Run r = CliTest.run("train", "--recipe", file.toString(), "--out", tmp.resolve("t").toString(), "-q");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("tokens, fewer than one window of seq_len + 1 = 17"), r.err());
        assertFalse(Files.exists(tmp.resolve("t/checkpoints")));
    }
}
