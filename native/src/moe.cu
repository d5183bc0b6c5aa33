// moe.cu — grouped expert matmuls (BF16 tensor cores; F32 twin of the CPU), the weighted combine, their gradients.
//
// Grouped BF16 matmul design (dive_grouped_matmul_bf16):
//   - One launch covers every expert. The grid is (⌈N/128⌉ column tiles) × (⌈rows/128⌉ + E row tiles): Σ_e ⌈n_e/128⌉
//     never exceeds that bound, so every expert's rows are covered. Each block asks the device offsets which
//     (expert, row tile) its y index is: warp 0 computes every expert's tile count ⌈n_e/128⌉, scans them with warp
//     shuffles 32 experts at a time and picks the expert whose tile range holds the index. Blocks past the last tile
//     return at once; experts with no rows own no tile (their weights are never read). Offsets never go to the host.
//   - Block tile 128 (rows) × 128 (out columns), K step 32, 8 warps as 2 × 4, each warp 64 × 32 = 4 × 2 WMMA
//     16×16×16 BF16 fragments with F32 accumulators.
//   - Shared-memory tiles of x (128 × 32) and w[e] (128 × 32; w is (N, K) row-major, i.e. the K × N operand in
//     column-major order), rows padded to 40 bf16 (80 bytes) against bank conflicts, in a 4-stage cp.async pipeline
//     (80 KiB of shared memory, 2 blocks per SM; 16-byte copies, out-of-range chunks zero-filled by the copy itself)
//     when K % 8 == 0 and x, w are 16-byte aligned; otherwise a guarded element-by-element path fills the same tiles
//     (zero fill past N, K and the expert's last row).
//   - Epilogue: each warp stages one 16×16 accumulator at a time in shared memory and writes the rows that belong to
//     its expert (r < offsets[e+1]) and columns < N, adding bias[e, :] when given.
#include "common.cuh"
#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

// ---------------------------------------------------------------- which expert a row tile belongs to

// Called by warp 0 only: info = {expert or −1, first row of the tile, end row (exclusive) of that expert}.
// Offsets are clamped into [0, rowsBound] so a malformed table can never send a block out of bounds.
template <int BM>
__device__ void locate_tile(const int* offsets, int E, int rowsBound, long tile, int* info) {
    int lane = threadIdx.x & 31;
    long cum = 0; // tiles of the experts before this chunk of 32
    for (int base = 0; base < E; base += 32) {
        int e = base + lane, start = 0, end = 0;
        if (e < E) {
            start = min(max(offsets[e], 0), rowsBound);
            end = min(max(offsets[e + 1], start), rowsBound);
        }
        int tiles = (end - start + BM - 1) / BM, inc = tiles;
        for (int o = 1; o < 32; o <<= 1) {
            int v = __shfl_up_sync(0xffffffffu, inc, o);
            if (lane >= o) inc += v;
        }
        long before = cum + inc - tiles;
        bool mine = tiles > 0 && tile >= before && tile < before + tiles;
        if (__ballot_sync(0xffffffffu, mine)) {
            if (mine) {
                info[0] = e;
                info[1] = start + (int) (tile - before) * BM;
                info[2] = end;
            }
            return;
        }
        cum += __shfl_sync(0xffffffffu, inc, 31);
    }
    if (lane == 0) info[0] = -1;
}

// ---------------------------------------------------------------- BF16 tensor-core grouped matmul

