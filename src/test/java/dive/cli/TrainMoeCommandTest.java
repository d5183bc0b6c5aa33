package dive.cli;

import dive.backend.Backends;
import dive.io.SafetensorsFile;
import dive.model.LlamaModel;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * ./dive train on a tiny Mixtral (4 experts, top-2): trained from a fresh config, resumed bit-identically, exported as
 * a Mixtral folder the inference engine loads; then DIVE stage 0 from that export (routers only, soft routing: every
 * other tensor of the export stays bit-identical) and stage 1 (LoRA with dropout on the experts' w1/w2/w3 + routers +
 * norms, top-k, aux loss), resumed mid-way bit-identically and merged at the end.
 */
class TrainMoeCommandTest {
    @TempDir Path tmp;

    static final String RECIPE = """
            model: {config: {model_type: mixtral, hidden_size: 32, intermediate_size: 24, num_hidden_layers: 2,
                             num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 64,
                             num_local_experts: 4, num_experts_per_tok: 2,
                             rms_norm_eps: 1.0e-5, rope_theta: 10000.0, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 1}}
            tokenizer: {train: {vocab_size: 300}}
            data: {corpus: bundled, datasets: {man2: 1, bible-nt: 1}, eval_windows: 4}
            schedule: {kind: cosine, lr: 0.01, warmup: 2, min_lr: 0.001}
            moe: {aux_loss_coef: 0.01}
            batch_size: 2
            seq_len: 16
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

    static void trainTwiceAndResumeOne(Path recipe, Path a, Path b) throws Exception {
        for (Path run : new Path[] {a, b}) {
            CliTest.Run r = CliTest.run("train", "--recipe", recipe.toString(), "--out", run.toString(), "-q");
            assertEquals(0, r.code(), r.err());
        }
        TrainLlamaCommandTest.rewindAndResume(recipe, b);
        assertArrayEquals(Files.readAllBytes(a.resolve("final/model.safetensors")), Files.readAllBytes(b.resolve("final/model.safetensors")),
                recipe.getFileName() + ": resume from step 3 must give the same weights");
    }

    @Test
    void trainsAMixtralResumesBitIdenticallyAndRunsTheDiveStages() throws Exception {
        Path base = tmp.resolve("base"), baseResumed = tmp.resolve("base-resumed");
        trainTwiceAndResumeOne(write("base.yaml", RECIPE), base, baseResumed);
        assertTrue(Files.readString(base.resolve("final/config.json")).contains("\"model_type\" : \"mixtral\""));
        try (LlamaModel model = LlamaModel.load(base.resolve("final"), Backends.create("vector"))) {
            assertTrue(model.isMoe());
            float[] logits = model.logits(new int[] {5, 6, 7, 8});
            for (float v : logits) assertTrue(Float.isFinite(v));
        }

        // stage 0: routers only, soft routing
        String stage0 = """
                model: {checkpoint: base/final}
                tokenizer: base/final/tokenizer.json
                data: {corpus: bundled, datasets: [man3], eval_windows: 2}
                schedule: {kind: constant, lr: 0.01}
                train: ["*.block_sparse_moe.gate.weight"]
                moe: {routing: soft}
                batch_size: 2
                seq_len: 16
                max_steps: 3
                seed: 3
                """;
        Path s0 = tmp.resolve("stage0");
        CliTest.Run r0 = CliTest.run("train", "--recipe", write("stage0.yaml", stage0).toString(), "--out", s0.toString(), "-q");
        assertEquals(0, r0.code(), r0.err());
        try (SafetensorsFile before = SafetensorsFile.open(base.resolve("final/model.safetensors"));
             SafetensorsFile after = SafetensorsFile.open(s0.resolve("final/model.safetensors"))) {
            int routers = 0;
            for (String name : before.names()) {
                boolean same = java.util.Arrays.equals(before.tensor(name).toFloatArray(), after.tensor(name).toFloatArray());
                boolean router = name.endsWith("block_sparse_moe.gate.weight");
                if (router) routers++;
                assertEquals(!router, same, name + (router ? " (a router) must change" : " must stay as it was"));
            }
            assertEquals(2, routers);
        }

        // stage 1: LoRA on the experts with dropout + routers + norms, resumed mid-way, merged at the end
        String stage1 = """
                model: {checkpoint: stage0/final}
                tokenizer: stage0/final/tokenizer.json
                data: {corpus: bundled, datasets: [man3], eval_windows: 2}
                schedule: {kind: constant, lr: 0.01}
                lora: {r: 4, alpha: 8, dropout: 0.1, targets: [w1, w2, w3]}
                train: ["*.lora_*", "*.block_sparse_moe.gate.weight", "*norm.weight"]
                moe: {routing: top_k, aux_loss_coef: 0.01}
                batch_size: 2
                seq_len: 16
                max_steps: 6
                checkpoint_every: 3
                keep_checkpoints: 4
                seed: 3
                """;
        Path l1 = tmp.resolve("stage1-a"), l2 = tmp.resolve("stage1-b");
        trainTwiceAndResumeOne(write("stage1.yaml", stage1), l1, l2);
        try (SafetensorsFile before = SafetensorsFile.open(s0.resolve("final/model.safetensors"));
             SafetensorsFile after = SafetensorsFile.open(l1.resolve("final/model.safetensors"))) {
            assertFalse(after.names().stream().anyMatch(n -> n.contains("lora")), "adapters are merged, not exported");
            for (String name : before.names()) {
                Tensor b = before.tensor(name), a = after.tensor(name);
                boolean same = java.util.Arrays.equals(b.toFloatArray(), a.toFloatArray());
                boolean trained = name.contains(".experts.") || name.endsWith("gate.weight") || name.endsWith("norm.weight");
                assertEquals(!trained, same, name);
            }
        }
    }
}
