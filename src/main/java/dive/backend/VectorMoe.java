package dive.backend;

import dive.tensor.Tensor;
import jdk.incubator.vector.FloatVector;

import java.util.Arrays;

import static dive.backend.VectorElementwise.addScaled;
import static dive.backend.VectorMatmul.asGemv;
import static dive.backend.VectorMatmul.MR;
import static dive.backend.VectorMatmul.NR;
import static dive.backend.VectorMatmul.cachedPacked;
import static dive.backend.VectorMatmul.gemmTile;
import static dive.backend.VectorMatmul.gemvRows;
import static dive.backend.VectorSupport.*;

/**
 * The Mixture-of-Experts ops of {@link VectorBackend}: router top-k, the row gather, the grouped expert matmuls (on
 * {@link VectorMatmul}'s GEMV and GEMM tile), the weighted combine and its gradient, and the scatter-add of rows. The
 * CPU twin of native/src/route.cu and moe.cu (the row gather: prune.cu).
 */
final class VectorMoe {
    private VectorMoe() {}

    // Routing and the weighted sum are per-token loops cut into token chunks (by shape only); the grouped
    // matmul runs each expert's row range through the same GEMM / GEMV code as matmul, reading x and
    // writing out in place at the range's offset (no copies of the rows).

    /** tokens per task in routeTopK and combineExperts */
    static final int MOE_TOKENS_PER_TASK = 64;

    static void routeTopK(Workers workers, int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k) {
        MoeChecks.routeTopK(expertIds, expertWeights, routerLogits, n, numExperts, k);
        int tasks = (n + MOE_TOKENS_PER_TASK - 1) / MOE_TOKENS_PER_TASK;
        workers.parallelFor(tasks, (long) n * numExperts * k >= PARALLEL_MIN_FMAS / 4, task -> {
            for (int t = task * MOE_TOKENS_PER_TASK, end = Math.min(n, t + MOE_TOKENS_PER_TASK); t < end; t++)
                routeToken(expertIds, expertWeights, routerLogits, t, numExperts, k);
        });
    }

