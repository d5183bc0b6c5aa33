// attention.cu — causal grouped-query attention: flash-style forward (online softmax in F32) and a deterministic
// backward (probabilities recomputed from q, k and per-query statistics).
//
// Layout shared by the kernels: a block of 4 warps owns QTILE = 16 queries of one head (4 per warp, one at a time);
// keys stream through shared memory KTILE = 32 at a time. For one query, lane j scores key j of the tile (the whole
// dot product over headDim, K rows padded by one float so the 32 lanes hit 32 banks), the warp folds the tile into
// the running max / sum, and each lane owns headDim/32 output dimensions (d = lane + 32c) of the accumulator.
// Without atomics anywhere, every sum runs in a fixed order.
#include "common.cuh"

#define ATT_WARPS 4
#define ATT_QPW 4                         // queries per warp
#define ATT_QTILE (ATT_WARPS * ATT_QPW) // 16 queries per block
#define ATT_KTILE 32                      // keys per shared tile (one per lane)
#define ATT_MAX_HEAD_DIM 256

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// ---------------------------------------------------------------- forward

// Q tile (QTILE, hd), K tile (KTILE, hd + 1), V tile (KTILE, hd). DPL = output dimensions per lane (hd ≤ 32·DPL).
template <int DPL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_kernel(float* out, const float* q, const float* kCache, const float* vCache, int T, int startPos, int nHeads,
                 int nKvHeads, int hd, float scale) {
    extern __shared__ float smem[];
    float* Qs = smem;
    float* Ks = Qs + ATT_QTILE * hd;
    float* Vs = Ks + ATT_KTILE * (hd + 1);
    int h = blockIdx.y, kvh = h / (nHeads / nKvHeads);
    int t0 = blockIdx.x * ATT_QTILE, nq = min(ATT_QTILE, T - t0);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int idx = threadIdx.x; idx < ATT_QTILE * hd; idx += blockDim.x) {
        int qi = idx / hd, i = idx - qi * hd;
        Qs[idx] = qi < nq ? q[((long) (t0 + qi) * nHeads + h) * hd + i] : 0.0f;
    }
    float m[ATT_QPW], l[ATT_QPW], acc[ATT_QPW][DPL];
#pragma unroll
    for (int qq = 0; qq < ATT_QPW; qq++) {
        m[qq] = -INFINITY;
        l[qq] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[qq][c] = 0.0f;
    }
    int lastKey = startPos + t0 + nq - 1; // the block's last query sees keys 0 .. lastKey
    for (int k0 = 0; k0 <= lastKey; k0 += ATT_KTILE) {
        __syncthreads(); // the previous tile is consumed (and, the first time, Qs is written)
        for (int idx = threadIdx.x; idx < ATT_KTILE * hd; idx += blockDim.x) {
            int j = idx / hd, i = idx - j * hd, s = k0 + j;
            bool ok = s <= lastKey;
            long g = ((long) s * nKvHeads + kvh) * hd + i;
            Ks[j * (hd + 1) + i] = ok ? kCache[g] : 0.0f;
            Vs[j * hd + i] = ok ? vCache[g] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int qq = 0; qq < ATT_QPW; qq++) {
            int qi = warp * ATT_QPW + qq;
            int pos = startPos + t0 + qi;
            if (qi >= nq || k0 > pos) continue; // warp-uniform
            int s = k0 + lane;
            bool valid = s <= pos;
            float score = -INFINITY;
            if (valid) {
                const float* qr = Qs + qi * hd;
                const float* kr = Ks + lane * (hd + 1);
                float dot = 0.0f;
                for (int i = 0; i < hd; i++) dot += qr[i] * kr[i];
                score = dot * scale;
            }
            float mNew = fmaxf(m[qq], warp_max(score)); // finite: key k0 ≤ pos is always valid
            float alpha = expf(m[qq] - mNew);           // 0 on the first tile (m = −∞)
            float p = valid ? expf(score - mNew) : 0.0f;
            l[qq] = l[qq] * alpha + dive_warp_sum(p);
            m[qq] = mNew;
#pragma unroll
            for (int c = 0; c < DPL; c++) acc[qq][c] *= alpha;
            int nk = min(ATT_KTILE, pos - k0 + 1);
            for (int j = 0; j < nk; j++) {
                float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    int d = lane + 32 * c;
                    if (d < hd) acc[qq][c] += pj * Vs[j * hd + d];
                }
            }
        }
    }
