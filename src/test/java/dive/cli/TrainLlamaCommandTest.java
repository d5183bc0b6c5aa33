package dive.cli;

import dive.backend.Backends;
import dive.model.LlamaModel;
import dive.model.Perplexity;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * ./dive train on a real (tiny) Llama: trains on two bundled datasets, checkpoints, resumes bit-identically
 * (N steps + resume + N steps = 2N straight), exports an HF folder that the inference engine loads;
 * and LoRA fine-tuning from that export with dropout, resumed mid-way, merged at the end.
 */
class TrainLlamaCommandTest {
    @TempDir Path tmp;

    static final String RECIPE = """
            model: {config: {model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
                             num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 64,
                             rms_norm_eps: 1.0e-5, rope_theta: 10000.0, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 1}}
            tokenizer: {train: {vocab_size: 300}}
            data: {corpus: bundled, datasets: {man2: 1, bible-nt: 1}, eval_windows: 4}
            schedule: {kind: cosine, lr: 0.01, warmup: 2, min_lr: 0.001}
            batch_size: 4
            seq_len: 16
            grad_accum: 2
            max_steps: 6
            eval_every: 3
            checkpoint_every: 3
            keep_checkpoints: 4
            seed: 11
            """;

    Path write(String name, String text) throws Exception {
        Path file = tmp.resolve(name);
        Files.writeString(file, text);
        return file;
    }

    /** run to the end, then rewind the `latest` pointer to step 3, drop the export, and resume */
    static void rewindAndResume(Path recipe, Path run) throws Exception {
        Files.writeString(run.resolve("checkpoints/latest"), "step-00000003\n");
        try (Stream<Path> s = Files.walk(run.resolve("final"))) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
        CliTest.Run r = CliTest.run("train", "--recipe", recipe.toString(), "--out", run.toString(), "--resume", "-q");
        assertEquals(0, r.code(), r.err());
    }

    @Test
    void trainsALlamaResumesBitIdenticallyAndExports() throws Exception {
        Path recipe = write("base.yaml", RECIPE);
        Path straight = tmp.resolve("straight"), resumed = tmp.resolve("resumed");
        for (Path run : new Path[] {straight, resumed}) {
            CliTest.Run r = CliTest.run("train", "--recipe", recipe.toString(), "--out", run.toString(), "-q");
            assertEquals(0, r.code(), r.err());
        }
        rewindAndResume(recipe, resumed);
        assertArrayEquals(Files.readAllBytes(straight.resolve("final/model.safetensors")),
                Files.readAllBytes(resumed.resolve("final/model.safetensors")), "resume from step 3 must give the same weights");

        // --export-latest: the latest checkpoint as a model folder, without training; equal to the final export
        Path exported = tmp.resolve("exported");
        CliTest.Run ex = CliTest.run("train", "--recipe", recipe.toString(), "--out", straight.toString(), "--export-latest", exported.toString());
        assertEquals(0, ex.code(), ex.err());
        assertTrue(ex.out().contains("exported step 6"), ex.out());
        assertArrayEquals(Files.readAllBytes(straight.resolve("final/model.safetensors")), Files.readAllBytes(exported.resolve("model.safetensors")));
        CliTest.Run again = CliTest.run("train", "--recipe", recipe.toString(), "--out", straight.toString(), "--export-latest", exported.toString());
        assertEquals(1, again.code());
        assertTrue(again.err().contains("does not exist yet"), again.err());

        // the export is an HF Llama folder the inference engine loads; its loss matches the training log's scale
        try (LlamaModel model = LlamaModel.load(straight.resolve("final"), Backends.create("vector"))) {
            assertEquals(300, model.config().vocabSize());
            assertTrue(Files.isRegularFile(straight.resolve("final/tokenizer.json")));
            int[] ids = new int[40];
            for (int i = 0; i < ids.length; i++) ids[i] = (i * 7) % 300;
            double ppl = Perplexity.compute(model, ids, 20).perplexity();
            assertTrue(Double.isFinite(ppl) && ppl > 1, "ppl " + ppl);
        }

        // LoRA on the exported model, with dropout: resumed mid-way it is still bit-identical, and merged at the end
        String lora = """
                model: {checkpoint: straight/final}
                tokenizer: straight/final/tokenizer.json
                data: {corpus: bundled, datasets: [man3], eval_windows: 2}
                schedule: {kind: constant, lr: 0.01}
                lora: {r: 4, alpha: 8, dropout: 0.1, targets: [q_proj, v_proj, down_proj]}
                batch_size: 2
                seq_len: 16
                grad_accum: 2
                max_steps: 6
                checkpoint_every: 3
                keep_checkpoints: 4
                seed: 3
                """;
        Path loraRecipe = write("lora.yaml", lora);
        Path l1 = tmp.resolve("lora1"), l2 = tmp.resolve("lora2");
        for (Path run : new Path[] {l1, l2}) {
            CliTest.Run r = CliTest.run("train", "--recipe", loraRecipe.toString(), "--out", run.toString(), "-q");
            assertEquals(0, r.code(), r.err());
        }
        rewindAndResume(loraRecipe, l2);
        byte[] merged = Files.readAllBytes(l1.resolve("final/model.safetensors"));
        assertArrayEquals(merged, Files.readAllBytes(l2.resolve("final/model.safetensors")));
        assertFalse(new String(merged, 0, 4096).contains("lora"), "adapters are merged, not exported");
        assertFalse(java.util.Arrays.equals(merged, Files.readAllBytes(straight.resolve("final/model.safetensors"))),
                "LoRA training changed the weights");
    }
}
