package dive.convert;

import dive.backend.Backends;
import dive.data.Corpus;
import dive.model.DenseFfn;
import dive.model.KVCache;
import dive.model.LlamaModel;
import dive.model.MoeFfn;
import dive.model.RoutingObserver;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Expert reconstruction on the tiny_bpe fixture (hidden 64, FFN 48, 2 layers) with three bundled datasets. */
class ExpertReconstructionTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static final List<String> DATASETS = List.of("bible-nt", "man2", "python-core");
    static LlamaModel dense;
    static List<DatasetWindows> windows = new ArrayList<>();

    @BeforeAll
    static void load() throws Exception {
        dense = LlamaModel.load(MODEL, Backends.create("vector"));
        Tokenizer tokenizer = Tokenizer.load(MODEL.resolve("tokenizer.json"));
        Corpus corpus = Corpus.bundled();
        for (int i = 0; i < DATASETS.size(); i++)
            windows.add(DatasetWindows.of(corpus, DATASETS.get(i), tokenizer, 3, 2, 32, AffinityMining.datasetSeed(5, i)));
    }

    @AfterAll
    static void close() throws Exception { dense.close(); }

    static ExpertReconstruction.Options options(int experts, int k, double ratio, boolean bias, int nsamples) {
        return new ExpertReconstruction.Options(experts, k, ratio, ChannelScore.Statistic.WIFV, bias, nsamples, 3, 0.02, 11, 0);
    }

    /** every layer's h (N, F) over the windows, collected here from the dense model's observer, as doubles */
    static List<List<double[]>> intermediates(List<int[]> ws) { return intermediates(dense, ws); }

    /** as {@link #intermediates(List)} for any dense model */
    static List<List<double[]>> intermediates(LlamaModel dense, List<int[]> ws) {
        int layers = dense.config().numHiddenLayers();
        List<List<double[]>> rows = new ArrayList<>();
        for (int l = 0; l < layers; l++) rows.add(new ArrayList<>());
        RoutingObserver observer = new RoutingObserver() {
            @Override public void onRouting(int layer, int tokens, float[] logits, int[] ids, float[] weights) {}
            @Override public void onDenseIntermediate(int layer, int tokens, int width, float[] h) {
                for (int n = 0; n < tokens; n++) {
                    double[] row = new double[width];
                    for (int j = 0; j < width; j++) row[j] = h[n * width + j];
                    rows.get(layer).add(row);
                }
            }
        };
        for (int[] w : ws) dense.forward(w, dense.newCache(w.length), observer);  // one window at a time: a different batching
        return rows;
    }

    /**
     * Σ⟨y, ŷ⟩ / Σ‖ŷ‖² over the rows h (F) in double, y = down·h, ŷ = down[:, kept]·h[kept] + bias (null = 0); down (d, F)
     * row-major: the least-squares output scale, computed here without the engine.
     */
    static double leastSquaresScale(List<double[]> h, float[] down, int d, int[] kept, float[] bias) {
        int f = down.length / d;
        double dot = 0, norm = 0;
        for (double[] row : h)
            for (int i = 0; i < d; i++) {
                double y = 0, yHat = bias == null ? 0 : bias[i];
                for (int j = 0; j < f; j++) y += down[i * f + j] * row[j];
                for (int j : kept) yHat += down[i * f + j] * row[j];
                dot += y * yHat;
                norm += yHat * yHat;
            }
        return dot / norm;
    }

    @Test
    void expertEqualsDenseFfnPrunedWithItsGroupsPooledWindows() {
        int[] groups = {0, 1, 0};  // expert 0: bible-nt + python-core, expert 1: man2
        double ratio = 0.5;
        for (boolean bias : new boolean[] {false, true}) {
            ExpertReconstruction.Options opt = options(2, 1, ratio, bias, 0);
            List<CalibrationStatistics> perDataset = windows.stream().map(w -> CalibrationStatistics.collect(dense, w.calibration())).toList();
            List<CalibrationStatistics> stats = new ArrayList<>();
            for (int g = 0; g < 2; g++) stats.add(ExpertReconstruction.groupStatistics(dense, windows, perDataset, groups, g, opt));
            ExpertReconstruction.Result r = ExpertReconstruction.reconstruct(dense, stats, opt);
            assertEquals(24, r.expertWidth());
            for (int g = 0; g < 2; g++) {
                List<int[]> pooled = new ArrayList<>();
                for (int i = 0; i < 3; i++) if (groups[i] == g) pooled.addAll(windows.get(i).calibration());
                List<List<double[]>> h = intermediates(pooled);
                for (int l = 0; l < 2; l++) {
                    DenseFfn ffn = (DenseFfn) dense.feedForward(l);
                    float[] down = ffn.down().toFloatArray(), gate = ffn.gate().toFloatArray(), up = ffn.up().toFloatArray();
                    int d = 64, f = 48;
                    List<double[]> rows = h.get(l);
                    double[] mean = new double[f], score = new double[f];
                    for (double[] row : rows) for (int j = 0; j < f; j++) mean[j] += row[j] / rows.size();
                    for (int j = 0; j < f; j++) {  // two-pass unbiased variance × ‖W_down[:, j]‖²
                        double ss = 0, norm = 0;
                        for (double[] row : rows) ss += (row[j] - mean[j]) * (row[j] - mean[j]);
                        for (int i = 0; i < d; i++) norm += (double) down[i * f + j] * down[i * f + j];
                        score[j] = ss / (rows.size() - 1) * norm;
                    }
                    Integer[] order = new Integer[f];
                    for (int j = 0; j < f; j++) order[j] = j;
                    Arrays.sort(order, (a, b) -> Double.compare(score[b], score[a]));
                    int[] kept = new int[24];
                    for (int c = 0; c < 24; c++) kept[c] = order[c];
                    Arrays.sort(kept);
                    assertArrayEquals(kept, r.keptChannels()[g][l], "expert " + g + " layer " + l);
                    String p = "model.layers." + l + ".block_sparse_moe.experts." + g + ".";
                    float[] w1 = r.weights().get(p + "w1.weight").toFloatArray(), w3 = r.weights().get(p + "w3.weight").toFloatArray();
                    float[] w2 = r.weights().get(p + "w2.weight").toFloatArray();
                    for (int c = 0; c < 24; c++)
                        for (int i = 0; i < d; i++) {
                            assertEquals(gate[kept[c] * d + i], w1[c * d + i]);
                            assertEquals(up[kept[c] * d + i], w3[c * d + i]);
                            assertEquals(down[i * f + kept[c]], w2[i * 24 + c]);
                        }
                    Tensor b = r.weights().get(p + "bias");
                    if (!bias) { assertNull(b); continue; }
                    for (int i = 0; i < d; i++) {  // b = W_down[:, removed] · mean(h_removed)
                        double expected = 0;
                        for (int j = 0; j < f; j++) if (Arrays.binarySearch(kept, j) < 0) expected += down[i * f + j] * mean[j];
                        assertEquals(expected, b.getFloat(i), 1e-5 + 1e-4 * Math.abs(expected), "bias " + i);
                    }
                }
            }
            LlamaModel moe = r.model(dense.backend(), "reconstructed");
            assertTrue(moe.isMoe());
            assertEquals(bias, ((MoeFfn) moe.feedForward(0)).bias() != null);
        }
    }

    @Test
    void pooledSampleIsSeededShuffleOfTheGroupsWindows() {
        List<DatasetWindows> members = List.of(windows.get(0), windows.get(2));
        List<int[]> all = ExpertReconstruction.pooledWindows(members, 3, 0, 0);
        assertEquals(6, all.size());
        List<int[]> pool = new ArrayList<>(windows.get(0).calibration());
        pool.addAll(windows.get(2).calibration());
        for (int[] w : pool) assertTrue(all.contains(w), "every pooled window is in the sample");  // same arrays, reordered
        List<int[]> two = ExpertReconstruction.pooledWindows(members, 3, 0, 2);
        assertSame(all.get(0), two.get(0));
        assertSame(all.get(1), two.get(1));
        assertNotEquals(ExpertReconstruction.pooledWindows(members, 3, 1, 0), all, "group 1's shuffle differs from group 0's");
        // a subset sample: statistics gathered on exactly those windows
        ExpertReconstruction.Options opt = options(2, 1, 0.5, false, 2);
        CalibrationStatistics s = ExpertReconstruction.groupStatistics(dense, windows, null, new int[] {0, 1, 0}, 0, opt);
        assertArrayEquals(CalibrationStatistics.collect(dense, two).layers()[1].mean(), s.layers()[1].mean());
        assertEquals(2 * 32, s.tokens());
    }

    @Test
    void aRatioThatKeepsEveryChannelIsRefused() {
        // r = 0.01 keeps round(48 · 0.99) = 48 channels: every expert would be the whole dense FFN, which is no
        // conversion; refused naming the numbers, for k = 1 and k = 2
        List<CalibrationStatistics> stats = windows.stream().map(w -> CalibrationStatistics.collect(dense, w.calibration())).toList();
        for (int k = 1; k <= 2; k++) {
            ExpertReconstruction.Options opt = options(3, k, 0.01, false, 0);
            var e = assertThrows(IllegalArgumentException.class, () -> ExpertReconstruction.reconstruct(dense, stats, opt));
            assertEquals("ratio 0.01 removes 0 of 48 FFN channels: expected a ratio that removes at least one and keeps at least one", e.getMessage());
        }
        var v = assertThrows(IllegalArgumentException.class, () -> ExpertReconstruction.validate(3, 1, 0.01, 48, 3));
        assertTrue(v.getMessage().startsWith("ratio 0.01 removes 0 of 48"), v.getMessage());
    }

    @Test
    void routersAreSeededNormalsOfTheGivenScale() {
        List<CalibrationStatistics> stats = windows.stream().map(w -> CalibrationStatistics.collect(dense, w.calibration())).toList();
        ExpertReconstruction.Result r = ExpertReconstruction.reconstruct(dense, stats, options(3, 1, 0.5, false, 0));
        for (int l = 0; l < 2; l++) {
            Tensor router = r.weights().get("model.layers." + l + ".block_sparse_moe.gate.weight");
            assertArrayEquals(new long[] {3, 64}, router.shape());
            Random random = new Random(11 + l);  // routerSeed + layer, normal(0, 0.02)
            for (int i = 0; i < 3 * 64; i++) assertEquals((float) (random.nextGaussian() * 0.02), router.getFloat(i));
            double sumSquares = 0;
            for (int i = 0; i < 3 * 64; i++) sumSquares += router.getFloat(i) * router.getFloat(i);
            double std = Math.sqrt(sumSquares / (3 * 64));
            assertTrue(std > 0.015 && std < 0.025, "router std " + std);
        }
        // no mlp tensors remain; attention, norms and embeddings are the dense model's own
        assertFalse(r.weights().keySet().stream().anyMatch(n -> n.contains(".mlp.")));
        assertSame(dense.namedWeights().get("model.layers.1.self_attn.q_proj.weight"), r.weights().get("model.layers.1.self_attn.q_proj.weight"));
        assertEquals("mixtral", r.config().modelType());
        assertEquals(3, r.config().moe().numLocalExperts());
    }

    @Test
    void badShapesAreRefusedNamingTheFlag() {
        assertMessage("top_k", () -> ExpertReconstruction.validate(2, 3, 0.5, 48, 3));
        assertMessage("top_k", () -> ExpertReconstruction.validate(2, 0, 0.5, 48, 3));
        assertMessage("ratio", () -> ExpertReconstruction.validate(2, 1, 0, 48, 3));
        assertMessage("ratio", () -> ExpertReconstruction.validate(2, 1, 1, 48, 3));
        assertMessage("ratio", () -> ExpertReconstruction.validate(2, 1, 1.5, 48, 3));
        assertMessage("ratio", () -> ExpertReconstruction.validate(2, 1, 0.999, 48, 3));  // 48 · 0.001 rounds to 0
        assertMessage("experts", () -> ExpertReconstruction.validate(4, 1, 0.5, 48, 3));
        assertMessage("experts", () -> ExpertReconstruction.validate(0, 1, 0.5, 48, 3));
        assertEquals(24, ExpertReconstruction.validate(3, 3, 0.5, 48, 3));
        int[] random = ExpertReconstruction.randomGroups(7, 3, 9);
        int[] sizes = new int[3];
        for (int g : random) sizes[g]++;
        assertArrayEquals(new int[] {3, 2, 2}, sizes, "7 datasets over 3 groups: 3, 2, 2");
        assertArrayEquals(random, ExpertReconstruction.randomGroups(7, 3, 9));
    }

    static void assertMessage(String flag, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(flag), e.getMessage());
    }

    @Test
    void parameterCountsFollowTheConfig() {
        List<CalibrationStatistics> stats = windows.stream().map(w -> CalibrationStatistics.collect(dense, w.calibration())).toList();
        LlamaModel moe = ExpertReconstruction.reconstruct(dense, stats, options(3, 1, 0.5, false, 0)).model(dense.backend(), "m");
        // tiny_bpe: vocab 320 × 64 tied; per layer 2 norms (64), q (64×64), k, v (32×64), o (64×64); final norm 64
        long shared = 320L * 64 + 64 + 2 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64);
        assertArrayEquals(new long[] {shared + 2 * 3 * 48 * 64, shared + 2 * 3 * 48 * 64}, ExpertReconstruction.parameterCounts(dense));
        long router = 3 * 64, expert = 3 * 24 * 64;
        assertArrayEquals(new long[] {shared + 2 * (router + 3 * expert), shared + 2 * (router + expert)}, ExpertReconstruction.parameterCounts(moe));
    }

    @Test
    void heldOutEvaluationCountsEveryTopKAssignmentPerGroup() {
        List<CalibrationStatistics> stats = windows.stream().map(w -> CalibrationStatistics.collect(dense, w.calibration())).toList();
        LlamaModel moe = ExpertReconstruction.reconstruct(dense, stats, options(3, 2, 0.5, false, 0)).model(dense.backend(), "m");
        // groups of unequal sizes, so batches of different row counts reuse the model's scratch buffers
        List<List<int[]>> groups = List.of(windows.get(0).calibration(), List.of(windows.get(1).finalEval().get(0)), windows.get(2).affinityEval());
        HeldOutEvaluation.Result r = HeldOutEvaluation.run(moe, groups, null);
        double[] ppl = WindowPerplexity.perGroup(moe, groups, n -> {});
        for (int g = 0; g < 3; g++) {
            assertEquals(ppl[g], r.perplexity()[g], 1e-9 * ppl[g]);
            long[] counts = new long[3];
            for (int[] w : groups.get(g))  // one window per forward; the first k ids of each row are its choices
                moe.forward(w, moe.newCache(w.length), (layer, tokens, logits, ids, weights) -> {
                    for (int n = 0; n < tokens; n++) {
                        float[] z = Arrays.copyOfRange(logits, n * 3, n * 3 + 3);
                        int best = 0;
                        for (int e = 1; e < 3; e++) if (z[e] > z[best]) best = e;
                        int second = best == 0 ? 1 : 0;
                        for (int e = 0; e < 3; e++) if (e != best && z[e] > z[second]) second = e;
                        counts[best]++;
                        counts[second]++;
                    }
                });
            long total = counts[0] + counts[1] + counts[2];
            assertEquals(2L * 2 * groups.get(g).size() * 32, total, "2 layers × k = 2 per token");
            for (int e = 0; e < 3; e++) assertEquals((double) counts[e] / total, r.routingShare()[g][e], 1e-12, "group " + g + " expert " + e);
        }
        assertNull(HeldOutEvaluation.run(dense, groups, null).routingShare());
    }

    @Test
    void outputScaleIsTheLeastSquaresFitToTheDenseFfnOnEachExpertsWindows() {
        int[] groups = {0, 1, 0};
        int d = 64;
        for (boolean bias : new boolean[] {false, true}) {
            ExpertReconstruction.Options opt = options(2, 2, 0.75, bias, 0);  // two experts of 12 of the 48 channels
            List<CalibrationStatistics> perDataset = windows.stream().map(w -> CalibrationStatistics.collect(dense, w.calibration())).toList();
            List<CalibrationStatistics> stats = new ArrayList<>();
            List<List<int[]>> pooled = new ArrayList<>();
            for (int g = 0; g < 2; g++) {
                stats.add(ExpertReconstruction.groupStatistics(dense, windows, perDataset, groups, g, opt));
                List<DatasetWindows> members = new ArrayList<>();
                for (int i = 0; i < 3; i++) if (groups[i] == g) members.add(windows.get(i));
                pooled.add(ExpertReconstruction.pooledWindows(members, 3, g, 0));
            }
            ExpertReconstruction.Result r = ExpertReconstruction.reconstruct(dense, stats, opt);
            double[][] scales = new double[2][];
            ExpertReconstruction.Result scaled = OutputScale.apply(dense, r, pooled, scales);
            for (int g = 0; g < 2; g++) {
                List<List<double[]>> h = intermediates(pooled.get(g));  // one window at a time, in double
                for (int l = 0; l < 2; l++) {
                    float[] down = ((DenseFfn) dense.feedForward(l)).down().toFloatArray();
                    int[] kept = r.keptChannels()[g][l];
                    String p = "model.layers." + l + ".block_sparse_moe.experts." + g + ".";
                    float[] b = bias ? r.weights().get(p + "bias").toFloatArray() : new float[d];
                    double c = leastSquaresScale(h.get(l), down, d, kept, b);
                    assertEquals(c, scales[g][l], 1e-4 * c, "bias " + bias + " expert " + g + " layer " + l);
                    float[] w2 = r.weights().get(p + "w2.weight").toFloatArray(), w2Scaled = scaled.weights().get(p + "w2.weight").toFloatArray();
                    for (int i = 0; i < w2.length; i++) assertEquals((float) (w2[i] * scales[g][l]), w2Scaled[i]);
                    if (bias) {
                        float[] bScaled = scaled.weights().get(p + "bias").toFloatArray();
                        for (int i = 0; i < d; i++) assertEquals((float) (b[i] * scales[g][l]), bScaled[i]);
                    }
                    assertSame(r.weights().get(p + "w1.weight"), scaled.weights().get(p + "w1.weight"));
                    assertSame(r.weights().get(p + "w3.weight"), scaled.weights().get(p + "w3.weight"));
                }
            }
            assertSame(r.weights().get("model.embed_tokens.weight"), scaled.weights().get("model.embed_tokens.weight"));
        }
    }

    @Test
    void outputScaleOfAnExpertKeepingEveryChannelIsOne() {
        int f = 48;
        int[][] all = new int[2][f];
        for (int[] k : all) for (int j = 0; j < f; j++) k[j] = j;
        Tensor[] down = {((DenseFfn) dense.feedForward(0)).down(), ((DenseFfn) dense.feedForward(1)).down()};
        double[] c = OutputScale.fit(dense, windows.get(1).calibration(), all, down, null);
        assertEquals(1.0, c[0], 1e-5);
        assertEquals(1.0, c[1], 1e-5);
    }
}