#pragma unroll
    for (int qq = 0; qq < ATT_QPW; qq++) {
        int qi = warp * ATT_QPW + qq;
        if (qi >= nq) continue;
        float inv = 1.0f / l[qq];
        float* o = out + ((long) (t0 + qi) * nHeads + h) * hd;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < hd) o[d] = acc[qq][c] * inv;
        }
    }
}

// ---------------------------------------------------------------- backward

// Pass 1, per (b, h, query tile): lse = log Σ_s e^(score_s) (max-shifted) and D = Σ_s p_s·dP_s with dP_s = dOut·v_s,
// both online over the key tiles. Q, dOut tiles (QTILE, hd); K, V tiles (KTILE, hd + 1).
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_stats_kernel(float* lse, float* D, const float* dOut, const float* q, const float* k, const float* v, int T,
                       int nHeads, int nKvHeads, int hd, float scale) {
    extern __shared__ float smem[];
    float* Qs = smem;
    float* Gs = Qs + ATT_QTILE * hd;
    float* Ks = Gs + ATT_QTILE * hd;
    float* Vs = Ks + ATT_KTILE * (hd + 1);
    int b = blockIdx.z, h = blockIdx.y, kvh = h / (nHeads / nKvHeads);
    int t0 = blockIdx.x * ATT_QTILE, nq = min(ATT_QTILE, T - t0);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int idx = threadIdx.x; idx < ATT_QTILE * hd; idx += blockDim.x) {
        int qi = idx / hd, i = idx - qi * hd;
        long g = (((long) b * T + t0 + qi) * nHeads + h) * hd + i;
        Qs[idx] = qi < nq ? q[g] : 0.0f;
        Gs[idx] = qi < nq ? dOut[g] : 0.0f;
    }
    float m[ATT_QPW], l[ATT_QPW], u[ATT_QPW];
#pragma unroll
    for (int qq = 0; qq < ATT_QPW; qq++) { m[qq] = -INFINITY; l[qq] = 0.0f; u[qq] = 0.0f; }
    int lastKey = t0 + nq - 1;
    for (int k0 = 0; k0 <= lastKey; k0 += ATT_KTILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < ATT_KTILE * hd; idx += blockDim.x) {
            int j = idx / hd, i = idx - j * hd, s = k0 + j;
            bool ok = s <= lastKey;
            long g = (((long) b * T + s) * nKvHeads + kvh) * hd + i;
            Ks[j * (hd + 1) + i] = ok ? k[g] : 0.0f;
            Vs[j * (hd + 1) + i] = ok ? v[g] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int qq = 0; qq < ATT_QPW; qq++) {
            int qi = warp * ATT_QPW + qq, pos = t0 + qi;
            if (qi >= nq || k0 > pos) continue;
            bool valid = k0 + lane <= pos;
            float score = -INFINITY, dp = 0.0f;
            if (valid) {
                const float* qr = Qs + qi * hd; const float* gr = Gs + qi * hd;
                const float* kr = Ks + lane * (hd + 1); const float* vr = Vs + lane * (hd + 1);
                float dot = 0.0f;
                for (int i = 0; i < hd; i++) { dot += qr[i] * kr[i]; dp += gr[i] * vr[i]; }
                score = dot * scale;
            }
            float mNew = fmaxf(m[qq], warp_max(score));
            float alpha = expf(m[qq] - mNew);
            float p = valid ? expf(score - mNew) : 0.0f;
            l[qq] = l[qq] * alpha + dive_warp_sum(p);
            u[qq] = u[qq] * alpha + dive_warp_sum(p * dp);
            m[qq] = mNew;
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int qq = 0; qq < ATT_QPW; qq++) {
            int qi = warp * ATT_QPW + qq;
            if (qi >= nq) continue;
            long r = ((long) b * T + t0 + qi) * nHeads + h;
            lse[r] = m[qq] + logf(l[qq]);
            D[r] = u[qq] / l[qq];
        }
    }
}

