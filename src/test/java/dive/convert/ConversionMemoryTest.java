package dive.convert;

import dive.backend.ScalarBackend;
import dive.io.SafetensorsFile;
import dive.model.LlamaConfig;
import dive.tensor.DType;
import dive.train.TrainableLlama;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Memory is part of correctness: a conversion whose experts in F32 would need 1.9 times the JVM's heap runs to the
 * end in a child JVM with {@code -Xmx160m}, because the experts are built in the checkpoint's dtype (BF16) off-heap and
 * training keeps F32 state for the trained parameters only.
 */
class ConversionMemoryTest {
    @TempDir Path tmp;

    @Test
    void aFiftyMillionParameterBf16ModelConvertsInA160MbHeap() throws Exception {
        // hidden 512, 8 layers, FFN 3072, vocab 4096 (the default tokenizer's): 3 × 512 × 3072 × 8 = 37.7M FFN weights,
        // 8.4M attention, 2.1M embeddings (tied): 48.2M parameters. 4 experts at r 0.5 hold 2 × 37.7M = 75.5M weights:
        // 302 MB as F32 (1.9 × the heap), 151 MB as BF16 (off-heap)
        Path model = tmp.resolve("model");
        Files.createDirectories(model);
        Files.writeString(model.resolve("config.json"), """
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512, "intermediate_size": 3072,
                 "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64, "vocab_size": 4096,
                 "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
                 "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 1, "dtype": "bfloat16"}
                """);
        LlamaConfig config = LlamaConfig.load(model);
        Path tokenizer = Path.of("src/main/resources/dive/default/tokenizer.json");
        TrainableLlama.initialize(config, new ScalarBackend(), 7).saveCheckpoint(model, tokenizer, DType.BF16);
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, """
                datasets: [bible-nt, man2, python-core, spdx-osi]
                calibration_windows: 2
                eval_windows: 1
                final_eval_windows: 1
                seqlen: 32
                checkpoint_every: 1
                train_eval_windows: 1
                train_evals: 1
                stage0: {tokens: 64, batch_size: 2, seq_len: 32, lr: 1.0e-3}
                stage1: {tokens: 64, batch_size: 2, seq_len: 32, lr: 1.0e-3}
                keep_intermediate: true
                """);
        Path out = tmp.resolve("out");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx160m", "-XX:MaxDirectMemorySize=2g", "-Ddive.packCache.bytes=0", "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), "dive.cli.Main",
                "convert", model.toString(), "--experts", "4", "--top-k", "1", "--ratio", "0.5", "--recipe", recipe.toString(),
                "--out", out.toString(), "--threads", "2", "-q"));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(tmp.resolve("log.txt").toFile()).start();
        assertTrue(p.waitFor(20, TimeUnit.MINUTES), "conversion did not finish");
        String log = Files.readString(tmp.resolve("log.txt"));
        assertEquals(0, p.exitValue(), log);
        try (SafetensorsFile experts = SafetensorsFile.open(out.resolve("experts/model.safetensors"))) {
            assertEquals(DType.BF16, experts.tensor("model.layers.3.block_sparse_moe.experts.2.w1.weight").dtype());
            assertArrayEquals(new long[] {1536, 512}, experts.tensor("model.layers.3.block_sparse_moe.experts.2.w1.weight").shape());
        }
        assertTrue(Files.size(out.resolve("model/model.safetensors")) < 200_000_000L, "the export is BF16 (≈ 160 MB), not F32 (≈ 320 MB)");
        assertTrue(Files.isRegularFile(out.resolve("report.json")));
    }
}
