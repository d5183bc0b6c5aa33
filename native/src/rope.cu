// rope.cu — rotary embedding in place (HF rotate_half layout), forward and inverse.
#include "common.cuh"

// one thread per (row, pair i): the angle's cos and sin once (in double, then rounded to F32 as the CPU does),
// applied to every head. Consecutive threads touch consecutive i: coalesced.
__global__ void rope_kernel(float* x, int rows, int heads, int headDim, const int* positions, const float* invFreq,
                            int inverse) {
    int half = headDim / 2;
    long total = (long) rows * half;
    for (long idx = blockIdx.x * (long) blockDim.x + threadIdx.x; idx < total; idx += (long) gridDim.x * blockDim.x) {
        long r = idx / half;
        int i = (int) (idx - r * half);
        float angle = (float) positions[r] * invFreq[i];
        double sd, cd;
        sincos((double) angle, &sd, &cd);
        float c = (float) cd, s = (float) sd;
        if (inverse) s = -s; // rotation by −angle (cos even, sin odd): the transpose
        for (int h = 0; h < heads; h++) {
            float* base = x + (r * heads + h) * headDim;
            float a = base[i], b = base[i + half];
            base[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            base[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
        }
    }
}

extern "C" int dive_rope(float* d_x, int rows, int heads, int headDim, const int* d_positions, const float* d_invFreq,
                         int inverse, void* stream) {
    DIVE_REQUIRE(rows >= 0 && heads >= 0 && headDim >= 0 && headDim % 2 == 0);
    if (rows == 0 || heads == 0 || headDim == 0) return 0;
    DIVE_REQUIRE(d_x && d_positions && d_invFreq);
    long total = (long) rows * (headDim / 2);
    rope_kernel<<<dive_blocks(total, 256), 256, 0, dive_stream(stream)>>>(d_x, rows, heads, headDim, d_positions,
                                                                         d_invFreq, inverse);
    return dive_launch_status();
}