// Pass 2, per (b, h, query tile): dq = scale · Σ_s p_s·(dP_s − D)·k_s, keys in order.
template <int DPL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_dq_kernel(float* dq, const float* lse, const float* D, const float* dOut, const float* q, const float* k,
                    const float* v, int T, int nHeads, int nKvHeads, int hd, float scale) {
    extern __shared__ float smem[];
    float* Qs = smem;
    float* Gs = Qs + ATT_QTILE * hd;
    float* Ks = Gs + ATT_QTILE * hd;
    float* Vs = Ks + ATT_KTILE * (hd + 1);
    int b = blockIdx.z, h = blockIdx.y, kvh = h / (nHeads / nKvHeads);
    int t0 = blockIdx.x * ATT_QTILE, nq = min(ATT_QTILE, T - t0);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int idx = threadIdx.x; idx < ATT_QTILE * hd; idx += blockDim.x) {
        int qi = idx / hd, i = idx - qi * hd;
        long g = (((long) b * T + t0 + qi) * nHeads + h) * hd + i;
        Qs[idx] = qi < nq ? q[g] : 0.0f;
        Gs[idx] = qi < nq ? dOut[g] : 0.0f;
    }
    float acc[ATT_QPW][DPL], rowLse[ATT_QPW], rowD[ATT_QPW];
#pragma unroll
    for (int qq = 0; qq < ATT_QPW; qq++) {
        int qi = warp * ATT_QPW + qq;
        long r = ((long) b * T + t0 + qi) * nHeads + h;
        rowLse[qq] = qi < nq ? lse[r] : 0.0f;
        rowD[qq] = qi < nq ? D[r] : 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[qq][c] = 0.0f;
    }
    int lastKey = t0 + nq - 1;
    for (int k0 = 0; k0 <= lastKey; k0 += ATT_KTILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < ATT_KTILE * hd; idx += blockDim.x) {
            int j = idx / hd, i = idx - j * hd, s = k0 + j;
            bool ok = s <= lastKey;
            long g = (((long) b * T + s) * nKvHeads + kvh) * hd + i;
            Ks[j * (hd + 1) + i] = ok ? k[g] : 0.0f;
            Vs[j * (hd + 1) + i] = ok ? v[g] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int qq = 0; qq < ATT_QPW; qq++) {
            int qi = warp * ATT_QPW + qq, pos = t0 + qi;
            if (qi >= nq || k0 > pos) continue;
            bool valid = k0 + lane <= pos;
            float ds = 0.0f;
            if (valid) {
                const float* qr = Qs + qi * hd; const float* gr = Gs + qi * hd;
                const float* kr = Ks + lane * (hd + 1); const float* vr = Vs + lane * (hd + 1);
                float dot = 0.0f, dp = 0.0f;
                for (int i = 0; i < hd; i++) { dot += qr[i] * kr[i]; dp += gr[i] * vr[i]; }
                float p = expf(dot * scale - rowLse[qq]);
                ds = p * (dp - rowD[qq]) * scale;
            }
            int nk = min(ATT_KTILE, pos - k0 + 1);
            for (int j = 0; j < nk; j++) {
                float dsj = __shfl_sync(0xffffffffu, ds, j);
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    int d = lane + 32 * c;
                    if (d < hd) acc[qq][c] += dsj * Ks[j * (hd + 1) + d];
                }
            }
        }
    }
