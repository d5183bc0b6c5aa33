package dive.backend;

import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static dive.backend.VectorBackendTest.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The MoE training ops of {@link VectorBackend} against {@link ScalarBackend} on odd shapes (d not a multiple of the
 * vector width, k = 1, 2, E): {@link Backend#combineExpertsBackward} into NaN-poisoned outputs with NaN guard cells,
 * and {@link Backend#scatterAddRows} accumulating into the same random start (several rows per destination, a
 * destination never hit). A hand example pins the scalar reference itself; each op runs twice (determinism).
 */
class MoeBackwardParityTest {
    private final ScalarBackend scalar = new ScalarBackend();
    private final VectorBackend vector = new VectorBackend(2);
    private final Random r = new Random(13);

    /** a random (token, slot) → row permutation as sortByExpert makes, from random expert ids */
    int[] slotRows(int n, int k, int experts) {
        int[] ids = new int[n * k];
        for (int t = 0; t < n; t++) {
            int[] perm = new int[experts];
            for (int e = 0; e < experts; e++) perm[e] = e;
            for (int e = experts - 1; e > 0; e--) { int j = r.nextInt(e + 1), tmp = perm[e]; perm[e] = perm[j]; perm[j] = tmp; }
            System.arraycopy(perm, 0, ids, t * k, k);
        }
        int[] offsets = new int[experts + 1], rowToken = new int[n * k], slotRow = new int[n * k];
        scalar.sortByExpert(offsets, rowToken, slotRow, ids, n, k, experts);
        return slotRow;
    }

    @Test
    void combineExpertsBackwardHandExample() {
        // N = 1, k = 2, d = 2: rows (1, 2) and (3, 4), slot 0 → row 1, slot 1 → row 0, weights 0.25, 0.75, dy = (1, −1)
        float[] dExpertOut = new float[4], dWeights = new float[2];
        scalar.combineExpertsBackward(dExpertOut, dWeights, new float[] {1, -1}, new float[] {1, 2, 3, 4}, new int[] {1, 0},
                new float[] {0.25f, 0.75f}, 1, 2, 2);
        assertArrayEquals(new float[] {0.75f, -0.75f, 0.25f, -0.25f}, dExpertOut);
        assertArrayEquals(new float[] {3 - 4, 1 - 2}, dWeights);
        float[] x = {1, 1, 1, 1};
        scalar.scatterAddRows(x, new float[] {1, 2, 3, 4, 5, 6}, new int[] {1, 0, 1}, 3, 2);
        assertArrayEquals(new float[] {4, 5, 1 + 1 + 5, 1 + 2 + 6}, x);
    }

    @Test
    void combineExpertsBackwardMatchesScalar() {
        int[][] shapes = {{1, 1, 3, 5}, {7, 2, 4, 17}, {33, 2, 8, 48}, {130, 1, 5, 70}, {19, 4, 4, 33}, {300, 2, 8, 21}}; // n, k, E, d
        for (int[] s : shapes) {
            int n = s[0], k = s[1], experts = s[2], d = s[3];
            int[] slotRow = slotRows(n, k, experts);
            float[] dy = random(r, n * d, 1), expertOut = random(r, n * k * d, 1), weights = random(r, n * k, 1);
            float[] dOutExpected = new float[n * k * d], dwExpected = new float[n * k];
            scalar.combineExpertsBackward(dOutExpected, dwExpected, dy, expertOut, slotRow, weights, n, k, d);
            float[] dOut = poisoned(n * k * d), dw = poisoned(n * k);
            vector.combineExpertsBackward(dOut, dw, dy, expertOut, slotRow, weights, n, k, d);
            assertClose(dOutExpected, dOut, n * k * d, 1e-6, "dExpertOut " + Arrays.toString(s));
            assertClose(dwExpected, dw, n * k, 1e-5, "dWeights " + Arrays.toString(s));
            float[] dOut2 = poisoned(n * k * d), dw2 = poisoned(n * k);
            vector.combineExpertsBackward(dOut2, dw2, dy, expertOut, slotRow, weights, n, k, d);
            assertArrayEquals(dOut, dOut2, "deterministic");
            assertArrayEquals(dw, dw2, "deterministic");
        }
    }

    @Test
    void scatterAddRowsMatchesScalarBitForBit() {
        int[][] shapes = {{1, 1, 5}, {9, 4, 17}, {66, 20, 33}, {200, 50, 64}, {7, 3, 1}}; // count, destinations, width
        for (int[] s : shapes) {
            int count = s[0], dest = s[1], width = s[2];
            int[] rows = new int[count];
            for (int i = 0; i < count; i++) rows[i] = r.nextInt(dest - (dest > 1 ? 1 : 0)); // the last destination is never hit (dest > 1)
            float[] src = random(r, count * width, 1), start = random(r, dest * width, 1);
            float[] expected = start.clone(), actual = Arrays.copyOf(start, dest * width + 7);
            Arrays.fill(actual, dest * width, actual.length, Float.NaN);
            scalar.scatterAddRows(expected, src, rows, count, width);
            vector.scatterAddRows(actual, src, rows, count, width);
            assertArrayEquals(expected, Arrays.copyOf(actual, dest * width), "scatterAddRows " + Arrays.toString(s));
            for (int i = dest * width; i < actual.length; i++) assertTrue(Float.isNaN(actual[i]), "written past the end at " + i);
            if (dest > 1) for (int i = (dest - 1) * width; i < dest * width; i++) assertEquals(start[i], actual[i], "untouched row");
        }
    }
}
