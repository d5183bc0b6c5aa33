// common.cuh — small helpers shared by the kernel files (not part of the C boundary).
#pragma once
#include "dive.h"
#include <cuda_runtime.h>
#include <stdint.h>

// an impossible argument: return DIVE_ERR_ARGUMENT before anything is launched
#define DIVE_REQUIRE(cond) do { if (!(cond)) return DIVE_ERR_ARGUMENT; } while (0)

// the launch status: cudaGetLastError right after the launch
static inline int dive_launch_status() { return (int) cudaGetLastError(); }

static inline cudaStream_t dive_stream(void* s) { return (cudaStream_t) s; }

// blocks of `threads` covering n items, capped (kernels use grid-stride loops beyond the cap)
static inline unsigned dive_blocks(long n, int threads, long cap = 65535L * 8) {
    long b = (n + threads - 1) / threads;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    return (unsigned) b;
}

// bf16 bit pattern → f32 (exact)
__device__ __forceinline__ float dive_bf16_bits_to_f32(unsigned short b) {
    return __uint_as_float(((unsigned) b) << 16);
}

// f32 → bf16 bit pattern, round to nearest even; NaN stays NaN (quiet bit set, sign kept)
__device__ __forceinline__ unsigned short dive_f32_to_bf16_bits(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short) ((u >> 16) | 0x0040u);
    unsigned rounding = 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short) ((u + rounding) >> 16);
}

// *flag = min(*flag, index), where −1 means "not set": the first bad index wins whatever the thread order
// (an integer compare-and-swap loop, so the final value is deterministic)
__device__ __forceinline__ void dive_record_first(int* flag, int index) {
    int old = *(volatile int*) flag;
    while (old == -1 || old > index) {
        int prev = atomicCAS(flag, old, index);
        if (prev == old) break;
        old = prev;
    }
}

// Block-wide sum / max in a fixed order (warp shuffle tree, then warp 0 over the warps' results): the same inputs
// give the same bits on every run. Every thread of the block must call it; every thread gets the result.
// blockDim.x must be a multiple of 32 (≤ 1024). `scratch` holds 32 values.
template <typename T>
__device__ __forceinline__ T dive_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T>
__device__ __forceinline__ T dive_block_sum(T v, T* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = dive_warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : (T) 0;
    return dive_warp_sum(v);
}

__device__ __forceinline__ float dive_block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// java.util.SplittableRandom(seed)'s draw `index` (0-based): mix64(seed + (index + 1)·γ) >>> 11, times 2⁻⁵³ (exact in
// double); unsigned arithmetic wraps as Java's long does
__device__ __forceinline__ double dive_splittable_draw(unsigned long long seed, unsigned long long index) {
    unsigned long long z = seed + (index + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (double) (z >> 11) * 0x1.0p-53;
}

// the expert owning permuted row r: the last e < E with offsets[e] ≤ r (bisection), or −1 when r is past offsets[E]
// or rowsBound (or the table is malformed there)
__device__ __forceinline__ int dive_expert_of_row(const int* offsets, int E, long rowsBound, long r) {
    if (r >= rowsBound || r >= offsets[E] || r < offsets[0]) return -1;
    int lo = 0, hi = E - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (offsets[mid] <= r) lo = mid; else hi = mid - 1;
    }
    return r < offsets[lo + 1] ? lo : -1;
}
