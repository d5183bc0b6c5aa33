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
        String want = "--device 'cuda': no usable CUDA GPU: " + Cuda.status().reason();
        CliTest.Run gen = CliTest.run("generate", CliTest.MODEL.toString(), "--prompt", "hi", "--device", "cuda", "-q");
        assertEquals(1, gen.code());
        assertEquals("dive generate: " + want, gen.err().strip());
        Path recipe = Files.writeString(tmp.resolve("r.yaml"), "model: {path: x}\n");
        CliTest.Run train = CliTest.run("train", "--recipe", recipe.toString(), "--out", tmp.resolve("run").toString(), "--device", "cuda", "-q");
        assertEquals(1, train.code());
        assertEquals("dive train: " + want, train.err().strip());
        assertFalse(Files.exists(tmp.resolve("run")), "nothing written");
    }

    @Test
    void badValuesAreRejectedNamingTheFlag() {
        String[] ppl = {"ppl", CliTest.MODEL.toString(), "--text", CliTest.MODEL.resolve("eval.txt").toString()};
        CliTest.Run r = CliTest.run(with(ppl, "--device", "tpu"));
        assertEquals(1, r.code());
        assertEquals("dive ppl: --device 'tpu': expected auto, cuda or cpu", r.err().strip());
        r = CliTest.run(with(ppl, "--device", "cpu", "--backend", "fast"));
        assertEquals(1, r.code());
        assertEquals("dive ppl: --backend 'fast': expected scalar, vector or auto (for the GPU choose device cuda)", r.err().strip());
        r = CliTest.run(with(ppl, "--device", "cpu", "--threads", "0"));
        assertEquals(1, r.code());
        assertEquals("dive ppl: --threads 0: expected ≥ 1", r.err().strip());
        Path recipe = CliTest.MODEL.resolve("missing.yaml");
        r = CliTest.run("train", "--recipe", recipe.toString(), "--backend", "fast", "-q");
        assertEquals(1, r.code());
        assertEquals("dive train: --backend 'fast': expected scalar, vector or auto (for the GPU choose device cuda)", r.err().strip());
    }

    @Test
    void threadsAndBackendMakeTheBackend() throws Exception {
        CliTest.Run r = CliTest.run("bench", CliTest.MODEL.toString(), "--batch", "1", "--prompt-len", "4", "--gen", "2", "--repeats", "1",
                "--json", "-q", "--device", "cpu", "--backend", "vector", "--threads", "2");
        assertEquals(0, r.code(), r.err());
        assertTrue(CliTest.JSON.readTree(r.out()).get("backend").asText().endsWith(", 2 threads)"), r.out());
        r = CliTest.run("bench", CliTest.MODEL.toString(), "--batch", "1", "--prompt-len", "4", "--gen", "2", "--repeats", "1",
                "--json", "-q", "--device", "cpu", "--backend", "scalar");
        assertEquals(0, r.code(), r.err());
        assertEquals("scalar", CliTest.JSON.readTree(r.out()).get("backend").asText(), r.out());
    }

    private static String[] with(String[] args, String... more) {
        String[] all = java.util.Arrays.copyOf(args, args.length + more.length);
        System.arraycopy(more, 0, all, args.length, more.length);
        return all;
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
