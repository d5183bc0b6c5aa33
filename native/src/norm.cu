// norm.cu — RMSNorm forward and backward. One block per row; row sums in double (as the CPU), reduced in a fixed tree.
#include "common.cuh"

#define NORM_THREADS 256
#define DW_CHUNK_ROWS 64 // rows per partial dWeight sum (backward), more when rows > 64·65535

// out[r, :] = x[r, :] · inv · weight, inv = (float) (1 / sqrt(Σx²/d + eps)) with Σx² in double
__global__ void rmsnorm_kernel(float* out, const float* x, const float* weight, int d, float eps) {
    __shared__ double scratch[32];
    const float* xr = x + (long) blockIdx.x * d;
    float* yr = out + (long) blockIdx.x * d;
    double ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += (double) xr[i] * xr[i];
    ss = dive_block_sum(ss, scratch); // every read of the row happens before this barrier: out may be x
    float inv = (float) (1.0 / sqrt(ss / d + eps));
    for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * inv * weight[i];
}

// inv per row (for the dWeight sums)
__global__ void rms_inv_kernel(float* inv, const float* x, int d, float eps) {
    __shared__ double scratch[32];
    const float* xr = x + (long) blockIdx.x * d;
    double ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += (double) xr[i] * xr[i];
    ss = dive_block_sum(ss, scratch);
    if (threadIdx.x == 0) inv[blockIdx.x] = (float) (1.0 / sqrt(ss / d + eps));
}

// partial[c, i] = Σ_{r in chunk c, in order} dOut[r, i]·x[r, i]·inv[r]
__global__ void dweight_partial_kernel(float* partial, const float* dOut, const float* x, const float* inv, int rows,
                                       int d, int chunkRows) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    int r0 = blockIdx.y * chunkRows, r1 = min(rows, r0 + chunkRows);
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) acc += dOut[(long) r * d + i] * x[(long) r * d + i] * inv[r];
    partial[(long) blockIdx.y * d + i] = acc;
}

// dWeight[i] += Σ_c partial[c, i], chunks in order
__global__ void dweight_final_kernel(float* dWeight, const float* partial, int chunks, int d) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    float acc = 0.0f;
    for (int c = 0; c < chunks; c++) acc += partial[(long) c * d + i];
    dWeight[i] += acc;
}

// dx[r, i] = inv·g[i]·dOut[r, i] − c·x[r, i], c = (float) (Σ_j g[j]·dOut[r, j]·x[r, j] · inv³ / d) with the sum in double
__global__ void rmsnorm_backward_kernel(float* dx, const float* dOut, const float* x, const float* weight, int d,
                                        float eps) {
    __shared__ double scratch[32];
    const float* xr = x + (long) blockIdx.x * d;
    const float* gr = dOut + (long) blockIdx.x * d;
    float* dxr = dx + (long) blockIdx.x * d;
    double ss = 0, dot = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        ss += (double) xr[i] * xr[i];
        dot += (double) weight[i] * gr[i] * xr[i];
    }
    ss = dive_block_sum(ss, scratch);
    dot = dive_block_sum(dot, scratch); // all reads of dOut happen before this barrier: dx may be dOut
    float inv = (float) (1.0 / sqrt(ss / d + eps));
    float c = (float) (dot * inv * inv * inv / d);
    for (int i = threadIdx.x; i < d; i += blockDim.x) dxr[i] = inv * weight[i] * gr[i] - c * xr[i];
}

extern "C" int dive_rmsnorm(float* d_out, const float* d_x, const float* d_weight, int rows, int d, float eps,
                            void* stream) {
    DIVE_REQUIRE(rows >= 0 && d >= 0);
    if (rows == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_out && d_x && d_weight);
    rmsnorm_kernel<<<rows, NORM_THREADS, 0, dive_stream(stream)>>>(d_out, d_x, d_weight, d, eps);
    return dive_launch_status();
}

extern "C" int dive_rmsnorm_backward(float* d_dx, float* d_dWeight, const float* d_dOut, const float* d_x,
                                     const float* d_weight, int rows, int d, float eps, void* stream) {
    DIVE_REQUIRE(rows >= 0 && d >= 0);
    if (rows == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_dx && d_dOut && d_x && d_weight);
    cudaStream_t s = dive_stream(stream);
    if (d_dWeight) { // first, while dOut is intact (dx may be dOut): inv per row, partial sums per chunk, then in order
        int chunkRows = max(DW_CHUNK_ROWS, (rows + 65534) / 65535); // grid.y ≤ 65535
        int chunks = (rows + chunkRows - 1) / chunkRows;
        void* scratch = nullptr;
        cudaError_t err = cudaMallocAsync(&scratch, ((size_t) rows + (size_t) chunks * d) * sizeof(float), s);
        if (err != cudaSuccess) { (void) cudaGetLastError(); return (int) err; } // clear the pending error: returned here
        float* inv = (float*) scratch;
        float* partial = inv + rows;
        rms_inv_kernel<<<rows, NORM_THREADS, 0, s>>>(inv, d_x, d, eps);
        dweight_partial_kernel<<<dim3((d + 127) / 128, chunks), 128, 0, s>>>(partial, d_dOut, d_x, inv, rows, d, chunkRows);
        dweight_final_kernel<<<(d + 127) / 128, 128, 0, s>>>(d_dWeight, partial, chunks, d);
        err = cudaGetLastError();
        cudaError_t freeErr = cudaFreeAsync(scratch, s);
        if (err != cudaSuccess) return (int) err;
        if (freeErr != cudaSuccess) return (int) freeErr;
    }
    rmsnorm_backward_kernel<<<rows, NORM_THREADS, 0, s>>>(d_dx, d_dOut, d_x, d_weight, d, eps);
    return dive_launch_status();
}
