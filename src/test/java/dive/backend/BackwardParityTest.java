package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static dive.backend.VectorBackendTest.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The backward ops of {@link VectorBackend} against {@link ScalarBackend} (itself checked by finite
 * differences in {@link BackwardFiniteDifferenceTest}) on seeded random inputs at shapes that are not
 * multiples of the vector width or the GEMM tiles, GQA groups 1, 2 and 4. Overwritten outputs start as
 * NaN with NaN guard cells (an element not written or written past the end fails); accumulated outputs
 * start from the same random contents on both sides. Tolerances as in {@link VectorBackendTest}
 * (relative 1e-5 of max(|value|, rms), longer sums 1e-4); each op also runs twice to check it gives the
 * same bits again (determinism).
 */
class BackwardParityTest {
    private final ScalarBackend scalar = new ScalarBackend();
    private final VectorBackend vector = new VectorBackend(2);
    private final Random r = new Random(7);

    @Test
    void matmulBackwardInputMatchesScalar() {
        int[][] shapes = {{1, 5, 3}, {5, 33, 17}, {17, 70, 45}, {64, 96, 40}, {130, 300, 23}, {3, 1, 9}}; // m, n, k
        for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
            for (Storage storage : Storage.values()) {
                for (int[] s : shapes) {
                    int m = s[0], n = s[1], k = s[2];
                    float[] dy = random(r, m * n, 1);
                    Tensor w = weight("w", dtype, storage, random(r, n * k, 1), n, k);
                    float[] expected = new float[m * k], actual = poisoned(m * k);
                    scalar.matmulBackwardInput(expected, dy, m, w);
                    vector.matmulBackwardInput(actual, dy, m, w);
                    assertClose(expected, actual, m * k, 1e-5, "matmulBackwardInput " + dtype + " " + storage + " " + Arrays.toString(s));
                    float[] again = poisoned(m * k);
                    vector.matmulBackwardInput(again, dy, m, w);
                    assertArrayEquals(actual, again, "deterministic");
                }
            }
        }
    }

    @Test
    void matmulBackwardWeightAccumulatesLikeScalar() {
        int[][] shapes = {{1, 5, 3}, {5, 33, 17}, {17, 70, 45}, {300, 40, 37}, {130, 13, 300}, {7, 1, 1}}; // m, n, k
        for (int[] s : shapes) {
            int m = s[0], n = s[1], k = s[2];
            float[] dy = random(r, m * n, 1), x = random(r, m * k, 1), start = random(r, n * k, 1);
            float[] expected = start.clone(), actual = Arrays.copyOf(start, n * k + 5);
            Arrays.fill(actual, n * k, actual.length, Float.NaN);
            scalar.matmulBackwardWeight(expected, dy, x, m, n, k);
            vector.matmulBackwardWeight(actual, dy, x, m, n, k);
            assertClose(expected, actual, n * k, 1e-5, "matmulBackwardWeight " + Arrays.toString(s));
        }
    }

    @Test
    void rmsNormBackwardMatchesScalar() {
        for (int[] s : new int[][] {{1, 7}, {3, 48}, {37, 100}, {70, 256}}) {
            int rows = s[0], d = s[1];
            float[] x = random(r, rows * d, 2), dy = random(r, rows * d, 1);
            Tensor g = weight("g", DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, d, 1.5f), d);
            float[] dgStart = random(r, d, 1);
            float[] dxE = new float[rows * d], dxA = poisoned(rows * d), dgE = dgStart.clone(), dgA = dgStart.clone();
            scalar.rmsNormBackward(dxE, dgE, dy, x, g, rows, 1e-5f);
            vector.rmsNormBackward(dxA, dgA, dy, x, g, rows, 1e-5f);
            assertClose(dxE, dxA, rows * d, 1e-5, "rmsNorm dx " + Arrays.toString(s));
            assertClose(dgE, dgA, d, 1e-5, "rmsNorm dWeight " + Arrays.toString(s));
            float[] inPlace = dy.clone(); // dx may be dOut
            vector.rmsNormBackward(inPlace, null, inPlace, x, g, rows, 1e-5f);
            assertArrayEquals(Arrays.copyOf(dxA, rows * d), inPlace, "in place");
        }
    }


    @Test
    void ropeBackwardMatchesScalar() {
        int rows = 9, heads = 3, hd = 38;
        int[] pos = new int[rows];
        for (int i = 0; i < rows; i++) pos[i] = 5 * i + 1;
        float[] invFreq = new float[hd / 2];
        for (int i = 0; i < hd / 2; i++) invFreq[i] = (float) Math.pow(10000, -2.0 * i / hd);
        float[] dy = random(r, rows * heads * hd, 1), e = dy.clone(), a = dy.clone();
        scalar.ropeBackward(e, rows, heads, hd, pos, invFreq);
        vector.ropeBackward(a, rows, heads, hd, pos, invFreq);
        assertClose(e, a, e.length, 1e-5, "ropeBackward");
    }

    @Test
    void attentionBackwardMatchesScalarForGqaGroups() {
        for (int[] s : new int[][] {{2, 13, 3, 3, 12}, {3, 9, 4, 2, 8}, {1, 21, 4, 1, 20}, {2, 33, 8, 2, 32}}) {
            int B = s[0], T = s[1], H = s[2], KV = s[3], hd = s[4];
            float scale = (float) (1 / Math.sqrt(hd));
            float[] q = random(r, B * T * H * hd, 2), k = random(r, B * T * KV * hd, 2), v = random(r, B * T * KV * hd, 1);
            float[] dy = random(r, B * T * H * hd, 1);
            float[] dqE = new float[q.length], dkE = new float[k.length], dvE = new float[v.length];
            float[] dqA = poisoned(q.length), dkA = poisoned(k.length), dvA = poisoned(v.length);
            scalar.attentionBackward(dqE, dkE, dvE, dy, q, k, v, B, T, H, KV, hd, scale);
            vector.attentionBackward(dqA, dkA, dvA, dy, q, k, v, B, T, H, KV, hd, scale);
            String what = "attentionBackward " + Arrays.toString(s);
            assertClose(dqE, dqA, q.length, 1e-4, what + " dq");
            assertClose(dkE, dkA, k.length, 1e-4, what + " dk");
            assertClose(dvE, dvA, v.length, 1e-4, what + " dv");
        }
    }

    @Test
    void swigluBackwardMatchesScalar() {
        int n = 1000 + 3;
        float[] gate = random(r, n, 6), up = random(r, n, 2), dy = random(r, n, 1);
        float[] dgE = new float[n], duE = new float[n], dgA = poisoned(n), duA = poisoned(n);
        scalar.swigluBackward(dgE, duE, dy, gate, up, n);
        vector.swigluBackward(dgA, duA, dy, gate, up, n);
        assertClose(dgE, dgA, n, 1e-5, "swiglu dGate");
        assertClose(duE, duA, n, 1e-5, "swiglu dUp");
    }

    @Test
    void embeddingBackwardMatchesScalarExactly() {
        int vocab = 11, d = 19;
        int[] ids = {4, 0, 4, 10, 4, 7};
        float[] dy = random(r, ids.length * d, 1), start = random(r, vocab * d, 1);
        float[] e = start.clone(), a = start.clone();
        scalar.embeddingBackward(e, dy, ids, d);
        vector.embeddingBackward(a, dy, ids, d);
        assertArrayEquals(e, a);
    }

    @Test
    void crossEntropyMatchesScalar() {
        int rows = 37, vocab = 301;
        float[] logits = random(r, rows * vocab, 8);
        int[] targets = new int[rows];
        for (int i = 0; i < rows; i++) targets[i] = i % 5 == 3 ? Backend.IGNORE_INDEX : r.nextInt(vocab);
        float[] e = new float[rows * vocab], a = poisoned(rows * vocab);
        double lossE = scalar.crossEntropy(e, logits, targets, rows, vocab, 0.25f);
        double lossA = vector.crossEntropy(a, logits, targets, rows, vocab, 0.25f);
        assertEquals(lossE, lossA, 1e-6 * lossE);
        assertClose(e, a, rows * vocab, 1e-5, "crossEntropy dLogits");
    }

    @Test
    void addScaledMatchesScalar() {
        int n = 29;
        float[] x = random(r, n, 1), y = random(r, n, 1), e = x.clone(), a = x.clone();
        scalar.addScaled(e, y, -0.3f, n);
        vector.addScaled(a, y, -0.3f, n);
        assertClose(e, a, n, 1e-6, "addScaled");
    }
}