#pragma unroll
    for (int qq = 0; qq < ATT_QPW; qq++) {
        int qi = warp * ATT_QPW + qq;
        if (qi >= nq) continue;
        float* o = dq + (((long) b * T + t0 + qi) * nHeads + h) * hd;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < hd) o[d] = acc[qq][c];
        }
    }
}

#define DKV_KTILE 16                       // keys per block (4 per warp)
#define DKV_KPW (DKV_KTILE / ATT_WARPS)
#define DKV_QTILE 32                       // queries per shared tile (one per lane)

// Pass 3, per (b, KV head, tile of 16 keys): dk_s = scale · Σ_h Σ_t p·(dP − D)·q_t and dv_s = Σ_h Σ_t p·dOut_t over
// the query heads h of the group in order, then the queries t ≥ s in order (the CPU's order). Each warp owns 4 keys;
// lane j scores query j of the shared query tile against a key, then every lane accumulates its dimensions.
// K, V tiles (16, hd); Q, dOut tiles (32, hd + 1); lse, D (32).
template <int DPL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_dkdv_kernel(float* dk, float* dv, const float* lse, const float* D, const float* dOut, const float* q,
                      const float* k, const float* v, int T, int nHeads, int nKvHeads, int hd, float scale) {
    extern __shared__ float smem[];
    float* Ks = smem;
    float* Vs = Ks + DKV_KTILE * hd;
    float* Qs = Vs + DKV_KTILE * hd;
    float* Gs = Qs + DKV_QTILE * (hd + 1);
    float* lseS = Gs + DKV_QTILE * (hd + 1);
    float* DS = lseS + DKV_QTILE;
    int b = blockIdx.z, kvh = blockIdx.y, group = nHeads / nKvHeads;
    int s0 = blockIdx.x * DKV_KTILE, nk = min(DKV_KTILE, T - s0);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int idx = threadIdx.x; idx < DKV_KTILE * hd; idx += blockDim.x) {
        int j = idx / hd, i = idx - j * hd;
        long g = (((long) b * T + s0 + j) * nKvHeads + kvh) * hd + i;
        Ks[idx] = j < nk ? k[g] : 0.0f;
        Vs[idx] = j < nk ? v[g] : 0.0f;
    }
    float gk[DKV_KPW][DPL], gv[DKV_KPW][DPL];
#pragma unroll
    for (int kk = 0; kk < DKV_KPW; kk++)
