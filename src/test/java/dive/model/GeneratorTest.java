package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import dive.backend.Backends;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.*;

class GeneratorTest {

    /** stopping at an EOS id: the output is transformers' greedy sequence up to and including that id */
    @Test
    void stopsAtEos() throws IOException {
        LlamaModel model = Fixtures.load(Fixtures.dir("gqa"), Backends.create("vector"));
        JsonNode exp = Fixtures.expected("gqa");
        int[] hf = Fixtures.ints(exp.get("greedy_new_ids"));
        int[] out = Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")), GenerateOptions.greedy(20).withEos(hf[5]));
        int firstEos = 0;
        while (hf[firstEos] != hf[5]) firstEos++;
        assertArrayEquals(Arrays.copyOf(hf, firstEos + 1), out);
        assertArrayEquals(Arrays.copyOf(hf, 3), Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")), GenerateOptions.greedy(3)));
        assertEquals(0, Generator.generate(model, new int[] {1}, GenerateOptions.greedy(0)).length);
    }

    /** nucleus sampling with a tiny top-p keeps only the most likely token: transformers' greedy sequence */
    @Test
    void tinyTopPIsGreedy() throws IOException {
        LlamaModel model = Fixtures.load(Fixtures.dir("rope_llama3"), Backends.create("vector"));
        JsonNode exp = Fixtures.expected("rope_llama3");
        int[] out = Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")), GenerateOptions.sampling(20, 1.0f, 1e-6f, 99));
        assertArrayEquals(Fixtures.ints(exp.get("greedy_new_ids")), out);
        // sampling is reproducible from its seed
        int[] a = Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")), GenerateOptions.sampling(20, 1.0f, 0.9f, 5));
        int[] b = Generator.generate(model, Fixtures.ints(exp.get("prompt_ids")), GenerateOptions.sampling(20, 1.0f, 0.9f, 5));
        assertArrayEquals(a, b);
    }

    /** one shared model, many threads generating at once: each result equals the single-thread one */
    @Test
    void concurrentGenerationEqualsSingleThread() throws Exception {
        LlamaModel model = Fixtures.load(Fixtures.dir("gqa"), Backends.create("vector"));
        JsonNode exp = Fixtures.expected("gqa");
        List<int[]> prompts = List.of(Fixtures.ints(exp.get("prompt_ids")), Fixtures.ints(exp.get("batch_input_ids").get(0)),
                Fixtures.ints(exp.get("batch_input_ids").get(1)), Fixtures.ints(exp.get("input_ids")));
        List<int[]> single = new ArrayList<>();
        for (int[] p : prompts) single.add(Generator.generate(model, p, GenerateOptions.sampling(12, 0.9f, 0.95f, 17)));
        assertArrayEquals(Fixtures.ints(exp.get("greedy_new_ids")),
                Generator.generate(model, prompts.get(0), GenerateOptions.greedy(20)));  // anchor to the reference

        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<int[]>> futures = new ArrayList<>();
            for (int round = 0; round < 3; round++)
                for (int[] p : prompts) futures.add(pool.submit(() -> Generator.generate(model, p, GenerateOptions.sampling(12, 0.9f, 0.95f, 17))));
            for (int i = 0; i < futures.size(); i++) assertArrayEquals(single.get(i % prompts.size()), futures.get(i).get(), "task " + i);
        } finally {
            pool.shutdown();
        }
    }
}
