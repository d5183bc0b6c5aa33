package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.model.DenseFfn;
import dive.model.LlamaModel;
import dive.model.Perplexity;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Channel statistics, scores, kept channels, bias compensation and pruned perplexity of the transformers fixture
 * {@code llama/gqa} against src/test/resources/pruning/gqa/expected.json (made by
 * src/test/python/make_pruning_fixtures.py with PyTorch forward hooks on mlp.down_proj and NumPy in float64).
 */
class PruningReferenceTest {
    static final Path MODEL = Path.of("src/test/resources/llama/gqa");
    static JsonNode expected;
    static LlamaModel dense;
    static List<int[]> calibration, eval;
    static CalibrationStatistics stats;

    @BeforeAll
    static void load() throws Exception {
        expected = new ObjectMapper().readTree(Path.of("src/test/resources/pruning/gqa/expected.json").toFile());
        dense = LlamaModel.load(MODEL, Backends.create("vector"));
        calibration = windows(expected.get("calibration_ids"));
        eval = windows(expected.get("eval_ids"));
        stats = CalibrationStatistics.collect(dense, calibration);
    }

    @AfterAll
    static void close() throws Exception { dense.close(); }

    static List<int[]> windows(JsonNode rows) {
        List<int[]> out = new ArrayList<>();
        for (JsonNode row : rows) {
            int[] ids = new int[row.size()];
            for (int i = 0; i < ids.length; i++) ids[i] = row.get(i).asInt();
            out.add(ids);
        }
        return out;
    }

