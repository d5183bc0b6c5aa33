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
//
// The same kernels serve dive_grouped_gemm_bf16 / _f32, whose experts' weights are a table of device pointers (one
// allocation per weight, passed by value as a kernel parameter), and their input-gradient form (backwardInput:
// out = in · w[e], w read as stored: the B tile is 32 depth rows × 128 columns, rows padded to 136 bf16, loaded as a
// row-major fragment). The per-expert weight gradient (F32, CUDA cores) and the per-expert bias ops read the expert's
// row range from the device offsets too, so nothing of the routing goes to the host.
#include "common.cuh"
#include <cuda_bf16.h>
#include <mma.h>
#include <type_traits>

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

// ---------------------------------------------------------------- where each expert's weights are

// The experts' weights (and optional biases) as the kernels see them: stacked (E, N, K) in one allocation (the
// dive_grouped_matmul_* entry points), or tables of E device pointers passed BY VALUE as a kernel parameter
// (__grid_constant__: read in place from the parameter space, never copied to local memory). A table needs no
// stacking copy and no upload of the pointers: weights cached one allocation per tensor, or gradient tensors, are
// used where they are. A table of 256 weight and 256 bias pointers is 4 KiB of parameters (CUDA 12.1+ drivers allow
// 32 KiB on sm_70 and newer).
template <typename T>
struct StackedExperts {
    T* w;
    const float* bias; // null or (E, N)
    long wStride;
    int biasStride;
    static constexpr bool TABLE = false;
    __device__ __forceinline__ T* weight(int e) const { return w + (long) e * wStride; }
    __device__ __forceinline__ const float* biasOf(int e) const { return bias ? bias + (long) e * biasStride : nullptr; }
};

template <typename T>
struct ExpertTable {
    T* w[DIVE_MAX_TABLE_EXPERTS];
    const float* bias[DIVE_MAX_TABLE_EXPERTS]; // an entry null: that expert has no bias
    static constexpr bool TABLE = true;
    __device__ __forceinline__ T* weight(int e) const { return w[e]; }
    __device__ __forceinline__ const float* biasOf(int e) const { return bias[e]; }
};

template <typename T>
struct PointerTable {
    T* p[DIVE_MAX_TABLE_EXPERTS];
};

// ---------------------------------------------------------------- BF16 tensor-core grouped matmul

// out (rows, C) = in (rows, D) · B per expert range, B (D × C) read from the expert's weight W in one of two layouts:
//   NN = false (the forward):         W (C, D) row-major, B = Wᵀ (the col-major D × C operand), tile [128 cols][40]
//   NN = true (the input gradient):   W (D, C) row-major, B = W  (the row-major D × C operand), tile [32 depth][136]
#define GM_BM 128
#define GM_BN 128
#define GM_BK 32
#define GM_LD (GM_BK + 8)
#define GM_LDB (GM_BN + 8)
#define GM_STAGES 4
#define GM_THREADS 256

