package dive.train;

import dive.convert.ConvertRecipe;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Every number of a training or convert recipe is range-checked when the file is read: one line, naming the file, the key and the range. */
class RecipeRangesTest {
    @TempDir Path tmp;

    static final String TRAIN = """
            model: {toy: {dim: 6}}
            tokenizer: {train: {vocab_size: 300}}
            data: {corpus: bundled, datasets: [man2]}
            schedule: {lr: 0.05}
            optimizer: {betas: [0.9, 0.99], eps: 1.0e-8, weight_decay: 0.0, clip: 1.0}
            batch_size: 4
            seq_len: 16
            max_steps: 6
            lora: {r: 4, alpha: 8, dropout: 0.1, targets: [q_proj]}
            """;

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "alpha: 8|alpha: -1e30|lora.alpha: -1.0E30: expected a finite value > 0",
            "alpha: 8|alpha: 0|lora.alpha: 0.0: expected a finite value > 0",
            "alpha: 8|alpha: 1e999|lora.alpha: expected a finite number",
            "lr: 0.05|lr: -1e999|schedule.lr: expected a finite number",
            "eps: 1.0e-8|eps: 0|optimizer.eps",
            "eps: 1.0e-8|eps: 1e999|optimizer.eps: expected a finite number",
            "weight_decay: 0.0|weight_decay: -1|optimizer.weight_decay",
            "clip: 1.0|clip: 1e999|optimizer.clip: expected a finite number",
            "betas: [0.9, 0.99]|betas: [0.9, 1.0]|optimizer.betas",
            "betas: [0.9, 0.99]|betas: [-0.1, 0.99]|optimizer.betas",
            "dropout: 0.1|dropout: 1.0|lora.dropout",
            "r: 4|r: 0|lora.r: 0: expected 1",
            "batch_size: 4|batch_size: 0|batch_size: 0: expected 1",
            "seq_len: 16|seq_len: 0|seq_len: 0: expected 1",
            "max_steps: 6|max_steps: 100000000000000000|max_steps: 100000000000000000: expected 1 … 1125899906842624",
    })
    void trainRecipe(String from, String to, String expected) throws Exception {
        assertTrue(TRAIN.contains(from), from);
        Path file = tmp.resolve("recipe.yaml");
        Files.writeString(file, TRAIN.replace(from, to));
        var e = assertThrows(IllegalArgumentException.class, () -> Recipe.load(file));
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), "expected «" + expected + "» in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "stage1: {lora_alpha: -1e30}|stage1.lora_alpha: -1.0E30: expected a finite value > 0",
            "stage1: {lora_alpha: 0}|stage1.lora_alpha: 0.0: expected a finite value > 0",
            "stage1: {lora_alpha: 1e999}|stage1.lora_alpha: expected a finite number",
            "stage1: {lora_r: 0}|stage1.lora_r: 0: expected 1",
            "stage1: {lora_dropout: 1}|stage1.lora_dropout",
            "stage1: {lr: 1e999}|stage1.lr: expected a finite number",
            "stage2: {lr: -1}|stage2.lr",
            "stage0: {temperature: 0}|stage0.temperature",
            "stage0: {batch_size: 0}|stage0.batch_size: 0: expected 1",
            "stage0: {seq_len: 0}|stage0.seq_len: 0: expected 1",
            "stage0: {tokens: -5}|stage0.tokens: -5: expected",
            "stage1: {tokens: 1000000000000000000}|stage1.tokens",
            "router_init_std: -1|router_init_std",
            "aux_loss_coef: 1e999|aux_loss_coef: expected a finite number",
            "seqlen: 1|seqlen: 1: expected 2",
    })
    void convertRecipe(String text, String expected) throws Exception {
        Path file = tmp.resolve("convert.yaml");
        Files.writeString(file, text + "\n");
        var e = assertThrows(IllegalArgumentException.class, () -> ConvertRecipe.load(file));
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), "expected «" + expected + "» in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
    }
}