#define GM_BM 128
#define GM_BN 128
#define GM_BK 32
#define GM_LD (GM_BK + 8)
#define GM_STAGES 4
#define GM_THREADS 256
#define GM_SMEM_BYTES (GM_STAGES * (GM_BM + GM_BN) * GM_LD * 2)

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int srcBytes) {
    unsigned s = (unsigned) __cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(srcBytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// one K step of the x tile (rows r0 .. min(r0+128, rEnd)) and the w[e] tile (columns n0 .. n0+128) into a stage
template <bool ALIGNED>
__device__ __forceinline__ void gm_load_stage(unsigned short* as, unsigned short* bs, const unsigned short* x,
                                              const unsigned short* W, int r0, int rEnd, int n0, int N, int K, int k0) {
    for (int c = threadIdx.x; c < GM_BM * GM_BK / 8; c += GM_THREADS) { // 8-element chunks
        int r = c >> 2, kc = (c & 3) * 8, gk = k0 + kc;
        int gr = r0 + r, gn = n0 + r;
        if (ALIGNED) { // K % 8 == 0: a chunk is wholly inside or wholly outside K
            bool okA = gr < rEnd && gk < K, okB = gn < N && gk < K;
            cp_async16(as + r * GM_LD + kc, okA ? x + (long) gr * K + gk : x, okA ? 16 : 0);
            cp_async16(bs + r * GM_LD + kc, okB ? W + (long) gn * K + gk : W, okB ? 16 : 0);
        } else {
            for (int q = 0; q < 8; q++) {
                bool inK = gk + q < K;
                as[r * GM_LD + kc + q] = gr < rEnd && inK ? x[(long) gr * K + gk + q] : (unsigned short) 0;
                bs[r * GM_LD + kc + q] = gn < N && inK ? W[(long) gn * K + gk + q] : (unsigned short) 0;
            }
        }
    }
}

template <bool ALIGNED>
__global__ void __launch_bounds__(GM_THREADS, 2)
grouped_matmul_bf16_kernel(float* out, const unsigned short* x, const int* offsets, const unsigned short* w,
                           const float* bias, int E, int rows, int N, int K, long tilesY) {
    extern __shared__ __align__(128) unsigned char smem[];
    unsigned short* As = (unsigned short*) smem;        // [STAGES][BM][LD]
    unsigned short* Bs = As + GM_STAGES * GM_BM * GM_LD; // [STAGES][BN][LD]
    __shared__ int info[3];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int warpM = warp >> 2, warpN = warp & 3; // 2 × 4 warps, 64 × 32 each
    int n0 = blockIdx.x * GM_BN;
    int numK = (K + GM_BK - 1) / GM_BK;
    for (long tile = blockIdx.y; tile < tilesY; tile += gridDim.y) {
        __syncthreads(); // the previous tile is done with smem and info
        if (warp == 0) locate_tile<GM_BM>(offsets, E, rows, tile, info);
        __syncthreads();
        int e = info[0], r0 = info[1], rEnd = info[2];
        if (e < 0) continue; // block-uniform
        const unsigned short* W = w + (long) e * N * K;

        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

#pragma unroll
        for (int s = 0; s < GM_STAGES - 1; s++) {
            if (s < numK)
                gm_load_stage<ALIGNED>(As + s * GM_BM * GM_LD, Bs + s * GM_BN * GM_LD, x, W, r0, rEnd, n0, N, K, s * GM_BK);
            cp_async_commit();
        }
        for (int kt = 0; kt < numK; kt++) {
            cp_async_wait<GM_STAGES - 2>(); // stage kt has landed (for this thread) …
            __syncthreads();                // … for every thread, and stage kt − 1 is no longer read
            int pf = kt + GM_STAGES - 1;
            if (pf < numK) {
                int ps = pf % GM_STAGES;
                gm_load_stage<ALIGNED>(As + ps * GM_BM * GM_LD, Bs + ps * GM_BN * GM_LD, x, W, r0, rEnd, n0, N, K,
                                       pf * GM_BK);
            }
            cp_async_commit(); // possibly empty: keeps the group count in step
            const __nv_bfloat16* as = (const __nv_bfloat16*) (As + (kt % GM_STAGES) * GM_BM * GM_LD);
            const __nv_bfloat16* bs = (const __nv_bfloat16*) (Bs + (kt % GM_STAGES) * GM_BN * GM_LD);
#pragma unroll
            for (int kk = 0; kk < GM_BK; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[4];
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b[2];
#pragma unroll
                for (int i = 0; i < 4; i++) wmma::load_matrix_sync(a[i], as + (warpM * 64 + i * 16) * GM_LD + kk, GM_LD);
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], bs + (warpN * 32 + j * 16) * GM_LD + kk, GM_LD);
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
            }
        }
        cp_async_wait<0>();
        __syncthreads(); // the pipeline is idle: its smem becomes the epilogue's staging area

        float* stage = (float*) smem + warp * 256; // 16 × 16 per warp
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
                __syncwarp();
                for (int q = 0; q < 8; q++) {
                    int idx = lane + 32 * q, rr = idx >> 4, cc = idx & 15;
                    int gr = r0 + warpM * 64 + i * 16 + rr, gc = n0 + warpN * 32 + j * 16 + cc;
                    if (gr < rEnd && gc < N) {
                        float v = stage[idx];
                        if (bias) v += bias[(long) e * N + gc];
                        out[(long) gr * N + gc] = v;
                    }
                }
                __syncwarp();
            }
    }
}

// ---------------------------------------------------------------- F32 grouped matmul (the CPU's twin)

#define GF_BM 64
#define GF_BN 64
#define GF_BK 16

