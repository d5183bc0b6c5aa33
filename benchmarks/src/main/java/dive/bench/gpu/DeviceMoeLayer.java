package dive.bench.gpu;

import dive.bindings.dive_h;

import java.lang.foreign.MemorySegment;

import static dive.bench.gpu.Gpu.check;

/**
 * The sparse MoE feed-forward layer, device-resident from input to output, on dive.h and cuBLAS (the vLLM / MegaBlocks
 * shape, no host sync anywhere):
 * <pre>
 *   x (n, H) F32 ─f32_to_bf16─▶ xb (n, H) bf16
 *   router GEMM (cuBLAS):      logits (n, E) F32 = xb · routerᵀ                  router (E, H) bf16
 *   route_topk:                expertIds, expertWeights (n, k)
 *   sort_by_expert:            offsets (E + 1), rowToken (n·k), slotRow (n, k)
 *   gather_rows (bf16):        xs (n·k, H) = xb[rowToken]
 *   grouped gate, grouped up:  gate, up (n·k, I) F32                              w1, w3 (E, I, H) bf16
 *   swiglu:                    gate = SiLU(gate) · up
 *   f32_to_bf16:               hb (n·k, I) bf16
 *   grouped down:              expertOut (n·k, H) F32                             w2 (E, H, I) bf16
 *   combine_experts:           y (n, H) F32 = Σ_s expertWeights[t, s] · expertOut[slotRow[t, s]]
 * </pre>
 * Weights are random bf16 from a seed; scratch is sized for {@code maxTokens}. All device memory belongs to the
 * {@link Gpu} it was made with.
 */
public final class DeviceMoeLayer {
    /** the dive.h functions this layer launches */
    public static final String[] KERNELS = {"dive_f32_to_bf16", "dive_route_topk", "dive_sort_by_expert", "dive_gather_rows",
            "dive_grouped_matmul_bf16", "dive_swiglu", "dive_combine_experts"};

    public final int hidden, expertWidth, numExperts, topK, maxTokens;
    private final Gpu gpu;
    // weights, bf16
    public final MemorySegment router, w1, w3, w2;
    // scratch
    final MemorySegment xb, logits, expertIds, expertWeights, offsets, rowToken, slotRow, badAssignment, xs, gate, up, hb, expertOut;

    /** random weights uniform in ±1/sqrt(fan-in), so activations keep their scale */
    public DeviceMoeLayer(Gpu gpu, int hidden, int expertWidth, int numExperts, int topK, int maxTokens, long seed) {
        this(gpu, hidden, expertWidth, numExperts, topK, maxTokens,
                gpu.randomBf16((long) numExperts * hidden, (float) (1 / Math.sqrt(hidden)), seed, "router (E, H)"),
                gpu.randomBf16((long) numExperts * expertWidth * hidden, (float) (1 / Math.sqrt(hidden)), seed + 1, "w1 (E, I, H)"),
                gpu.randomBf16((long) numExperts * expertWidth * hidden, (float) (1 / Math.sqrt(hidden)), seed + 2, "w3 (E, I, H)"),
                gpu.randomBf16((long) numExperts * hidden * expertWidth, (float) (1 / Math.sqrt(expertWidth)), seed + 3, "w2 (E, H, I)"));
    }