    /** top-k of one token by repeated selection (k and E are small): strict > keeps the lower index on ties */
    private static void routeToken(int[] expertIds, float[] expertWeights, float[] routerLogits, int t, int numExperts, int k) {
        int row = t * numExperts, out = t * k;
        long taken = 0; // bit e set once expert e is chosen (E ≤ 64); larger E falls back to a scan of chosen ids
        for (int s = 0; s < k; s++) {
            int best = -1;
            for (int e = 0; e < numExperts; e++) {
                if (isTaken(taken, expertIds, out, s, e)) continue;
                if (best < 0 || routerLogits[row + e] > routerLogits[row + best]) best = e;
            }
            if (best < 64) taken |= 1L << best;
            expertIds[out + s] = best;
            expertWeights[out + s] = routerLogits[row + best];
        }
        // softmax over the k chosen logits; the first is the largest (NaN propagates as in the reference)
        float max = expertWeights[out];
        double sum = 0;
        for (int s = 0; s < k; s++) {
            float e = (float) Math.exp(expertWeights[out + s] - max);
            expertWeights[out + s] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (int s = 0; s < k; s++) expertWeights[out + s] *= inv;
    }

    private static boolean isTaken(long taken, int[] expertIds, int out, int chosen, int e) {
        if (e < 64) return (taken & (1L << e)) != 0;
        for (int s = 0; s < chosen; s++) if (expertIds[out + s] == e) return true;
        return false;
    }

    static void gather(Workers workers, float[] out, float[] x, int[] rows, int count, int width) {
        int rowsPerTask = Math.max(1, (1 << 14) / Math.max(1, width)), tasks = (count + rowsPerTask - 1) / rowsPerTask;
        workers.parallelFor(tasks, (long) count * width >= PARALLEL_MIN_FMAS, t -> {
            for (int r = t * rowsPerTask, end = Math.min(count, r + rowsPerTask); r < end; r++)
                System.arraycopy(x, rows[r] * width, out, r * width, width);
        });
    }

    /**
     * Experts whose rows run as GEMV in a plain matmul ({@link VectorMatmul#asGemv}: fewer than
     * {@value VectorMatmul#GEMM_MIN_ROWS} rows, or a few more against a large BF16/F16 expert) run as GEMVs on their rows. The others run as one grouped
     * GEMM ({@link #groupedGemm}: all experts' tiles in a single parallel loop, so a pool hand-off is paid once per
     * call, not once per expert).
     */
    static void groupedMatmul(Workers workers, float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias) {
        MoeChecks.groupedMatmul(out, x, offsets, w, bias);
        groupedMatmuls(workers, new float[][] {out}, x, null, offsets, new Tensor[][] {w}, bias);
    }

    /**
     * Both of the MoE layer's input matmuls in one grouped GEMM, x's rows read in place through xRows (no gathered
     * copy): the tiles of gate and up share one parallel loop (one pool hand-off, and the threads balance over both).
     * Each output gets the same bits as gather + {@link #groupedMatmul}.
     */
    static void groupedMatmul2(Workers workers, float[] outGate, float[] outUp, float[] x, int[] xRows, int[] offsets, Tensor[] wGate, Tensor[] wUp) {
        MoeChecks.groupedMatmul2(outGate, outUp, x, xRows, offsets, wGate, wUp);
        groupedMatmuls(workers, new float[][] {outGate, outUp}, x, xRows, offsets, new Tensor[][] {wGate, wUp}, null);
    }

    /**
     * outs[s] = grouped x · w[s][e]ᵀ (+ bias, only with one set) for each set s of expert weights of one shape (N, K);
     * permuted row r reads x's row r, or x's row xRows[r] where xRows is given
     */
    private static void groupedMatmuls(Workers workers, float[][] outs, float[] x, int[] xRows, int[] offsets, Tensor[][] w, Tensor[] bias) {
        int n = w[0][0].rows(), k = w[0][0].cols(), experts = w[0].length;
        long gemmRows = 0;  // over all sets
        for (int set = 0; set < outs.length; set++)
            for (int e = 0; e < experts; e++) {
                int m = offsets[e + 1] - offsets[e];
                if (m > 0 && !asGemv(m, w[set][e])) gemmRows += m;
            }
        for (int set = 0; set < outs.length; set++)
            for (int e = 0; e < experts; e++) {
                int row0 = offsets[e], m = offsets[e + 1] - row0;
                if (m == 0) continue;
                if (asGemv(m, w[set][e])) {
                    if (xRows == null) {
                        gemvRows(workers, outs[set], x, row0, m, w[set][e], n, k);
                    } else { // a few rows: gathered, multiplied, copied out
                        float[] xs = new float[m * k], part = new float[m * n];
                        for (int r = 0; r < m; r++) System.arraycopy(x, xRows[row0 + r] * k, xs, r * k, k);
                        gemvRows(workers, part, xs, 0, m, w[set][e], n, k);
                        System.arraycopy(part, 0, outs[set], row0 * n, m * n);
                    }
                }
            }
        if (gemmRows > 0) groupedGemm(workers, outs, x, xRows, offsets, w, n, k, gemmRows);
        for (int e = 0; e < experts; e++) {
            int row0 = offsets[e], m = offsets[e + 1] - row0;
            if (m > 0 && bias != null && bias[e] != null) addBiasRows(outs[0], row0, m, bias[e], n);
        }
    }

    /** rows of x per grouped-GEMM task (32 micro-kernel panels) */
    static final int GROUPED_TILE_ROWS = 32 * MR;

    /**
     * The GEMM experts (those not {@link VectorMatmul#asGemv}) of one or more grouped matmuls over the same x in one go, x's
     * rows read in place (row r, or row xRows[r] where given). Tasks: (set, expert, row tile, column tile), by shape
     * only; each packs the panels of its expert's w that it uses as it goes, as in {@link VectorMatmul#gemm} (small read-only
     * experts come packed whole from {@link PackedWeights}), and every output element is summed in the same order as
     * there, so the bits equal a plain matmul's on the expert's rows.
     */
    private static void groupedGemm(Workers workers, float[][] outs, float[] x, int[] xRows, int[] offsets, Tensor[][] w, int n, int k, long gemmRows) {
        int sets = outs.length, experts = w[0].length;
        boolean parallel = gemmRows * n * k >= PARALLEL_MIN_FMAS;
        float[][] cached = new float[sets * experts][]; // small read-only experts: packed whole, from the cache
        boolean[] gemv = new boolean[sets * experts];
        for (int g = 0; g < sets * experts; g++) {
            int m = offsets[g % experts + 1] - offsets[g % experts];
            gemv[g] = m == 0 || asGemv(m, w[g / experts][g % experts]);
            if (!gemv[g]) cached[g] = cachedPacked(w[g / experts][g % experts], n, k);
        }
        // tasks: (set, expert, row tile, column tile); group g = set · experts + e
        int nc = 4 * NR, nTiles = (n + nc - 1) / nc, groups = sets * experts;
        int[] taskStart = new int[groups + 1];
        for (int g = 0; g < groups; g++) {
            int e = g % experts, m = offsets[e + 1] - offsets[e];
            int mTiles = gemv[g] ? 0 : (m + GROUPED_TILE_ROWS - 1) / GROUPED_TILE_ROWS;
            taskStart[g + 1] = taskStart[g] + mTiles * nTiles;
        }
        // largest tiles first (longest-processing-time order), so no thread is left with a big tile at the end;
        // the order changes only which thread computes a tile, never the tile's bits
        int tasks = taskStart[groups];
        Integer[] bySize = new Integer[tasks];
        long[] tileRows = new long[tasks];
        for (int g = 0; g < groups; g++)
            for (int task = taskStart[g]; task < taskStart[g + 1]; task++) {
                int e = g % experts, mt = (task - taskStart[g]) / nTiles, m = offsets[e + 1] - offsets[e];
                tileRows[task] = Math.min(m, (mt + 1) * GROUPED_TILE_ROWS) - mt * GROUPED_TILE_ROWS;
                bySize[task] = task;
            }
        Arrays.sort(bySize, (a, b) -> tileRows[a] != tileRows[b] ? Long.compare(tileRows[b], tileRows[a]) : Integer.compare(a, b));
        workers.parallelFor(tasks, parallel, i -> {
            int task = bySize[i], g = 0;
            while (taskStart[g + 1] <= task) g++;
            int e = g % experts, local = task - taskStart[g], mt = local / nTiles, nt = local % nTiles;
            int row0 = offsets[e], m = offsets[e + 1] - row0;
            int m0 = row0 + mt * GROUPED_TILE_ROWS, m1 = row0 + Math.min(m, (mt + 1) * GROUPED_TILE_ROWS);
            gemmTile(outs[g / experts], n, 0, 0, x, 0, k, xRows, cached[g], cached[g] == null ? w[g / experts][e] : null, false, k, m0, m1, nt * nc, Math.min(n, nt * nc + nc), false);
        });
    }

    /** out rows [row0, row0+m) += bias (N) */
    private static void addBiasRows(float[] out, int row0, int m, Tensor bias, int n) {
        float[] b = new float[n];
        widen(bias, 0, b, 0, n);
        int upper = n - n % L;
        for (int r = row0; r < row0 + m; r++) {
            int o = r * n, i = 0;
            for (; i < upper; i += L) FloatVector.fromArray(F, out, o + i).add(FloatVector.fromArray(F, b, i)).intoArray(out, o + i);
            for (; i < n; i++) out[o + i] += b[i];
        }
    }

    static void combineExperts(Workers workers, float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d) {
        int tasks = (n + MOE_TOKENS_PER_TASK - 1) / MOE_TOKENS_PER_TASK;
        int upper = d - d % L;
        workers.parallelFor(tasks, (long) n * k * d >= PARALLEL_MIN_FMAS, task -> {
            for (int t = task * MOE_TOKENS_PER_TASK, end = Math.min(n, t + MOE_TOKENS_PER_TASK); t < end; t++) {
                int o = t * d, i = 0;
                // slot order, multiply then add (no FMA): the same roundings as the scalar reference
                for (; i < upper; i += L) {
                    FloatVector acc = FloatVector.zero(F);
                    for (int s = 0; s < k; s++)
                        acc = acc.add(FloatVector.fromArray(F, expertOut, slotRow[t * k + s] * d + i).mul(expertWeights[t * k + s]));
                    acc.intoArray(y, o + i);
                }
                for (; i < d; i++) {
                    float acc = 0f;
                    for (int s = 0; s < k; s++) acc += expertWeights[t * k + s] * expertOut[slotRow[t * k + s] * d + i];
                    y[o + i] = acc;
                }
            }
        });
    }

    /** tokens cut into chunks (by shape only); each (token, slot) owns its row of dExpertOut, so no two tasks write the same place */
    static void combineExpertsBackward(Workers workers, float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                       float[] expertWeights, int n, int k, int d) {
        int tasks = (n + MOE_TOKENS_PER_TASK - 1) / MOE_TOKENS_PER_TASK;
        int upper = d - d % L;
        workers.parallelFor(tasks, (long) n * k * d >= PARALLEL_MIN_FMAS, task -> {
            for (int t = task * MOE_TOKENS_PER_TASK, end = Math.min(n, t + MOE_TOKENS_PER_TASK); t < end; t++) {
                for (int s = 0; s < k; s++) {
                    int r = slotRow[t * k + s], yo = t * d, ro = r * d, i = 0;
                    FloatVector g = FloatVector.broadcast(F, expertWeights[t * k + s]), dot = FloatVector.zero(F);
                    for (; i < upper; i += L) {
                        FloatVector dyv = FloatVector.fromArray(F, dy, yo + i);
                        dyv.mul(g).intoArray(dExpertOut, ro + i);
                        dot = dyv.fma(FloatVector.fromArray(F, expertOut, ro + i), dot);
                    }
                    float acc = sumLanes(dot), gs = expertWeights[t * k + s];
                    for (; i < d; i++) {
                        dExpertOut[ro + i] = gs * dy[yo + i];
                        acc += dy[yo + i] * expertOut[ro + i];
                    }
                    dWeights[t * k + s] = acc;
                }
            }
        });
    }

    /** rows in order (several may add into the same destination row), each row's add vectorized: the scalar reference's roundings */
    static void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width) {
        for (int r = 0; r < count; r++) addScaled(x, rows[r] * width, src, r * width, 1f, width);
    }
}
