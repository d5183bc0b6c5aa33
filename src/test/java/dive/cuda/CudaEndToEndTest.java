package dive.cuda;

import dive.backend.CudaBackend;
import dive.backend.ScalarBackend;
import dive.model.KVCache;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.train.AdamW;
import dive.train.Parameter;
import dive.train.TrainableLlama;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Whole models on the GPU against the same models on the CPU reference (ScalarBackend): logits of tiny random Llama
 * and Mixtral checkpoints (src/test/resources, made by src/test/python/make_*_fixtures.py), prefill then token-by-token
 * decoding through the KV cache, and one training step (loss, every gradient, the parameters after AdamW) of a
 * freshly initialised Llama and of a Mixtral. Bound: 1e-4 of the largest CPU value, per element. Skipped, saying why,
 * where no GPU is usable.
 */
@Tag("gpu")
class CudaEndToEndTest {
    private static final Path RESOURCES = Path.of("src/test/resources");
    private static CudaBackend cuda;

    /** per test, so each one is reported skipped with the reason where no GPU is usable */
    @BeforeEach
    void gpu() {
        GpuTests.assumeGpu(CudaEndToEndTest.class);
        if (cuda == null) cuda = new CudaBackend(new ScalarBackend());
    }

    @AfterAll
    static void close() {
        if (cuda != null) cuda.close();
    }

    static void assertWithin(String what, float[] want, float[] got, double tol) {
        assertEquals(want.length, got.length, what + ": length");
        double max = 0;
        for (float w : want) max = Math.max(max, Math.abs(w));
        for (int i = 0; i < want.length; i++) {
            assertFalse(Float.isNaN(got[i]), what + ": NaN at " + i);
            if (!(Math.abs(got[i] - want[i]) <= tol * max))
                fail(what + ": element " + i + " is " + got[i] + ", CPU " + want[i] + " (bound " + tol * max + ")");
        }
    }

    static int[] randomIds(long seed, int n, int vocab) {
        Random r = new Random(seed);
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = r.nextInt(vocab);
        return ids;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama/gqa", "llama/tiny_bpe", "llama/head_dim16", "mixtral/k1", "mixtral/k2_i40"})
    void logitsAndDecodingMatchTheCpu(String fixture) throws Exception {
        Path dir = RESOURCES.resolve(fixture);
        try (LlamaModel gpu = LlamaModel.load(dir, cuda); LlamaModel cpu = LlamaModel.load(dir, new ScalarBackend())) {
            int[] ids = randomIds(fixture.hashCode(), 13, cpu.config().vocabSize());
            assertWithin(fixture + " logits", cpu.logits(ids), gpu.logits(ids), 1e-4);
            KVCache cg = gpu.newCache(ids.length), cc = cpu.newCache(ids.length);
            int prefill = 6;
            assertWithin(fixture + " prefill", cpu.forward(Arrays.copyOf(ids, prefill), cc), gpu.forward(Arrays.copyOf(ids, prefill), cg), 1e-4);
            for (int t = prefill; t < ids.length; t++) {
                int[] one = {ids[t]};
                assertWithin(fixture + " decode position " + t, cpu.forward(one, cc), gpu.forward(one, cg), 1e-4);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama/gqa", "mixtral/k2_i40"})
    void oneTrainingStepMatchesTheCpu(String fixture) throws Exception {
        Path dir = RESOURCES.resolve(fixture);
        TrainableLlama gpu, cpu;
        if (fixture.startsWith("llama")) {   // a tiny random Llama, initialised alike from one seed
            LlamaConfig config = LlamaConfig.load(dir);
            gpu = TrainableLlama.initialize(config, cuda, 7);
            cpu = TrainableLlama.initialize(config, new ScalarBackend(), 7);
        } else {                              // a Mixtral: routers, top-k, grouped experts
            gpu = TrainableLlama.fromCheckpoint(dir, cuda);
            cpu = TrainableLlama.fromCheckpoint(dir, new ScalarBackend());
        }
        int vocab = cpu.config().vocabSize();
        int[][] batch = {randomIds(1, 10, vocab), randomIds(2, 10, vocab)};   // B = 2 sequences of T + 1 = 10
        double lossCpu = cpu.lossAndGradients(batch, 1f), lossGpu = gpu.lossAndGradients(batch, 1f);
        assertEquals(lossCpu, lossGpu, 1e-4 * Math.abs(lossCpu), fixture + " loss");

        List<Parameter> pc = cpu.parameters(), pg = gpu.parameters();
        assertEquals(pc.size(), pg.size());
        for (int i = 0; i < pc.size(); i++) {
            assertEquals(pc.get(i).name(), pg.get(i).name());
            assertWithin(fixture + " gradient of " + pc.get(i).name(), pc.get(i).gradValues(), pg.get(i).gradValues(), 1e-4);
        }

        // AdamW from equal gradients gives equal parameters: on each model's backend (the GPU's on the device copies of
        // the parameters, read back to host memory after). Its first step moves each value by about lr·sign(g), so where
        // |g| is at the level of rounding noise the sign, and the step, may differ: those values are held to 2·lr instead.
        double lr = 1e-3;
        new AdamW(AdamW.Options.DEFAULT, cpu.backend()).step(pc, lr);
        new AdamW(AdamW.Options.DEFAULT, cuda).step(pg, lr);
        gpu.syncTrainedToHost();
        for (int i = 0; i < pc.size(); i++) {
            float[] g = pc.get(i).gradValues(), want = pc.get(i).value().toFloatArray(), got = pg.get(i).value().toFloatArray();
            double gMax = 0, pMax = 0;
            for (float x : g) gMax = Math.max(gMax, Math.abs(x));
            for (float x : want) pMax = Math.max(pMax, Math.abs(x));
            for (int j = 0; j < want.length; j++) {
                double bound = Math.abs(g[j]) >= 1e-3 * gMax ? 1e-4 * pMax : 2 * lr + 1e-4 * pMax;
                if (!(Math.abs(got[j] - want[j]) <= bound))
                    fail(fixture + " " + pc.get(i).name() + " after AdamW: element " + j + " is " + got[j] + ", CPU " + want[j]);
            }
        }
    }
}