    /** given device weights: router (E, H), w1 and w3 (E, I, H), w2 (E, H, I), all bf16 */
    public DeviceMoeLayer(Gpu gpu, int hidden, int expertWidth, int numExperts, int topK, int maxTokens,
                          MemorySegment router, MemorySegment w1, MemorySegment w3, MemorySegment w2) {
        if (topK < 1 || topK > numExperts || numExperts > 256)
            throw new IllegalArgumentException("MoE layer: top-k " + topK + " of " + numExperts + " experts: expected 1 ≤ k ≤ E ≤ 256");
        this.gpu = gpu;
        this.hidden = hidden;
        this.expertWidth = expertWidth;
        this.numExperts = numExperts;
        this.topK = topK;
        this.maxTokens = maxTokens;
        this.router = router;
        this.w1 = w1;
        this.w3 = w3;
        this.w2 = w2;
        long n = maxTokens, rows = n * topK;
        xb = gpu.alloc(n * hidden * 2, "xb (n, H) bf16");
        logits = gpu.alloc(n * numExperts * 4, "routerLogits (n, E)");
        expertIds = gpu.alloc(rows * 4, "expertIds (n, k)");
        expertWeights = gpu.alloc(rows * 4, "expertWeights (n, k)");
        offsets = gpu.alloc((numExperts + 1L) * 4, "offsets (E + 1)");
        rowToken = gpu.alloc(rows * 4, "rowToken (n·k)");
        slotRow = gpu.alloc(rows * 4, "slotRow (n, k)");
        badAssignment = gpu.alloc(4, "badAssignment");
        xs = gpu.alloc(rows * hidden * 2, "xs (n·k, H) bf16");
        gate = gpu.alloc(rows * expertWidth * 4, "gate (n·k, I)");
        up = gpu.alloc(rows * expertWidth * 4, "up (n·k, I)");
        hb = gpu.alloc(rows * expertWidth * 2, "hb (n·k, I) bf16");
        expertOut = gpu.alloc(rows * hidden * 4, "expertOut (n·k, H)");
    }

    /** y (n, H) F32 = MoE(x (n, H) F32), launched on the Gpu's stream; returns without waiting */
    public void forward(MemorySegment y, MemorySegment x, int n) {
        if (n < 1 || n > maxTokens) throw new IllegalArgumentException("MoE layer: " + n + " tokens, expected 1.." + maxTokens);
        MemorySegment s = gpu.stream;
        int rows = n * topK;
        check(dive_h.dive_f32_to_bf16(xb, x, (long) n * hidden, s), "f32_to_bf16 x");
        gpu.matmulBf16(logits, xb, router, n, numExperts, hidden);
        check(dive_h.dive_route_topk(expertIds, expertWeights, logits, n, numExperts, topK, s), "route_topk");
        check(dive_h.dive_sort_by_expert(offsets, rowToken, slotRow, badAssignment, expertIds, n, topK, numExperts, s), "sort_by_expert");
        check(dive_h.dive_gather_rows(xs, xb, rowToken, rows, hidden, 2, s), "gather_rows xs");
        check(dive_h.dive_grouped_matmul_bf16(gate, xs, offsets, w1, MemorySegment.NULL, numExperts, rows, expertWidth, hidden, s), "grouped gate");
        check(dive_h.dive_grouped_matmul_bf16(up, xs, offsets, w3, MemorySegment.NULL, numExperts, rows, expertWidth, hidden, s), "grouped up");
        check(dive_h.dive_swiglu(gate, gate, up, (long) rows * expertWidth, s), "swiglu");
        check(dive_h.dive_f32_to_bf16(hb, gate, (long) rows * expertWidth, s), "f32_to_bf16 h");
        check(dive_h.dive_grouped_matmul_bf16(expertOut, hb, offsets, w2, MemorySegment.NULL, numExperts, rows, hidden, expertWidth, s), "grouped down");
        check(dive_h.dive_combine_experts(y, expertOut, slotRow, expertWeights, n, topK, hidden, s), "combine_experts");
    }

    /** matmul FLOPs of one forward over n tokens (router + 3 expert matmuls), 2 per multiply-add */
    public long flop(int n) {
        return 2L * n * hidden * numExperts + 2L * n * topK * 3L * expertWidth * hidden;
    }

    /** the offsets (E + 1) of the last forward (synchronises) */
    public int[] lastOffsets() { return gpu.readInts(offsets, numExperts + 1, "offsets"); }

    /** the expert ids (n, k) of the last forward (synchronises) */
    public int[] lastExpertIds(int n) { return gpu.readInts(expertIds, n * topK, "expertIds"); }

    /** −1, or the first (token·k + slot) whose expert id was out of range, of the last forward (synchronises) */
    public int lastBadAssignment() { return gpu.readInts(badAssignment, 1, "badAssignment")[0]; }
}