// 64 × 64 tiles, 256 threads as 16 × 16, each thread 4 × 4 outputs (rows ty + 16i, columns tx + 16j). Every output
// is summed over p = 0 .. K−1 in order with separately rounded products and sums (no FMA): the same bits as the
// CPU's scalar loop `acc += x·w`, then `+ bias`.
__global__ void __launch_bounds__(256)
grouped_matmul_f32_kernel(float* out, const float* x, const int* offsets, const float* w, const float* bias, int E,
                          int rows, int N, int K, long tilesY) {
    __shared__ float As[GF_BK][GF_BM + 1];
    __shared__ float Bs[GF_BK][GF_BN + 1];
    __shared__ int info[3];
    int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    int n0 = blockIdx.x * GF_BN;
    for (long tile = blockIdx.y; tile < tilesY; tile += gridDim.y) {
        __syncthreads();
        if (tid < 32) locate_tile<GF_BM>(offsets, E, rows, tile, info);
        __syncthreads();
        int e = info[0], r0 = info[1], rEnd = info[2];
        if (e < 0) continue;
        const float* W = w + (long) e * N * K;
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
        for (int k0 = 0; k0 < K; k0 += GF_BK) {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int idx = tid + 256 * q, r = idx >> 4, kk = idx & 15, gk = k0 + kk;
                int gr = r0 + r, gn = n0 + r;
                As[kk][r] = gr < rEnd && gk < K ? x[(long) gr * K + gk] : 0.0f;
                Bs[kk][r] = gn < N && gk < K ? W[(long) gn * K + gk] : 0.0f;
            }
            __syncthreads();
            int kMax = min(GF_BK, K - k0);
            for (int kk = 0; kk < kMax; kk++) {
                float a[4], b[4];
#pragma unroll
                for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = __fadd_rn(acc[i][j], __fmul_rn(a[i], b[j]));
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int gr = r0 + ty + 16 * i, gc = n0 + tx + 16 * j;
                if (gr < rEnd && gc < N)
                    out[(long) gr * N + gc] = bias ? __fadd_rn(acc[i][j], bias[(long) e * N + gc]) : acc[i][j];
            }
    }
}

// ---------------------------------------------------------------- combine and its gradients

// y[t, i] = Σ_s weights[t, s] · expertOut[slotRow[t, s], i], slots in order, each product and sum rounded (no FMA)
__global__ void combine_kernel(float* y, const float* expertOut, const int* slotRow, const float* weights, int n, int k,
                               int d) {
    for (long t = blockIdx.y; t < n; t += gridDim.y)
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < d; i += gridDim.x * blockDim.x) {
            float acc = 0.0f;
            for (int s = 0; s < k; s++)
                acc = __fadd_rn(acc, __fmul_rn(weights[t * k + s], expertOut[(long) slotRow[t * k + s] * d + i]));
            y[t * d + i] = acc;
        }
}

// one block per token (strided): per slot, dExpertOut row = g·dy, and dWeights = Σ_i dy·expertOut (block tree)
__global__ void combine_backward_kernel(float* dExpertOut, float* dWeights, const float* dy, const float* expertOut,
                                        const int* slotRow, const float* weights, int n, int k, int d) {
    __shared__ float scratch[32];
    for (long t = blockIdx.x; t < n; t += gridDim.x) {
        for (int s = 0; s < k; s++) {
            long r = slotRow[t * k + s];
            float g = weights[t * k + s], dot = 0.0f;
            for (int i = threadIdx.x; i < d; i += blockDim.x) {
                float dyi = dy[t * d + i];
                dExpertOut[r * d + i] = __fmul_rn(g, dyi);
                dot += dyi * expertOut[r * d + i];
            }
            dot = dive_block_sum(dot, scratch);
            if (threadIdx.x == 0) dWeights[t * k + s] = dot;
        }
    }
}

// dx[t, i] += dRows[slotRow[t, s], i] for s = 0 .. k−1 in order
__global__ void unpermute_add_kernel(float* dx, const float* dRows, const int* slotRow, int n, int k, int d) {
    for (long t = blockIdx.y; t < n; t += gridDim.y)
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < d; i += gridDim.x * blockDim.x) {
            float acc = dx[t * d + i];
            for (int s = 0; s < k; s++) acc = __fadd_rn(acc, dRows[(long) slotRow[t * k + s] * d + i]);
            dx[t * d + i] = acc;
        }
}

// ---------------------------------------------------------------- launchers

static long row_tiles_bound(int rows, int tileRows, int E) { return ((long) rows + tileRows - 1) / tileRows + E; }