#pragma unroll
        for (int c = 0; c < DPL; c++) { gk[kk][c] = 0.0f; gv[kk][c] = 0.0f; }
    for (int hh = 0; hh < group; hh++) {
        int h = kvh * group + hh;
        for (int t0 = s0 - s0 % DKV_QTILE; t0 < T; t0 += DKV_QTILE) {
            __syncthreads(); // the previous query tile is consumed (and, the first time, K, V are written)
            for (int idx = threadIdx.x; idx < DKV_QTILE * hd; idx += blockDim.x) {
                int j = idx / hd, i = idx - j * hd;
                bool ok = t0 + j < T;
                long g = (((long) b * T + t0 + j) * nHeads + h) * hd + i;
                Qs[j * (hd + 1) + i] = ok ? q[g] : 0.0f;
                Gs[j * (hd + 1) + i] = ok ? dOut[g] : 0.0f;
            }
            if (threadIdx.x < DKV_QTILE) {
                int t = t0 + threadIdx.x;
                long r = ((long) b * T + t) * nHeads + h;
                lseS[threadIdx.x] = t < T ? lse[r] : 0.0f;
                DS[threadIdx.x] = t < T ? D[r] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < DKV_KPW; kk++) {
                int si = warp * DKV_KPW + kk, s = s0 + si;
                if (si >= nk || t0 + DKV_QTILE - 1 < s) continue; // warp-uniform: no query of the tile sees s
                int t = t0 + lane;
                bool valid = t < T && t >= s;
                float p = 0.0f, ds = 0.0f;
                if (valid) {
                    const float* qr = Qs + lane * (hd + 1); const float* gr = Gs + lane * (hd + 1);
                    const float* kr = Ks + si * hd; const float* vr = Vs + si * hd;
                    float dot = 0.0f, dp = 0.0f;
                    for (int i = 0; i < hd; i++) { dot += qr[i] * kr[i]; dp += gr[i] * vr[i]; }
                    p = expf(dot * scale - lseS[lane]);
                    ds = p * (dp - DS[lane]) * scale;
                }
                for (int j = 0; j < DKV_QTILE; j++) {
                    float pj = __shfl_sync(0xffffffffu, p, j), dsj = __shfl_sync(0xffffffffu, ds, j);
#pragma unroll
                    for (int c = 0; c < DPL; c++) {
                        int d = lane + 32 * c;
                        if (d < hd) {
                            gk[kk][c] += dsj * Qs[j * (hd + 1) + d];
                            gv[kk][c] += pj * Gs[j * (hd + 1) + d];
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int kk = 0; kk < DKV_KPW; kk++) {
        int si = warp * DKV_KPW + kk;
        if (si >= nk) continue;
        long base = (((long) b * T + s0 + si) * nKvHeads + kvh) * hd;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + 32 * c;
            if (d < hd) { dk[base + d] = gk[kk][c]; dv[base + d] = gv[kk][c]; }
        }
    }
}

// ---------------------------------------------------------------- launchers

template <typename Kernel>
static cudaError_t allow_smem(Kernel kernel, size_t bytes) {
    return bytes > 48 * 1024 ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes)
                             : cudaSuccess;
}

template <int DPL>
static int launch_attention(float* out, const float* q, const float* kc, const float* vc, int T, int startPos,
                            int nHeads, int nKvHeads, int hd, float scale, cudaStream_t s) {
    size_t smem = ((size_t) ATT_QTILE * hd + (size_t) ATT_KTILE * (hd + 1) + (size_t) ATT_KTILE * hd) * sizeof(float);
    cudaError_t err = allow_smem(attention_kernel<DPL>, smem);
    if (err != cudaSuccess) { (void) cudaGetLastError(); return (int) err; } // clear the pending error: returned here
    dim3 grid((unsigned) ((T + ATT_QTILE - 1) / ATT_QTILE), (unsigned) nHeads);
    attention_kernel<DPL><<<grid, ATT_WARPS * 32, smem, s>>>(out, q, kc, vc, T, startPos, nHeads, nKvHeads, hd, scale);
    return dive_launch_status();
}

extern "C" int dive_attention(float* d_out, const float* d_q, const float* d_kCache, const float* d_vCache, int T,
                              int startPos, int nHeads, int nKvHeads, int headDim, float scale, void* stream) {
    DIVE_REQUIRE(T >= 0 && startPos >= 0 && nHeads >= 1 && nKvHeads >= 1 && nHeads % nKvHeads == 0 && headDim >= 1 &&
                 headDim <= ATT_MAX_HEAD_DIM && nHeads <= 65535);
    if (T == 0) return 0;
    DIVE_REQUIRE(d_out && d_q && d_kCache && d_vCache);
    cudaStream_t s = dive_stream(stream);
    if (headDim <= 64) return launch_attention<2>(d_out, d_q, d_kCache, d_vCache, T, startPos, nHeads, nKvHeads, headDim, scale, s);
    if (headDim <= 128) return launch_attention<4>(d_out, d_q, d_kCache, d_vCache, T, startPos, nHeads, nKvHeads, headDim, scale, s);
    return launch_attention<8>(d_out, d_q, d_kCache, d_vCache, T, startPos, nHeads, nKvHeads, headDim, scale, s);
}

template <int DPL>
static int launch_attention_backward(float* dq, float* dk, float* dv, const float* dOut, const float* q, const float* k,
                                     const float* v, float* lse, float* D, int B, int T, int nHeads, int nKvHeads,
                                     int hd, float scale, cudaStream_t s) {
    size_t qSmem = (2 * (size_t) ATT_QTILE * hd + 2 * (size_t) ATT_KTILE * (hd + 1)) * sizeof(float);
    size_t kvSmem = (2 * (size_t) DKV_KTILE * hd + 2 * (size_t) DKV_QTILE * (hd + 1) + 2 * DKV_QTILE) * sizeof(float);
    cudaError_t err = allow_smem(attention_stats_kernel, qSmem);
    if (err == cudaSuccess) err = allow_smem(attention_dq_kernel<DPL>, qSmem);
    if (err == cudaSuccess) err = allow_smem(attention_dkdv_kernel<DPL>, kvSmem);
    if (err != cudaSuccess) return (int) err;
    dim3 qGrid((unsigned) ((T + ATT_QTILE - 1) / ATT_QTILE), (unsigned) nHeads, (unsigned) B);
    attention_stats_kernel<<<qGrid, ATT_WARPS * 32, qSmem, s>>>(lse, D, dOut, q, k, v, T, nHeads, nKvHeads, hd, scale);
    attention_dq_kernel<DPL><<<qGrid, ATT_WARPS * 32, qSmem, s>>>(dq, lse, D, dOut, q, k, v, T, nHeads, nKvHeads, hd,
                                                                  scale);
    dim3 kvGrid((unsigned) ((T + DKV_KTILE - 1) / DKV_KTILE), (unsigned) nKvHeads, (unsigned) B);
    attention_dkdv_kernel<DPL><<<kvGrid, ATT_WARPS * 32, kvSmem, s>>>(dk, dv, lse, D, dOut, q, k, v, T, nHeads,
                                                                      nKvHeads, hd, scale);
    return dive_launch_status();
}

extern "C" int dive_attention_backward(float* d_dq, float* d_dk, float* d_dv, const float* d_dOut, const float* d_q,
                                       const float* d_k, const float* d_v, int B, int T, int nHeads, int nKvHeads,
                                       int headDim, float scale, void* stream) {
    DIVE_REQUIRE(B >= 0 && T >= 0 && nHeads >= 1 && nKvHeads >= 1 && nHeads % nKvHeads == 0 && headDim >= 1 &&
                 headDim <= ATT_MAX_HEAD_DIM && nHeads <= 65535 && B <= 65535);
    if (B == 0 || T == 0) return 0;
    DIVE_REQUIRE(d_dq && d_dk && d_dv && d_dOut && d_q && d_k && d_v);
    cudaStream_t s = dive_stream(stream);
    size_t rowsStats = (size_t) B * T * nHeads; // lse and D per (b, t, h)
    void* scratch = nullptr;
    cudaError_t err = cudaMallocAsync(&scratch, 2 * rowsStats * sizeof(float), s);
    if (err != cudaSuccess) return (int) err;
    float* lse = (float*) scratch;
    float* D = lse + rowsStats;
    int status;
    if (headDim <= 64)
        status = launch_attention_backward<2>(d_dq, d_dk, d_dv, d_dOut, d_q, d_k, d_v, lse, D, B, T, nHeads, nKvHeads, headDim, scale, s);
    else if (headDim <= 128)
        status = launch_attention_backward<4>(d_dq, d_dk, d_dv, d_dOut, d_q, d_k, d_v, lse, D, B, T, nHeads, nKvHeads, headDim, scale, s);
    else
        status = launch_attention_backward<8>(d_dq, d_dk, d_dv, d_dOut, d_q, d_k, d_v, lse, D, B, T, nHeads, nKvHeads, headDim, scale, s);
    cudaError_t freeErr = cudaFreeAsync(scratch, s);
    return status ? status : (int) freeErr;
}
