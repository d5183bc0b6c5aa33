package dive.bench.gpu;

import dive.bindings.dive_h;

import java.lang.foreign.MemorySegment;

import static dive.bench.gpu.Gpu.check;

/**
 * A dense SwiGLU FFN, device-resident, the baseline of {@link DeviceMoeLayer} at the same precision:
 * <pre>
 *   x (n, H) F32 ─f32_to_bf16─▶ xb (n, H) bf16
 *   gate, up (n, F) F32 = xb · w1ᵀ, xb · w3ᵀ     (cuBLAS, bf16 in, F32 accumulate)   w1, w3 (F, H) bf16
 *   gate = SiLU(gate) · up ─f32_to_bf16─▶ hb (n, F) bf16
 *   y (n, H) F32 = hb · w2ᵀ                                                          w2 (H, F) bf16
 * </pre>
 */
public final class DeviceDenseFfn {
    public static final String[] KERNELS = {"dive_f32_to_bf16", "dive_swiglu"};

    public final int hidden, width, maxTokens;
    private final Gpu gpu;
    public final MemorySegment w1, w3, w2;
    private final MemorySegment xb, gate, up, hb;

    public DeviceDenseFfn(Gpu gpu, int hidden, int width, int maxTokens, long seed) {
        this.gpu = gpu;
        this.hidden = hidden;
        this.width = width;
        this.maxTokens = maxTokens;
        w1 = gpu.randomBf16((long) width * hidden, (float) (1 / Math.sqrt(hidden)), seed, "w1 (F, H)");
        w3 = gpu.randomBf16((long) width * hidden, (float) (1 / Math.sqrt(hidden)), seed + 1, "w3 (F, H)");
        w2 = gpu.randomBf16((long) hidden * width, (float) (1 / Math.sqrt(width)), seed + 2, "w2 (H, F)");
        long n = maxTokens;
        xb = gpu.alloc(n * hidden * 2, "xb (n, H) bf16");
        gate = gpu.alloc(n * width * 4, "gate (n, F)");
        up = gpu.alloc(n * width * 4, "up (n, F)");
        hb = gpu.alloc(n * width * 2, "hb (n, F) bf16");
    }

    /** y (n, H) F32 = FFN(x (n, H) F32) on the Gpu's stream; returns without waiting */
    public void forward(MemorySegment y, MemorySegment x, int n) {
        if (n < 1 || n > maxTokens) throw new IllegalArgumentException("dense FFN: " + n + " tokens, expected 1.." + maxTokens);
        MemorySegment s = gpu.stream;
        check(dive_h.dive_f32_to_bf16(xb, x, (long) n * hidden, s), "f32_to_bf16 x");
        gpu.matmulBf16(gate, xb, w1, n, width, hidden);
        gpu.matmulBf16(up, xb, w3, n, width, hidden);
        check(dive_h.dive_swiglu(gate, gate, up, (long) n * width, s), "swiglu");
        check(dive_h.dive_f32_to_bf16(hb, gate, (long) n * width, s), "f32_to_bf16 h");
        gpu.matmulBf16(y, hb, w2, n, hidden, width);
    }

    /** matmul FLOPs of one forward over n tokens */
    public long flop(int n) { return 2L * n * 3L * width * hidden; }
}
