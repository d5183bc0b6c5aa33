package dive.convert;

import dive.backend.Backends;
import dive.model.DenseFfn;
import dive.model.LlamaModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** CMoE calibration and carving on the tiny_bpe fixture (hidden 64, FFN 48, 2 layers). */
class CmoeModelTest {
    static final Path MODEL = Path.of("src/test/resources/llama/tiny_bpe");
    static LlamaModel dense;
    static List<int[]> windows = new ArrayList<>();

    @BeforeAll
    static void load() throws Exception {
        dense = LlamaModel.load(MODEL, Backends.create("vector"));
        Random random = new Random(17);
        for (int w = 0; w < 4; w++) windows.add(random.ints(32, 0, dense.config().vocabSize()).toArray());
    }

    @AfterAll
    static void close() throws Exception { dense.close(); }

    @Test
    void collectMarksTheTopChannelsOfTheDenseIntermediate() {
        CmoeActivations[] acts = CmoeActivations.collect(dense, windows, 10, done -> {});
        assertEquals(2, acts.length);
        List<List<double[]>> h = ExpertReconstructionTest.intermediates(dense, windows);  // one window per forward
        for (int l = 0; l < acts.length; l++) {
            assertEquals(128, acts[l].tokens());
            CmoeActivations expected = new CmoeActivations(48, 10);
            for (double[] row : h.get(l)) {
                float[] f = new float[row.length];
                for (int j = 0; j < f.length; j++) f[j] = (float) row[j];
                expected.addScores(f, 1);
            }
            int differ = 0;  // batched and per-window forwards round differently: allow a rare near-tie to flip
            for (int n = 0; n < 128; n++) if (!Arrays.equals(expected.markers(n), acts[l].markers(n))) differ++;
            assertTrue(differ <= 2, "layer " + l + ": " + differ + " tokens marked differently");
        }
    }

    @Test
    void carvingEveryLayerIsAPartitionWithUnitRouterRowsAndDeterministic() {
        CmoeSettings settings = CmoeSettings.fromName("S2A2E8", 48);  // slices of 6: shared 12, 6 routed experts, top-2
        CmoeCarving.Result a = CmoeCarving.carve(dense, CmoeActivations.collect(dense, windows, 10, done -> {}), settings);
        CmoeCarving.Result b = CmoeCarving.carve(dense, CmoeActivations.collect(dense, windows, 10, done -> {}), settings);
        assertArrayEquals(a.layers(), b.layers());
        for (int l = 0; l < 2; l++) {
            CmoeLayer layer = a.layers()[l];
            assertEquals(12, layer.sharedWidth());
            assertEquals(6, layer.numExperts());
            int[] all = layer.shared().clone();
            for (int[] e : layer.experts()) {
                assertEquals(6, e.length);
                all = java.util.stream.IntStream.concat(Arrays.stream(all), Arrays.stream(e)).toArray();
            }
            Arrays.sort(all);
            for (int j = 0; j < 48; j++) assertEquals(j, all[j]);
            // router row e = the representative's W_gate row, unit norm
            float[] gate = ((DenseFfn) dense.feedForward(l)).gate().toFloatArray();
            for (int e = 0; e < 6; e++) {
                int rep = layer.representatives()[e];
                double norm = 0;
                for (int i = 0; i < 64; i++) norm += (double) gate[rep * 64 + i] * gate[rep * 64 + i];
                for (int i = 0; i < 64; i++) assertEquals(gate[rep * 64 + i] / Math.sqrt(norm), layer.routerGate()[e * 64 + i], 1e-6);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> CmoeCarving.carve(dense, new CmoeActivations[1], settings));
    }
}
