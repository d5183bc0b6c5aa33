package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static dive.backend.VectorBackendTest.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The Mixture-of-Experts ops: hand-computed tiny examples on both backends, then parity of {@link VectorBackend} with
 * the plain {@link ScalarBackend} on seeded random inputs (E = 1..8, k = 1, 2, experts with no rows or a single row,
 * shapes that are not multiples of the vector width or GEMM tiles, F32/BF16/F16 weights in heap and unaligned
 * off-heap memory), outputs poisoned with NaN so unwritten elements fail. Tolerances as in {@link VectorBackendTest}.
 */
class MoeOpsTest {
    private final ScalarBackend scalar = new ScalarBackend();
    private final VectorBackend vector = new VectorBackend(2);
    private final CpuBackend[] both = {scalar, vector};

    // ---------------------------------------------------------------- hand examples

    @Test
    void routeTopKHandExample() {
        // token 0: logits (1, 3, 3, 0): the tie between experts 1 and 2 goes to 1 first; weights softmax(3, 3) = ½, ½
        // token 1: logits (0, ln 3, −5, −5): top-2 = (1, 0), weights softmax(ln 3, 0) = (3/4, 1/4)
        // token 2: logits (2, 2, 2, 2): all tie → (0, 1), ½ each
        float ln3 = (float) Math.log(3);
        float[] logits = {1, 3, 3, 0, 0, ln3, -5, -5, 2, 2, 2, 2};
        for (CpuBackend b : both) {
            int[] ids = new int[6];
            float[] w = new float[6];
            b.routeTopK(ids, w, logits, 3, 4, 2);
            assertArrayEquals(new int[] {1, 2, 1, 0, 0, 1}, ids, b.name());
            assertArrayEquals(new float[] {0.5f, 0.5f, 0.75f, 0.25f, 0.5f, 0.5f}, w, 1e-7f, b.name());
            // k = 1: the argmax with weight exactly 1, ties to the lower index
            int[] ids1 = new int[3];
            float[] w1 = new float[3];
            b.routeTopK(ids1, w1, logits, 3, 4, 1);
            assertArrayEquals(new int[] {1, 1, 0}, ids1, b.name());
            assertArrayEquals(new float[] {1, 1, 1}, w1, b.name());
        }
    }

    @Test
    void routeTopKEqualsSoftmaxThenRenormalise() {
        // Mixtral: p = softmax(z over all E), take the top k, divide by their sum; computed here in double
        Random r = new Random(3);
        int n = 50, E = 8, k = 2;
        float[] z = random(r, n * E, 4f);
        for (CpuBackend b : both) {
            int[] ids = new int[n * k];
            float[] w = new float[n * k];
            b.routeTopK(ids, w, z, n, E, k);
            for (int t = 0; t < n; t++) {
                double[] p = new double[E];
                double sum = 0;
                for (int e = 0; e < E; e++) sum += p[e] = Math.exp(z[t * E + e]);
                Integer[] order = new Integer[E];
                for (int e = 0; e < E; e++) order[e] = e;
                final int tt = t;
                Arrays.sort(order, (a, c) -> Float.compare(z[tt * E + c], z[tt * E + a]));
                double top = p[order[0]] / sum + p[order[1]] / sum;
                for (int s = 0; s < k; s++) {
                    assertEquals((int) order[s], ids[t * k + s], b.name() + " token " + t);
                    assertEquals(p[order[s]] / sum / top, w[t * k + s], 1e-6, b.name() + " token " + t);
                }
            }
        }
    }