template <bool NN>
struct GmShape {
    static constexpr int B_STAGE = NN ? GM_BK * GM_LDB : GM_BN * GM_LD; // bf16 elements of one B stage
    static constexpr int SMEM_BYTES = GM_STAGES * (GM_BM * GM_LD + B_STAGE) * 2;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int srcBytes) {
    unsigned s = (unsigned) __cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(srcBytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// one K step: the x tile (rows r0 .. min(r0+128, rEnd), depth k0 .. k0+32) and the B tile (columns n0 .. n0+128)
// into a stage. ALIGNED: D % 8 == 0 (and C % 8 == 0 for NN), so a chunk of 8 is wholly inside or outside the matrix.
template <bool ALIGNED, bool NN>
__device__ __forceinline__ void gm_load_stage(unsigned short* as, unsigned short* bs, const unsigned short* x,
                                              const unsigned short* W, int r0, int rEnd, int n0, int C, int D, int k0) {
    for (int c = threadIdx.x; c < GM_BM * GM_BK / 8; c += GM_THREADS) { // 8-element chunks
        int r = c >> 2, kc = (c & 3) * 8, gk = k0 + kc, gr = r0 + r;
        if (ALIGNED) {
            bool ok = gr < rEnd && gk < D;
            cp_async16(as + r * GM_LD + kc, ok ? x + (long) gr * D + gk : x, ok ? 16 : 0);
        } else {
            for (int q = 0; q < 8; q++)
                as[r * GM_LD + kc + q] = gr < rEnd && gk + q < D ? x[(long) gr * D + gk + q] : (unsigned short) 0;
        }
    }
    if constexpr (!NN) {
        for (int c = threadIdx.x; c < GM_BN * GM_BK / 8; c += GM_THREADS) {
            int j = c >> 2, kc = (c & 3) * 8, gk = k0 + kc, gn = n0 + j;
            if (ALIGNED) {
                bool ok = gn < C && gk < D;
                cp_async16(bs + j * GM_LD + kc, ok ? W + (long) gn * D + gk : W, ok ? 16 : 0);
            } else {
                for (int q = 0; q < 8; q++)
                    bs[j * GM_LD + kc + q] = gn < C && gk + q < D ? W[(long) gn * D + gk + q] : (unsigned short) 0;
            }
        }
    } else {
        for (int c = threadIdx.x; c < GM_BK * GM_BN / 8; c += GM_THREADS) {
            int p = c >> 4, jc = (c & 15) * 8, gp = k0 + p, gn = n0 + jc;
            if (ALIGNED) {
                bool ok = gp < D && gn < C;
                cp_async16(bs + p * GM_LDB + jc, ok ? W + (long) gp * C + gn : W, ok ? 16 : 0);
            } else {
                for (int q = 0; q < 8; q++)
                    bs[p * GM_LDB + jc + q] = gp < D && gn + q < C ? W[(long) gp * C + gn + q] : (unsigned short) 0;
            }
        }
    }
}

template <bool ALIGNED, bool NN, typename Experts>
__global__ void __launch_bounds__(GM_THREADS, 2)
grouped_gemm_bf16_kernel(float* out, const unsigned short* x, const int* offsets, const __grid_constant__ Experts experts,
                         int E, int rows, int C, int D, long tilesY) {
    extern __shared__ __align__(128) unsigned char smem[];
    constexpr int B_STAGE = GmShape<NN>::B_STAGE;
    unsigned short* As = (unsigned short*) smem;        // [STAGES][BM][LD]
    unsigned short* Bs = As + GM_STAGES * GM_BM * GM_LD; // [STAGES][B_STAGE]
    __shared__ int info[3];
    __shared__ const unsigned short* tileW;
    __shared__ const float* tileBias;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int warpM = warp >> 2, warpN = warp & 3; // 2 × 4 warps, 64 × 32 each
    int n0 = blockIdx.x * GM_BN;
    int numK = (D + GM_BK - 1) / GM_BK;
    using BLayout = typename std::conditional<NN, wmma::row_major, wmma::col_major>::type;
    for (long tile = blockIdx.y; tile < tilesY; tile += gridDim.y) {
        __syncthreads(); // the previous tile is done with smem and info
        if (warp == 0) {
            locate_tile<GM_BM>(offsets, E, rows, tile, info);
            if constexpr (Experts::TABLE) { // a table's pointers: looked up once per tile, shared
                __syncwarp();
                if (lane == 0 && info[0] >= 0) {
                    tileW = experts.weight(info[0]);
                    tileBias = experts.biasOf(info[0]);
                }
            }
        }
        __syncthreads();
        int e = info[0], r0 = info[1], rEnd = info[2];
        if (e < 0) continue; // block-uniform
        // a table's pointers are read from shared memory where they are used (not held in registers across the loop)
#define GM_W (Experts::TABLE ? tileW : experts.weight(e))

        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

#pragma unroll
        for (int s = 0; s < GM_STAGES - 1; s++) {
            if (s < numK)
                gm_load_stage<ALIGNED, NN>(As + s * GM_BM * GM_LD, Bs + s * B_STAGE, x, GM_W, r0, rEnd, n0, C, D, s * GM_BK);
            cp_async_commit();
        }
        for (int kt = 0; kt < numK; kt++) {
            cp_async_wait<GM_STAGES - 2>(); // stage kt has landed (for this thread) …
            __syncthreads();                // … for every thread, and stage kt − 1 is no longer read
            int pf = kt + GM_STAGES - 1;
            if (pf < numK) {
                int ps = pf % GM_STAGES;
                gm_load_stage<ALIGNED, NN>(As + ps * GM_BM * GM_LD, Bs + ps * B_STAGE, x, GM_W, r0, rEnd, n0, C, D,
                                           pf * GM_BK);
            }
            cp_async_commit(); // possibly empty: keeps the group count in step
            const __nv_bfloat16* as = (const __nv_bfloat16*) (As + (kt % GM_STAGES) * GM_BM * GM_LD);
            const __nv_bfloat16* bs = (const __nv_bfloat16*) (Bs + (kt % GM_STAGES) * B_STAGE);
#pragma unroll
            for (int kk = 0; kk < GM_BK; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[4];
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, BLayout> b[2];
#pragma unroll
                for (int i = 0; i < 4; i++) wmma::load_matrix_sync(a[i], as + (warpM * 64 + i * 16) * GM_LD + kk, GM_LD);
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    if constexpr (NN) wmma::load_matrix_sync(b[j], bs + kk * GM_LDB + warpN * 32 + j * 16, GM_LDB);
                    else wmma::load_matrix_sync(b[j], bs + (warpN * 32 + j * 16) * GM_LD + kk, GM_LD);
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
            }
        }
        cp_async_wait<0>();
        __syncthreads(); // the pipeline is idle: its smem becomes the epilogue's staging area

#undef GM_W
        float* stage = (float*) smem + warp * 256; // 16 × 16 per warp
        const float* bias = Experts::TABLE ? tileBias : experts.biasOf(e);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
                __syncwarp();
                for (int q = 0; q < 8; q++) {
                    int idx = lane + 32 * q, rr = idx >> 4, cc = idx & 15;
                    int gr = r0 + warpM * 64 + i * 16 + rr, gc = n0 + warpN * 32 + j * 16 + cc;
                    if (gr < rEnd && gc < C) {
                        float v = stage[idx];
                        if (bias) v += bias[gc];
                        out[(long) gr * C + gc] = v;
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
// is summed over p = 0 .. D−1 in order with separately rounded products and sums (no FMA): the same bits as the
// CPU's scalar loop `acc += x·w`, then `+ bias`. B as in the BF16 kernel (NN: the weight read as stored).
template <bool NN, typename Experts>
__global__ void __launch_bounds__(256)
grouped_gemm_f32_kernel(float* out, const float* x, const int* offsets, const __grid_constant__ Experts experts, int E,
                        int rows, int C, int D, long tilesY) {
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
        const float* W = experts.weight(e);
        const float* bias = experts.biasOf(e);
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
        for (int k0 = 0; k0 < D; k0 += GF_BK) {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int idx = tid + 256 * q;
                int r = idx >> 4, kk = idx & 15, gk = k0 + kk, gr = r0 + r;
                As[kk][r] = gr < rEnd && gk < D ? x[(long) gr * D + gk] : 0.0f;
                if constexpr (!NN) {
                    int gn = n0 + r; // idx >> 4: the output column
                    Bs[kk][r] = gn < C && gk < D ? W[(long) gn * D + gk] : 0.0f;
                } else {
                    int j = idx & 63, p = idx >> 6, gp = k0 + p, gn = n0 + j; // consecutive threads, consecutive columns
                    Bs[p][j] = gn < C && gp < D ? W[(long) gp * C + gn] : 0.0f;
                }
            }
            __syncthreads();
            int kMax = min(GF_BK, D - k0);
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
                if (gr < rEnd && gc < C) out[(long) gr * C + gc] = bias ? __fadd_rn(acc[i][j], bias[gc]) : acc[i][j];
            }
    }
}

// ---------------------------------------------------------------- per-expert weight gradient, biases

static __device__ __forceinline__ void expert_rows(const int* offsets, int e, int rowsBound, int* start, int* end) {
    int s = min(max(offsets[e], 0), rowsBound);
    *start = s;
    *end = min(max(offsets[e + 1], s), rowsBound);
}

// Block (64 k × 64 n tile, expert blockIdx.z): dw[e][n, k] += Σ_r dOut[r, n] · x[r, k] over the expert's rows in
// order (16 rows per shared step), products and sums rounded separately; the block's sum is added to dw last.
__global__ void __launch_bounds__(256)
grouped_weight_grad_f32_kernel(const __grid_constant__ PointerTable<float> dw, const float* dOut, const float* x,
                               const int* offsets, int rowsBound, int N, int K) {
    __shared__ float As[GF_BK][GF_BM + 1]; // dOut: rows × 64 n
    __shared__ float Bs[GF_BK][GF_BN + 1]; // x: rows × 64 k
    int e = blockIdx.z;
    float* g = dw.p[e];
    if (!g) return; // block-uniform
    int start, end;
    expert_rows(offsets, e, rowsBound, &start, &end);
    if (start >= end) return;
    int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    int k0 = blockIdx.x * GF_BN, n0 = blockIdx.y * GF_BM;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int r0 = start; r0 < end; r0 += GF_BK) {
#pragma unroll
        for (int q = 0; q < 4; q++) {
            int idx = tid + 256 * q, rr = idx >> 6, c = idx & 63, gr = r0 + rr;
            As[rr][c] = gr < end && n0 + c < N ? dOut[(long) gr * N + n0 + c] : 0.0f;
            Bs[rr][c] = gr < end && k0 + c < K ? x[(long) gr * K + k0 + c] : 0.0f;
        }
        __syncthreads();
        int rMax = min(GF_BK, end - r0);
        for (int rr = 0; rr < rMax; rr++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[rr][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[rr][tx + 16 * j];
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
            int n = n0 + ty + 16 * i, k = k0 + tx + 16 * j;
            if (n < N && k < K) g[(long) n * K + k] = __fadd_rn(g[(long) n * K + k], acc[i][j]);
        }
}

// grid.y walks rows (strided); thread 0 finds the row's expert (the last e with offsets[e] ≤ r, by bisection), the
// block adds that expert's bias when it has one
__global__ void expert_add_bias_kernel(float* out, const int* offsets, const __grid_constant__ PointerTable<const float> bias,
                                       int E, int rowsBound, int d) {
    __shared__ int expert;
    for (long r = blockIdx.y; r < rowsBound; r += gridDim.y) {
        __syncthreads(); // the previous row is done with `expert`
        if (threadIdx.x == 0) expert = dive_expert_of_row(offsets, E, rowsBound, r);
        __syncthreads();
        int e = expert;
        const float* b = e >= 0 ? bias.p[e] : nullptr;
        if (!b) continue; // block-uniform
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < d; i += gridDim.x * blockDim.x)
            out[r * d + i] = __fadd_rn(out[r * d + i], b[i]);
    }
}

// one thread per (expert blockIdx.y, column): db[e][i] += dy[r, i] for the expert's rows r in order
__global__ void expert_bias_backward_kernel(const __grid_constant__ PointerTable<float> db, const float* dy,
                                            const int* offsets, int rowsBound, int d) {
    int e = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    float* g = db.p[e];
    if (!g || i >= d) return;
    int start, end;
    expert_rows(offsets, e, rowsBound, &start, &end);
    if (start >= end) return;
    float acc = g[i];
    for (int r = start; r < end; r++) acc = __fadd_rn(acc, dy[(long) r * d + i]);
    g[i] = acc;
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

template <bool NN, typename Experts>
static int launch_grouped_bf16(float* out, const void* in, const int* offsets, const Experts& experts, bool aligned, int E,
                               int rows, int C, int D, cudaStream_t s) {
    long tilesY = row_tiles_bound(rows, GM_BM, E);
    dim3 grid((unsigned) ((C + GM_BN - 1) / GM_BN), (unsigned) (tilesY < 65535 ? tilesY : 65535));
    const int smem = GmShape<NN>::SMEM_BYTES;
    const unsigned short* x = (const unsigned short*) in;
    if (aligned) {
        cudaError_t err = cudaFuncSetAttribute(grouped_gemm_bf16_kernel<true, NN, Experts>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (err != cudaSuccess) return (int) err;
        grouped_gemm_bf16_kernel<true, NN, Experts><<<grid, GM_THREADS, smem, s>>>(out, x, offsets, experts, E, rows, C, D,
                                                                                   tilesY);
    } else {
        cudaError_t err = cudaFuncSetAttribute(grouped_gemm_bf16_kernel<false, NN, Experts>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (err != cudaSuccess) return (int) err;
        grouped_gemm_bf16_kernel<false, NN, Experts><<<grid, GM_THREADS, smem, s>>>(out, x, offsets, experts, E, rows, C,
                                                                                    D, tilesY);
    }
    return dive_launch_status();
}

template <bool NN, typename Experts>
static int launch_grouped_f32(float* out, const float* in, const int* offsets, const Experts& experts, int E, int rows,
                              int C, int D, cudaStream_t s) {
    long tilesY = row_tiles_bound(rows, GF_BM, E);
    dim3 grid((unsigned) ((C + GF_BN - 1) / GF_BN), (unsigned) (tilesY < 65535 ? tilesY : 65535));
    grouped_gemm_f32_kernel<NN, Experts><<<grid, 256, 0, s>>>(out, in, offsets, experts, E, rows, C, D, tilesY);
    return dive_launch_status();
}

static bool aligned16(const void* p) { return ((uintptr_t) p & 15) == 0; }

extern "C" int dive_grouped_matmul_bf16(float* d_out, const void* d_x, const int* d_offsets, const void* d_w,
                                        const float* d_bias, int numExperts, int rows, int N, int K, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && rows >= 0 && N >= 0 && K >= 0);
    if (rows == 0 || N == 0) return 0;
    DIVE_REQUIRE(d_out && d_x && d_offsets && d_w);
    StackedExperts<const unsigned short> experts = {(const unsigned short*) d_w, d_bias, (long) N * K, N};
    bool aligned = K % 8 == 0 && aligned16(d_x) && aligned16(d_w);
    return launch_grouped_bf16<false>(d_out, d_x, d_offsets, experts, aligned, numExperts, rows, N, K, dive_stream(stream));
}

extern "C" int dive_grouped_matmul_f32(float* d_out, const float* d_x, const int* d_offsets, const float* d_w,
                                       const float* d_bias, int numExperts, int rows, int N, int K, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && rows >= 0 && N >= 0 && K >= 0);
    if (rows == 0 || N == 0) return 0;
    DIVE_REQUIRE(d_out && d_x && d_offsets && d_w);
    StackedExperts<const float> experts = {d_w, d_bias, (long) N * K, N};
    return launch_grouped_f32<false>(d_out, d_x, d_offsets, experts, numExperts, rows, N, K, dive_stream(stream));
}

// a table of the host's pointer lists; false when an argument is impossible
template <typename T>
static bool fill_table(ExpertTable<T>& table, const void* const* h_w, const float* const* h_bias, int E) {
    for (int e = 0; e < E; e++) {
        if (!h_w[e]) return false;
        table.w[e] = (T*) h_w[e];
        table.bias[e] = h_bias ? h_bias[e] : nullptr;
    }
    for (int e = E; e < DIVE_MAX_TABLE_EXPERTS; e++) {
        table.w[e] = nullptr;
        table.bias[e] = nullptr;
    }
    return true;
}

template <typename T>
static void fill_pointers(PointerTable<T>& table, T* const* h, int E) {
    for (int e = 0; e < DIVE_MAX_TABLE_EXPERTS; e++) table.p[e] = e < E ? h[e] : nullptr;
}

extern "C" int dive_grouped_gemm_bf16(float* d_out, const void* d_in, const int* d_offsets, const void* const* h_w,
                                      const float* const* h_bias, int numExperts, int rows, int N, int K,
                                      int backwardInput, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && numExperts <= DIVE_MAX_TABLE_EXPERTS && rows >= 0 && N >= 0 && K >= 0);
    DIVE_REQUIRE(!backwardInput || !h_bias);
    int C = backwardInput ? K : N, D = backwardInput ? N : K;
    if (rows == 0 || C == 0) return 0;
    DIVE_REQUIRE(d_out && (D == 0 || d_in) && d_offsets && h_w); // depth 0: out = bias (or 0), in is not read
    ExpertTable<const unsigned short> table;
    DIVE_REQUIRE(fill_table(table, h_w, h_bias, numExperts));
    bool aligned = D % 8 == 0 && (!backwardInput || C % 8 == 0) && aligned16(d_in);
    for (int e = 0; e < numExperts; e++) aligned = aligned && aligned16(h_w[e]);
    cudaStream_t s = dive_stream(stream);
    return backwardInput ? launch_grouped_bf16<true>(d_out, d_in, d_offsets, table, aligned, numExperts, rows, C, D, s)
                         : launch_grouped_bf16<false>(d_out, d_in, d_offsets, table, aligned, numExperts, rows, C, D, s);
}

extern "C" int dive_grouped_gemm_f32(float* d_out, const float* d_in, const int* d_offsets, const float* const* h_w,
                                     const float* const* h_bias, int numExperts, int rows, int N, int K,
                                     int backwardInput, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && numExperts <= DIVE_MAX_TABLE_EXPERTS && rows >= 0 && N >= 0 && K >= 0);
    DIVE_REQUIRE(!backwardInput || !h_bias);
    int C = backwardInput ? K : N, D = backwardInput ? N : K;
    if (rows == 0 || C == 0) return 0;
    DIVE_REQUIRE(d_out && (D == 0 || d_in) && d_offsets && h_w); // depth 0: out = bias (or 0), in is not read
    ExpertTable<const float> table;
    DIVE_REQUIRE(fill_table(table, (const void* const*) h_w, h_bias, numExperts));
    cudaStream_t s = dive_stream(stream);
    return backwardInput ? launch_grouped_f32<true>(d_out, d_in, d_offsets, table, numExperts, rows, C, D, s)
                         : launch_grouped_f32<false>(d_out, d_in, d_offsets, table, numExperts, rows, C, D, s);
}

extern "C" int dive_grouped_weight_grad_f32(float* const* h_dw, const float* d_dOut, const float* d_x,
                                            const int* d_offsets, int numExperts, int rows, int N, int K,
                                            void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && numExperts <= DIVE_MAX_TABLE_EXPERTS && rows >= 0 && N >= 0 && K >= 0);
    if (rows == 0 || N == 0 || K == 0) return 0;
    DIVE_REQUIRE(h_dw && d_dOut && d_x && d_offsets);
    DIVE_REQUIRE((N + GF_BM - 1) / GF_BM <= 65535);
    PointerTable<float> table;
    fill_pointers(table, h_dw, numExperts);
    dim3 grid((unsigned) ((K + GF_BN - 1) / GF_BN), (unsigned) ((N + GF_BM - 1) / GF_BM), (unsigned) numExperts);
    grouped_weight_grad_f32_kernel<<<grid, 256, 0, dive_stream(stream)>>>(table, d_dOut, d_x, d_offsets, rows, N, K);
    return dive_launch_status();
}

extern "C" int dive_expert_add_bias(float* d_out, const int* d_offsets, const float* const* h_bias, int numExperts,
                                    int rows, int d, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && numExperts <= DIVE_MAX_TABLE_EXPERTS && rows >= 0 && d >= 0);
    if (rows == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_out && d_offsets && h_bias);
    PointerTable<const float> table;
    fill_pointers(table, h_bias, numExperts);
    int x = (d + 255) / 256;
    dim3 grid((unsigned) (x > 16 ? 16 : x), (unsigned) (rows < 65535 ? rows : 65535));
    expert_add_bias_kernel<<<grid, 256, 0, dive_stream(stream)>>>(d_out, d_offsets, table, numExperts, rows, d);
    return dive_launch_status();
}

extern "C" int dive_expert_bias_backward(float* const* h_db, const float* d_dy, const int* d_offsets, int numExperts,
                                         int rows, int d, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && numExperts <= DIVE_MAX_TABLE_EXPERTS && rows >= 0 && d >= 0);
    if (rows == 0 || d == 0) return 0;
    DIVE_REQUIRE(h_db && d_dy && d_offsets);
    PointerTable<float> table;
    fill_pointers(table, h_db, numExperts);
    dim3 grid((unsigned) ((d + 127) / 128), (unsigned) numExperts);
    expert_bias_backward_kernel<<<grid, 128, 0, dive_stream(stream)>>>(table, d_dy, d_offsets, rows, d);
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