    static double[] doubles(JsonNode array) {
        double[] out = new double[array.size()];
        for (int i = 0; i < out.length; i++) out[i] = array.get(i).asDouble();
        return out;
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) out[i] = array.get(i).asInt();
        return out;
    }

    /** |a − b| ≤ 1e-4 · |b| per value, with a floor of 1e-4 · 1e-3 · max|b| for values near zero (F32 forward) */
    static void assertClose(double[] want, double[] got, double relative, String what) {
        assertEquals(want.length, got.length, what + ": length");
        double scale = 0;
        for (double v : want) scale = Math.max(scale, Math.abs(v));
        double worst = 0;
        for (int j = 0; j < want.length; j++) {
            double err = Math.abs(got[j] - want[j]) / Math.max(Math.abs(want[j]), 1e-3 * scale);
            worst = Math.max(worst, err);
            assertTrue(err <= relative, what + "[" + j + "]: expected " + want[j] + ", got " + got[j] + " (relative error " + err + ")");
        }
    }

    @Test
    void statisticsMatchTorchHooks() {
        assertEquals(2, stats.layers().length);
        for (int l = 0; l < 2; l++) {
            JsonNode e = expected.get("layers").get(l);
            ChannelStatistics s = stats.layers()[l];
            assertEquals(e.get("tokens").asLong(), s.count(), "tokens of layer " + l);
            // a mean can cancel (h of both signs): its error is compared with the channel's RMS sqrt(E[h²]), the size of its terms
            double[] want = doubles(e.get("mean")), got = s.mean(), rms = doubles(e.get("mean_square"));
            for (int j = 0; j < want.length; j++)
                assertEquals(want[j], got[j], 1e-4 * Math.max(Math.abs(want[j]), Math.sqrt(rms[j])), "mean layer " + l + " channel " + j);
            assertClose(doubles(e.get("variance")), s.variance(), 1e-4, "variance layer " + l);
            assertClose(doubles(e.get("m2")), s.m2(), 1e-4, "M2 layer " + l);
            assertClose(doubles(e.get("mean_square")), s.meanSquare(), 1e-4, "E[h²] layer " + l);
        }
    }

    @Test
    void windowByWindowStatisticsMergeToTheBatchOnes() {
        CalibrationStatistics merged = null;
        for (int[] w : calibration) {
            CalibrationStatistics one = CalibrationStatistics.collect(dense, List.of(w));
            merged = merged == null ? one : CalibrationStatistics.merge(merged, one);
        }
        for (int l = 0; l < 2; l++) {
            assertEquals(stats.layers()[l].count(), merged.layers()[l].count());
            assertClose(stats.layers()[l].mean(), merged.layers()[l].mean(), 1e-6, "merged mean layer " + l);
            assertClose(stats.layers()[l].m2(), merged.layers()[l].m2(), 1e-6, "merged M2 layer " + l);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"wifv", "ifv", "wifn", "wanda"})
    void scoresAndKeptChannelsMatchNumPy(String name) {
        ChannelScore score = ChannelScore.parse(name, "--score");
        int[][] kept = Pruning.keptChannels(dense, stats, score, expected.get("ratio").asDouble());
        for (int l = 0; l < 2; l++) {
            JsonNode e = expected.get("layers").get(l);
            double[] got = score.score(l, stats.layers()[l], ((DenseFfn) dense.feedForward(l)).down());
            assertClose(doubles(e.get("scores").get(name)), got, 1e-4, name + " layer " + l);
            assertArrayEquals(ints(e.get("kept").get(name)), kept[l], name + " kept channels of layer " + l);
        }
    }

    @Test
    void taylorImportanceMatchesTorchAutograd() {
        TaylorScore taylor = TaylorScore.compute(dense, calibration);
        int[][] kept = Pruning.keptChannels(dense, stats, taylor, expected.get("ratio").asDouble());
        for (int l = 0; l < 2; l++) {
            JsonNode e = expected.get("layers").get(l);
            // a sum of products with cancellation: compared relative to the layer's largest importance
            double[] want = doubles(e.get("scores").get("taylor")), got = taylor.score(l, null, null);
            double max = 0;
            for (double v : want) max = Math.max(max, v);
            for (int j = 0; j < want.length; j++)
                assertEquals(want[j], got[j], 1e-3 * max, "taylor layer " + l + " channel " + j);
            assertArrayEquals(ints(e.get("kept").get("taylor")), kept[l], "taylor kept channels of layer " + l);
        }
    }

    @Test
    void biasCompensationAndPrunedPerplexityMatchTorch() {
        double ratio = expected.get("ratio").asDouble();
        int[][] kept = Pruning.keptChannels(dense, stats, ChannelScore.Statistic.WIFV, ratio);
        float[][] biases = new float[2][];
        for (int l = 0; l < 2; l++) {
            biases[l] = Pruning.biasCompensation(((DenseFfn) dense.feedForward(l)).down(), kept[l], stats.layers()[l].mean());
            double[] got = new double[biases[l].length];
            for (int i = 0; i < got.length; i++) got[i] = biases[l][i];
            assertClose(doubles(expected.get("layers").get(l).get("bias_wifv")), got, 1e-4, "bias layer " + l);
        }
        double[] dense = WindowPerplexity.perGroup(PruningReferenceTest.dense, List.of(eval), n -> {});
        LlamaModel pruned = Pruning.prunedModel(PruningReferenceTest.dense, kept, null, "pruned");
        LlamaModel prunedBias = Pruning.prunedModel(PruningReferenceTest.dense, kept, biases, "pruned+bias");
        assertEquals(expected.get("kept_width").asInt(), pruned.config().intermediateSize());
        double[] p = WindowPerplexity.perGroup(pruned, List.of(eval), n -> {});
        double[] pb = WindowPerplexity.perGroup(prunedBias, List.of(eval), n -> {});
        assertEquals(expected.get("ppl_dense").asDouble(), dense[0], 1e-4 * expected.get("ppl_dense").asDouble());
        assertEquals(expected.get("ppl_pruned_wifv").asDouble(), p[0], 1e-4 * expected.get("ppl_pruned_wifv").asDouble());
        assertEquals(expected.get("ppl_pruned_wifv_bias").asDouble(), pb[0], 1e-4 * expected.get("ppl_pruned_wifv_bias").asDouble());
        // the one-shot convenience gives the same model
        LlamaModel viaStats = Pruning.prunedModel(PruningReferenceTest.dense, stats, ChannelScore.Statistic.WIFV, ratio, true, "x");
        assertEquals(pb[0], WindowPerplexity.perGroup(viaStats, List.of(eval), n -> {})[0], 1e-9 * pb[0]);
    }

    @Test
    void windowPerplexityAgreesWithPerplexityPerWindow() {
        // the batched multi-group evaluation against dive.model.Perplexity run on each group's ids alone
        List<List<int[]>> groups = List.of(eval.subList(0, 1), eval.subList(1, 3));
        double[] got = WindowPerplexity.perGroup(dense, groups, n -> {});
        for (int g = 0; g < 2; g++) {
            int len = eval.get(0).length;
            int[] ids = groups.get(g).stream().flatMapToInt(java.util.Arrays::stream).toArray();
            assertEquals(Perplexity.compute(dense, ids, len).perplexity(), got[g], 1e-6 * got[g], "group " + g);
        }
    }

    @Test
    void ratioAndWidthAreChecked() {
        var zero = assertThrows(IllegalArgumentException.class, () -> Pruning.keptWidth(80, 0));
        assertTrue(zero.getMessage().contains("ratio"), zero.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Pruning.keptWidth(80, 1));
        assertThrows(IllegalArgumentException.class, () -> Pruning.keptWidth(80, Double.NaN));
        var tooNarrow = assertThrows(IllegalArgumentException.class, () -> Pruning.keptWidth(1, 0.9));
        assertEquals("ratio 0.9 removes 1 of 1 FFN channels: expected a ratio that removes at least one and keeps at least one",
                tooNarrow.getMessage());
        var removesNone = assertThrows(IllegalArgumentException.class, () -> Pruning.keptWidth(1024, 0.0001));
        assertEquals("ratio 1.0E-4 removes 0 of 1024 FFN channels: expected a ratio that removes at least one and keeps at least one",
                removesNone.getMessage());
        var removesAll = assertThrows(IllegalArgumentException.class, () -> Pruning.keptWidth(1024, 0.9999));
        assertTrue(removesAll.getMessage().startsWith("ratio 0.9999 removes 1024 of 1024 FFN channels"), removesAll.getMessage());
        assertEquals(40, Pruning.keptWidth(80, 0.5));
        assertEquals(20, Pruning.keptWidth(80, 0.75));
        assertEquals(2, Pruning.keptWidth(3, 0.5));  // 1.5 rounds half up
    }

    @Test
    void topChannelsBreakTiesTowardsTheLowerIndex() {
        // scores 3, 5, 5, 1, 5: the three 5s tie; keeping 2 takes channels 1 and 2
        assertArrayEquals(new int[] {1, 2}, Pruning.topChannels(new double[] {3, 5, 5, 1, 5}, 2));
        assertArrayEquals(new int[] {0, 1, 2, 4}, Pruning.topChannels(new double[] {3, 5, 5, 1, 5}, 4));
    }

    @Test
    void prunedFfnHoldsTheKeptRowsAndColumns() {
        DenseFfn ffn = (DenseFfn) dense.feedForward(0);
        int[] kept = {3, 17, 40};
        DenseFfn p = Pruning.prune(ffn, kept, null);
        int d = ffn.down().rows(), f = ffn.intermediateSize();
        assertArrayEquals(new long[] {3, d}, p.gate().shape());
        assertArrayEquals(new long[] {d, 3}, p.down().shape());
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < d; k++) {
                assertEquals(ffn.gate().getFloat((long) kept[r] * d + k), p.gate().getFloat((long) r * d + k));
                assertEquals(ffn.up().getFloat((long) kept[r] * d + k), p.up().getFloat((long) r * d + k));
                assertEquals(ffn.down().getFloat((long) k * f + kept[r]), p.down().getFloat((long) k * 3 + r));
            }
        assertThrows(IllegalArgumentException.class, () -> Pruning.prune(ffn, new int[] {5, 5}, null));
    }
}