extern "C" int dive_grouped_matmul_bf16(float* d_out, const void* d_x, const int* d_offsets, const void* d_w,
                                        const float* d_bias, int numExperts, int rows, int N, int K, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && rows >= 0 && N >= 0 && K >= 0);
    if (rows == 0 || N == 0) return 0;
    DIVE_REQUIRE(d_out && d_x && d_offsets && d_w);
    long tilesY = row_tiles_bound(rows, GM_BM, numExperts);
    dim3 grid((unsigned) ((N + GM_BN - 1) / GM_BN), (unsigned) (tilesY < 65535 ? tilesY : 65535));
    bool aligned = K % 8 == 0 && ((uintptr_t) d_x & 15) == 0 && ((uintptr_t) d_w & 15) == 0;
    cudaStream_t s = dive_stream(stream);
    const unsigned short* x = (const unsigned short*) d_x;
    const unsigned short* w = (const unsigned short*) d_w;
    if (aligned) {
        cudaError_t err = cudaFuncSetAttribute(grouped_matmul_bf16_kernel<true>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM_BYTES);
        if (err != cudaSuccess) return (int) err;
        grouped_matmul_bf16_kernel<true><<<grid, GM_THREADS, GM_SMEM_BYTES, s>>>(d_out, x, d_offsets, w, d_bias,
                                                                                 numExperts, rows, N, K, tilesY);
    } else {
        cudaError_t err = cudaFuncSetAttribute(grouped_matmul_bf16_kernel<false>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, GM_SMEM_BYTES);
        if (err != cudaSuccess) return (int) err;
        grouped_matmul_bf16_kernel<false><<<grid, GM_THREADS, GM_SMEM_BYTES, s>>>(d_out, x, d_offsets, w, d_bias,
                                                                                  numExperts, rows, N, K, tilesY);
    }
    return dive_launch_status();
}

extern "C" int dive_grouped_matmul_f32(float* d_out, const float* d_x, const int* d_offsets, const float* d_w,
                                       const float* d_bias, int numExperts, int rows, int N, int K, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && rows >= 0 && N >= 0 && K >= 0);
    if (rows == 0 || N == 0) return 0;
    DIVE_REQUIRE(d_out && d_x && d_offsets && d_w);
    long tilesY = row_tiles_bound(rows, GF_BM, numExperts);
    dim3 grid((unsigned) ((N + GF_BN - 1) / GF_BN), (unsigned) (tilesY < 65535 ? tilesY : 65535));
    grouped_matmul_f32_kernel<<<grid, 256, 0, dive_stream(stream)>>>(d_out, d_x, d_offsets, d_w, d_bias, numExperts,
                                                                     rows, N, K, tilesY);
    return dive_launch_status();
}

static dim3 token_grid(int n, int d) {
    int x = (d + 255) / 256;
    if (x > 16) x = 16;
    return dim3((unsigned) x, (unsigned) (n < 65535 ? n : 65535));
}

extern "C" int dive_combine_experts(float* d_y, const float* d_expertOut, const int* d_slotRow,
                                    const float* d_expertWeights, int n, int k, int d, void* stream) {
    DIVE_REQUIRE(n >= 0 && k >= 1 && d >= 0);
    if (n == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_y && d_expertOut && d_slotRow && d_expertWeights);
    combine_kernel<<<token_grid(n, d), 256, 0, dive_stream(stream)>>>(d_y, d_expertOut, d_slotRow, d_expertWeights, n, k,
                                                                      d);
    return dive_launch_status();
}

extern "C" int dive_combine_experts_backward(float* d_dExpertOut, float* d_dWeights, const float* d_dy,
                                             const float* d_expertOut, const int* d_slotRow,
                                             const float* d_expertWeights, int n, int k, int d, void* stream) {
    DIVE_REQUIRE(n >= 0 && k >= 1 && d >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_dExpertOut && d_dWeights && d_dy && d_expertOut && d_slotRow && d_expertWeights);
    combine_backward_kernel<<<n < 65535 ? n : 65535, 256, 0, dive_stream(stream)>>>(
            d_dExpertOut, d_dWeights, d_dy, d_expertOut, d_slotRow, d_expertWeights, n, k, d);
    return dive_launch_status();
}

extern "C" int dive_unpermute_add(float* d_dx, const float* d_dRows, const int* d_slotRow, int n, int k, int d,
                                  void* stream) {
    DIVE_REQUIRE(n >= 0 && k >= 1 && d >= 0);
    if (n == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_dx && d_dRows && d_slotRow);
    unpermute_add_kernel<<<token_grid(n, d), 256, 0, dive_stream(stream)>>>(d_dx, d_dRows, d_slotRow, n, k, d);
    return dive_launch_status();
}
