package dive.cli;

import dive.cuda.Cuda;
import dive.cuda.GpuTests;
import com.fasterxml.jackson.databind.JsonNode;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

/** --device on the command line: a clear error where no GPU is usable; generation on the GPU where one is. */
class DeviceOptionTest {

    @Test
    void deviceCudaWithoutAGpuFailsNamingTheReason(@TempDir Path tmp) throws Exception {
        assumeFalse(Cuda.usable(), "a GPU is usable here");
        String want = "--device cuda: no usable CUDA GPU: " + Cuda.status().reason();
        CliTest.Run gen = CliTest.run("generate", CliTest.MODEL.toString(), "--prompt", "hi", "--device", "cuda", "-q");
        assertEquals(1, gen.code());
        assertEquals("dive generate: " + want, gen.err().strip());
        Path recipe = Files.writeString(tmp.resolve("r.yaml"), "model: {path: x}\n");
        CliTest.Run train = CliTest.run("train", "--recipe", recipe.toString(), "--out", tmp.resolve("run").toString(), "--device", "cuda", "-q");
        assertEquals(1, train.code());
        assertEquals("dive train: " + want, train.err().strip());
        assertFalse(Files.exists(tmp.resolve("run")), "nothing written");
        assertNotEquals("cuda", System.getProperty("dive.device"), "the device property is restored");
    }

    @Test
    void unknownDeviceIsRejected() {
        CliTest.Run r = CliTest.run("ppl", CliTest.MODEL.toString(), "--text", CliTest.MODEL.resolve("eval.txt").toString(), "--device", "tpu");
        assertEquals(1, r.code());
        assertEquals("dive ppl: unknown device 'tpu' (flag --device / property dive.device): expected auto, cuda or cpu", r.err().strip());
    }

    @Test
    void deviceCpuRunsOnTheCpu() throws Exception {
        JsonNode exp = CliTest.expected();
        CliTest.Run r = CliTest.run("ppl", CliTest.MODEL.toString(), "--text", CliTest.MODEL.resolve("eval.txt").toString(),
                "--window", exp.get("eval_text_window").asText(), "--json", "-q", "--device", "cpu");
        assertEquals(0, r.code(), r.err());
        double want = exp.get("eval_text_perplexity").asDouble();
        assertEquals(want, CliTest.JSON.readTree(r.out()).get("ppl").asDouble(), 1e-4 * want);
    }

    /** greedy generation on the GPU continues the prompt as transformers does (src/test/python/make_llama_fixtures.py) */
    @Test
    @Tag("gpu")
    void generateOnTheGpuIsTransformersContinuation() throws Exception {
        GpuTests.assumeGpu(DeviceOptionTest.class);
        JsonNode exp = CliTest.expected();
        Tokenizer tok = Tokenizer.load(CliTest.MODEL.resolve("tokenizer.json"));
        int[] newIds = CliTest.JSON.convertValue(exp.get("greedy_new_ids"), int[].class);
        String prompt = exp.get("prompt_text").asText();
        CliTest.Run r = CliTest.run("generate", CliTest.MODEL.toString(), "--prompt", prompt, "--max-tokens",
                Integer.toString(newIds.length), "-q", "--device", "cuda");
        assertEquals(0, r.code(), r.err());
        assertEquals(prompt + tok.decode(newIds, true) + System.lineSeparator(), r.out());
    }
}
