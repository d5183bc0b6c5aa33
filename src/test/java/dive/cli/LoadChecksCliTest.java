package dive.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/**
 * What used to give silently wrong results with exit 0 now stops with one line (exit 1, no stack trace) naming the
 * tensor, option or limit: a config with fewer layers than the checkpoint, NaN weights, a window or a generation
 * longer than max_position_embeddings, a tokenizer with fewer ids than vocab_size.
 */
class LoadChecksCliTest {
    static final Path MODEL = CliTest.MODEL;
    @TempDir Path tmp;

    private Path copy(String name, Consumer<ObjectNode> config) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve(name));
        for (String f : new String[] {"model.safetensors", "tokenizer.json", "eval.txt"}) Files.copy(MODEL.resolve(f), dir.resolve(f));
        ObjectNode c = (ObjectNode) CliTest.JSON.readTree(MODEL.resolve("config.json").toFile());
        config.accept(c);
        Files.writeString(dir.resolve("config.json"), c.toPrettyString());
        return dir;
    }

    /** exit 1 and one line on stderr, no stack trace, nothing on stdout */
    private static String oneLineError(CliTest.Run r) {
        assertEquals(1, r.code(), r.out() + r.err());
        assertFalse(r.err().contains("\tat ") || r.err().contains("Exception"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertEquals("", r.out(), "no output before the refusal");
        return r.err().strip();
    }

    @Test
    void fewerLayersInTheConfigThanInTheCheckpoint() throws Exception {
        Path dir = copy("fewer", c -> c.put("num_hidden_layers", 1));
        String text = dir.resolve("eval.txt").toString();
        String err = oneLineError(CliTest.run("ppl", dir.toString(), "--text", text, "--window", "64", "-q"));
        assertTrue(err.startsWith("dive ppl: ") && err.contains("model.layers.1.") && err.contains("model.safetensors")
                && err.contains("--allow-unused-tensors") && err.contains("num_hidden_layers 1"), err);
        CliTest.Run ok = CliTest.run("ppl", dir.toString(), "--text", text, "--window", "64", "--allow-unused-tensors", "--json");
        assertEquals(0, ok.code(), ok.err());  // the warning that lists them: LoadChecksTest
        for (String cmd : new String[] {"generate", "eval", "logits", "bench", "convert", "compare", "serve"})
            assertTrue(CliTest.run(cmd, "--help").out().contains("--allow-unused-tensors"), cmd);
        // convert refuses the same checkpoint before any work, naming the flag
        String convert = oneLineError(CliTest.run("convert", dir.toString(), "--experts", "2", "--top-k", "1", "--ratio", "0.5",
                "--out", dir.resolve("out").toString(), "-q"));
        assertTrue(convert.startsWith("dive convert: ") && convert.contains("--allow-unused-tensors"), convert);
    }

    @Test
    void nanWeightsAreRefusedNamingTheTensor() throws Exception {
        Path dir = copy("nan", c -> {});
        Files.delete(dir.resolve("model.safetensors"));
        byte[] bytes = Files.readAllBytes(MODEL.resolve("model.safetensors"));
        // the last float of the file (the last tensor's last element) becomes NaN
        MemorySegment.ofArray(bytes).set(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), bytes.length - 4, Float.NaN);
        Files.write(dir.resolve("model.safetensors"), bytes);
        String err = oneLineError(CliTest.run("ppl", dir.toString(), "--text", dir.resolve("eval.txt").toString(), "-q"));
        assertTrue(err.contains("NaN") && err.contains("index"), err);
        err = oneLineError(CliTest.run("generate", dir.toString(), "--prompt", "the", "-q"));
        assertTrue(err.contains("NaN"), err);
    }

    @Test
    void windowsAndGenerationsBeyondMaxPositionEmbeddings() throws Exception {
        Path dir = copy("short", c -> c.put("max_position_embeddings", 32));
        String text = dir.resolve("eval.txt").toString();
        String err = oneLineError(CliTest.run("ppl", dir.toString(), "--text", text, "--window", "64"));
        assertTrue(err.contains("--window 64") && err.contains("max_position_embeddings 32"), err);
        err = oneLineError(CliTest.run("eval", dir.toString(), "--window", "64", "--max-windows", "1"));
        assertTrue(err.contains("--window 64") && err.contains("max_position_embeddings 32"), err);
        err = oneLineError(CliTest.run("generate", dir.toString(), "--prompt", "the cat", "--max-tokens", "40"));
        assertTrue(err.contains("--max-tokens 40") && err.contains("max_position_embeddings 32"), err);
        err = oneLineError(CliTest.run("generate", dir.toString(), "--prompt", "the cat sat on the mat", "--max-tokens", "30"));
        assertTrue(err.contains("--max-tokens 30 after a prompt of ") && err.contains("max_position_embeddings 32"), err);
        assertEquals(0, CliTest.run("ppl", dir.toString(), "--text", text, "--window", "32", "-q").code());
        assertEquals(0, CliTest.run("generate", dir.toString(), "--prompt", "the cat", "--max-tokens", "20", "-q").code());
    }

    @Test
    void generationWithATokenizerOfFewerIdsThanVocabSize() throws Exception {
        Path dir = dive.api.DecodableIdsTestAccess.truncated(Files.createDirectories(tmp.resolve("fewer-ids")));
        for (int seed = 0; seed < 3; seed++) {
            CliTest.Run r = CliTest.run("generate", dir.toString(), "--prompt", "the cat", "--max-tokens", "48",
                    "--temperature", "4", "--seed", String.valueOf(seed), "-q");
            assertEquals(0, r.code(), r.err());
        }
    }
}