    @Test
    void sortByExpertHandExample() {
        // N = 3, k = 2, E = 4: t0 → (2, 0), t1 → (0, 1), t2 → (2, 1); expert 3 gets nothing
        int[] ids = {2, 0, 0, 1, 2, 1};
        for (CpuBackend b : both) {
            int[] offsets = new int[5], rowToken = new int[6], slotRow = new int[6];
            b.sortByExpert(offsets, rowToken, slotRow, ids, 3, 2, 4);
            assertArrayEquals(new int[] {0, 2, 4, 6, 6}, offsets);
            assertArrayEquals(new int[] {0, 1, 1, 2, 0, 2}, rowToken);   // e0: t0, t1; e1: t1, t2; e2: t0, t2
            assertArrayEquals(new int[] {4, 0, 1, 2, 5, 3}, slotRow);    // (t, s) → permuted row
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> b.sortByExpert(offsets, rowToken, slotRow, new int[] {0, 4}, 1, 2, 4));
            assertTrue(e.getMessage().contains("token 0 slot 1") && e.getMessage().contains("0 ≤ id < 4"), e.getMessage());
        }
    }

    @Test
    void gatherGroupedMatmulCombineHandExample() {
        // d = 2, 2 experts of width 3; w0 = [[1,0],[0,1],[1,1]], w1 = [[2,0],[0,0],[1,−1]], bias1 = (10, 20, 30)
        Tensor w0 = Tensor.ofFloats("w0", new float[] {1, 0, 0, 1, 1, 1}, 3, 2);
        Tensor w1 = Tensor.ofFloats("w1", new float[] {2, 0, 0, 0, 1, -1}, 3, 2);
        Tensor b1 = Tensor.ofFloats("b1", new float[] {10, 20, 30}, 3);
        float[] x = {1, 2, 3, 4, 5, 6};             // rows: expert 0 owns row 0, expert 1 rows 1..2
        for (CpuBackend b : both) {
            float[] out = new float[9];
            b.groupedMatmul(out, x, new int[] {0, 1, 3}, new Tensor[] {w0, w1}, new Tensor[] {null, b1});
            // row 0 · w0ᵀ = (1, 2, 3); row (3,4) · w1ᵀ + b = (6+10, 0+20, −1+30); row (5,6) → (10+10, 20, −1+30)
            assertArrayEquals(new float[] {1, 2, 3, 16, 20, 29, 20, 20, 29}, out, b.name());
            float[] g = new float[4];
            b.gather(g, x, new int[] {2, 0}, 2, 2);
            assertArrayEquals(new float[] {5, 6, 1, 2}, g, b.name());
            // y[t] = Σ_s w[t,s] · rows[slotRow[t,s]]: token 0 = 0.75·row 1 + 0.25·row 0; token 1 = 1·row 2
            float[] rows = {1, 2, 3, 4, 5, 6};
            float[] y = new float[4];
            b.combineExperts(y, rows, new int[] {1, 0, 2, 2}, new float[] {0.75f, 0.25f, 1f, 0f}, 2, 2, 2);
            assertArrayEquals(new float[] {0.75f * 3 + 0.25f * 1, 0.75f * 4 + 0.25f * 2, 5, 6}, y, b.name());
        }
    }

    @Test
    void groupedMatmulChecksShapes() {
        Tensor a = Tensor.ofFloats("experts.0.w1", new float[6], 3, 2), c = Tensor.ofFloats("experts.1.w1", new float[8], 4, 2);
        for (CpuBackend b : both) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> b.groupedMatmul(new float[12], new float[4], new int[] {0, 1, 2}, new Tensor[] {a, c}, null));
            assertTrue(e.getMessage().contains("experts.1.w1") && e.getMessage().contains("[3, 2]"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> b.groupedMatmul(new float[12], new float[4], new int[] {0, 1}, new Tensor[] {a, a}, null));
            assertTrue(e.getMessage().contains("offsets"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> b.routeTopK(new int[2], new float[2], new float[4], 1, 4, 5));
            assertTrue(e.getMessage().contains("k = 5"), e.getMessage());
        }
    }

    // ---------------------------------------------------------------- parity on random inputs

    /** the whole MoE pipeline on one backend; returns {routerIds, weights, offsets, gate, down, y} pieces for comparison */
    private record Result(int[] ids, float[] weights, int[] offsets, int[] rowToken, int[] slotRow, float[] gate, float[] up,
                          float[] down, float[] y) {}

    private static Result run(CpuBackend b, float[] xn, int n, int d, Tensor router, Tensor[] w1, Tensor[] w3, Tensor[] w2,
                              Tensor[] bias, int k) {
        int E = router.rows(), ffn = w1[0].rows(), R = n * k;
        float[] logits = new float[n * E];   // router logits by the reference matmul on both backends (matmul parity
        new ScalarBackend().matmul(logits, xn, n, router); // is VectorBackendTest's; near-ties must not flip here)
        int[] ids = new int[n * k];
        float[] weights = poisoned(n * k);
        b.routeTopK(ids, weights, logits, n, E, k);
        int[] offsets = new int[E + 1], rowToken = new int[R], slotRow = new int[R];
        b.sortByExpert(offsets, rowToken, slotRow, ids, n, k, E);
        float[] xs = poisoned(R * d);
        b.gather(xs, xn, rowToken, R, d);
        float[] gate = poisoned(R * ffn), up = poisoned(R * ffn), down = poisoned(R * d), y = poisoned(n * d);
        b.groupedMatmul(gate, xs, offsets, w1, null);
        b.groupedMatmul(up, xs, offsets, w3, null);
        float[] act = new float[R * ffn];
        b.swiglu(act, gate, up, R * ffn);
        b.groupedMatmul(down, act, offsets, w2, bias);
        b.combineExperts(y, down, slotRow, weights, n, k, d);
        return new Result(ids, weights, offsets, rowToken, slotRow, gate, up, down, y);
    }

    @Test
    void pipelineMatchesScalarAcrossShapesDtypesAndEmptyExperts() {
        Random r = new Random(11);
        int[][] nd = {{1, 19}, {3, 40}, {5, 8}, {37, 33}, {130, 48}};
        int[] ffns = {21, 40};
        for (int E = 1; E <= 8; E++) {
            for (int k = 1; k <= Math.min(2, E); k++) {
                for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                    Storage storage = (E + k) % 2 == 0 ? Storage.HEAP : Storage.OFF_HEAP_UNALIGNED;
                    int[] shape = nd[(E + k) % nd.length];
                    int n = shape[0], d = shape[1], ffn = ffns[E % 2];
                    float[] routerValues = random(r, E * d, 1f);
                    if (E >= 3) for (int i = 0; i < d; i++) routerValues[(E - 1) * d + i] = 0; // the last expert ...
                    float[] xn = random(r, n * d, 1f);
                    for (int t = 0; t < n && E >= 3; t++) {   // ... loses to a constant logit: it gets no tokens
                        xn[t * d] = 1;
                        routerValues[0] = 50; routerValues[d] = 40;
                    }
                    Tensor router = weight("router", DType.F32, storage, routerValues, E, d);
                    Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E], bias = new Tensor[E];
                    for (int e = 0; e < E; e++) {
                        w1[e] = weight("w1." + e, dtype, storage, random(r, ffn * d, 0.5f), ffn, d);
                        w3[e] = weight("w3." + e, dtype, storage, random(r, ffn * d, 0.5f), ffn, d);
                        w2[e] = weight("w2." + e, dtype, storage, random(r, d * ffn, 0.5f), d, ffn);
                        bias[e] = e % 2 == 0 ? weight("b." + e, dtype, storage, random(r, d, 1f), d) : null;
                    }
                    String what = "E=" + E + " k=" + k + " " + dtype + " " + storage + " n=" + n + " d=" + d + " ffn=" + ffn;
                    Result s = run(scalar, xn, n, d, router, w1, w3, w2, bias, k);
                    Result v = run(vector, xn, n, d, router, w1, w3, w2, bias, k);
                    if (E >= 3) assertEquals(s.offsets[E - 1], s.offsets[E], what + ": the last expert should get no rows");
                    assertArrayEquals(s.ids, v.ids, what + " routing");
                    assertArrayEquals(s.offsets, v.offsets, what);
                    assertArrayEquals(s.rowToken, v.rowToken, what);
                    assertClose(s.weights, v.weights, n * k, 1e-6, what + " weights");
                    assertClose(s.gate, v.gate, n * k * ffn, 1e-5, what + " gate");
                    assertClose(s.up, v.up, n * k * ffn, 1e-5, what + " up");
                    assertClose(s.down, v.down, n * k * d, 1e-5, what + " down");
                    assertClose(s.y, v.y, n * d, 1e-5, what + " y");
                }
            }
        }
    }

    /**
     * the grouped matmul equals one plain matmul per expert on that expert's rows: close to the scalar reference, and
     * the same bits as the vector backend's own matmul (on 2 and 3 threads)
     */
    @Test
    void groupedMatmulEqualsPerExpertMatmul() {
        Random r = new Random(5);
        int E = 5, k = 70, n = 45;
        int[] counts = {0, 1, 3, 4, 29};    // empty, GEMV (1 and 3 rows), smallest GEMM, a few row tiles
        int[] offsets = new int[E + 1];
        for (int e = 0; e < E; e++) offsets[e + 1] = offsets[e] + counts[e];
        int R = offsets[E];
        float[] x = random(r, R * k, 1f);
        for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
            Tensor[] w = new Tensor[E];
            for (int e = 0; e < E; e++) w[e] = weight("w" + e, dtype, Storage.OFF_HEAP_UNALIGNED, random(r, n * k, 1f), n, k);
            float[] expected = new float[R * n], perExpert = new float[R * n];
            for (int e = 0; e < E; e++) {
                if (counts[e] == 0) continue;
                float[] rows = Arrays.copyOfRange(x, offsets[e] * k, offsets[e + 1] * k), part = new float[counts[e] * n];
                scalar.matmul(part, rows, counts[e], w[e]);
                System.arraycopy(part, 0, expected, offsets[e] * n, part.length);
                vector.matmul(part, rows, counts[e], w[e]);
                System.arraycopy(part, 0, perExpert, offsets[e] * n, part.length);
            }
            for (VectorBackend b : new VectorBackend[] {vector, new VectorBackend(3)}) {
                float[] out = poisoned(R * n);
                b.groupedMatmul(out, x, offsets, w, null);
                assertClose(expected, out, R * n, 1e-5, dtype + " " + b.name());
                assertArrayEquals(perExpert, Arrays.copyOf(out, R * n), "grouped and per-expert GEMM sum in the same order: same bits, " + b.name());
            }
        }
    }

    /**
     * groupedMatmul2 (gate and up in one grouped GEMM, x's rows read through xRows) equals a plain matmul per expert and
     * weight on the gathered rows (the scalar reference); on the vector backend it gives the same bits as gather + two
     * groupedMatmul calls, on 1, 2 and 3 threads; bad arguments are refused by name
     */
    @Test
    void groupedMatmul2EqualsGatherAndTwoGroupedMatmuls() {
        Random r = new Random(6);
        int E = 4, k = 300, n = 70, tokens = 40;    // k > KC: several depth blocks
        int[] counts = {2, 0, 13, 45};              // GEMV, empty, a partial row panel, several panels
        int[] offsets = new int[E + 1];
        for (int e = 0; e < E; e++) offsets[e + 1] = offsets[e] + counts[e];
        int R = offsets[E];
        float[] x = random(r, tokens * k, 1f);
        int[] xRows = new int[R];                   // rows repeat, as with top-2 routing
        for (int i = 0; i < R; i++) xRows[i] = r.nextInt(tokens);
        float[] xs = new float[R * k];
        for (int i = 0; i < R; i++) System.arraycopy(x, xRows[i] * k, xs, i * k, k);
        Tensor[] gate = new Tensor[E], up = new Tensor[E];
        for (int e = 0; e < E; e++) {
            gate[e] = weight("gate" + e, DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, n * k, 1f), n, k);
            up[e] = weight("up" + e, DType.BF16, Storage.HEAP, random(r, n * k, 1f), n, k);
        }
        float[][] expected = new float[2][R * n];
        Tensor[][] ws = {gate, up};
        for (int s = 0; s < 2; s++)
            for (int e = 0; e < E; e++) {
                if (counts[e] == 0) continue;
                float[] part = new float[counts[e] * n];
                scalar.matmul(part, Arrays.copyOfRange(xs, offsets[e] * k, offsets[e + 1] * k), counts[e], ws[s][e]);
                System.arraycopy(part, 0, expected[s], offsets[e] * n, part.length);
            }
        float[] separateGate = poisoned(R * n), separateUp = poisoned(R * n);
        vector.groupedMatmul(separateGate, xs, offsets, gate, null);
        vector.groupedMatmul(separateUp, xs, offsets, up, null);
        for (CpuBackend b : new CpuBackend[] {scalar, vector, new VectorBackend(1), new VectorBackend(3)}) {
            float[] outGate = poisoned(R * n), outUp = poisoned(R * n);
            b.groupedMatmul2(outGate, outUp, x, xRows, offsets, gate, up);
            assertClose(expected[0], outGate, R * n, 1e-5, "gate " + b.name());
            assertClose(expected[1], outUp, R * n, 1e-5, "up " + b.name());
            if (b instanceof VectorBackend) {
                assertArrayEquals(separateGate, outGate, "gate: same bits as gather + groupedMatmul, " + b.name());
                assertArrayEquals(separateUp, outUp, "up: same bits as gather + groupedMatmul, " + b.name());
            }
        }
        Tensor[] narrow = new Tensor[E];
        for (int e = 0; e < E; e++) narrow[e] = weight("narrow" + e, DType.F32, Storage.HEAP, random(r, (n - 1) * k, 1f), n - 1, k);
        for (CpuBackend b : both) {
            IllegalArgumentException error = assertThrows(IllegalArgumentException.class,
                    () -> b.groupedMatmul2(new float[R * n], new float[R * n], x, xRows, offsets, gate, narrow));
            assertTrue(error.getMessage().contains("narrow0"), error.getMessage());
            int[] badRows = xRows.clone();
            badRows[R - 1] = tokens;
            error = assertThrows(IllegalArgumentException.class,
                    () -> b.groupedMatmul2(new float[R * n], new float[R * n], x, badRows, offsets, gate, up));
            assertTrue(error.getMessage().contains("xRows[" + (R - 1) + "] = " + tokens), error.getMessage());
        }
    }

    /** same bits for 1 and 3 threads: the work is cut by shape only, sums run in a fixed order */
    @Test
    void vectorResultsDoNotDependOnThreadCount() {
        Random r = new Random(9);
        int n = 300, d = 64, ffn = 96, E = 8, k = 2;
        Tensor router = weight("router", DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, E * d, 1f), E, d);
        Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
        for (int e = 0; e < E; e++) {
            w1[e] = weight("w1." + e, DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, ffn * d, 0.5f), ffn, d);
            w3[e] = weight("w3." + e, DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, ffn * d, 0.5f), ffn, d);
            w2[e] = weight("w2." + e, DType.F32, Storage.OFF_HEAP_UNALIGNED, random(r, d * ffn, 0.5f), d, ffn);
        }
        float[] xn = random(r, n * d, 1f);
        Result one = run(new VectorBackend(1), xn, n, d, router, w1, w3, w2, null, k);
        Result three = run(new VectorBackend(3), xn, n, d, router, w1, w3, w2, null, k);
        assertArrayEquals(one.y, three.y);
        assertArrayEquals(one.down, three.down);
        // and the combine step is the scalar reference's arithmetic exactly (multiply, then add, in slot order)
        float[] ys = new float[n * d];
        scalar.combineExperts(ys, one.down, one.slotRow, one.weights, n, k, d);
        assertArrayEquals(ys, Arrays.copyOf(one.y, n * d));
    }
}
