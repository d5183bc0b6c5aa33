// reduce.cu — whole-tensor reductions: Σ x² accumulated in double on the device, the first non-finite index.
#include "common.cuh"
#include <math.h>

#define SSQ_THREADS 256
#define SSQ_MAX_BLOCKS 1024

// d_sum[0] += Σ x². Pass 1: block b sums (double) x[i]² over i = b·256 + t, stepping by the grid (a fixed assignment for a given n), then
// a fixed tree over the block: partial[b]. Pass 2: one block adds the partials in a fixed tree, then that sum to d_sum[0].
// Same n, same bits; the
// order is not the CPU's index order (documented in dive.h). x[i]² of an F32 is exact in double.
__global__ void sum_squares_partial_kernel(double* partial, const float* x, long n) {
    __shared__ double scratch[32];
    double s = 0;
    for (long i = blockIdx.x * (long) SSQ_THREADS + threadIdx.x; i < n; i += (long) gridDim.x * SSQ_THREADS) {
        double v = x[i];
        s = __dadd_rn(s, __dmul_rn(v, v));
    }
    s = dive_block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(double* sum, const double* partial, int count) {
    __shared__ double scratch[32];
    double s = 0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s = __dadd_rn(s, partial[i]);
    s = dive_block_sum(s, scratch);
    if (threadIdx.x == 0) *sum = __dadd_rn(*sum, s);
}

// index (as an unsigned 64-bit min, starting from all ones = −1) of the first NaN or infinite element
__global__ void first_non_finite_kernel(unsigned long long* index, const float* x, long n) {
    for (long i = blockIdx.x * (long) blockDim.x + threadIdx.x; i < n; i += (long) gridDim.x * blockDim.x)
        if (!isfinite(x[i])) atomicMin(index, (unsigned long long) i);
}

extern "C" int dive_sum_of_squares(double* d_sum, const float* d_x, long n, void* stream) {
    DIVE_REQUIRE(n >= 0 && d_sum && (n == 0 || d_x));
    if (n == 0) return 0;
    cudaStream_t s = dive_stream(stream);
    long blocks = (n + SSQ_THREADS * 8L - 1) / (SSQ_THREADS * 8L);
    if (blocks > SSQ_MAX_BLOCKS) blocks = SSQ_MAX_BLOCKS;
    double* partial = nullptr;
    cudaError_t err = cudaMallocAsync((void**) &partial, (size_t) blocks * sizeof(double), s);
    if (err != cudaSuccess) { (void) cudaGetLastError(); return (int) err; } // clear the pending error: returned here
    sum_squares_partial_kernel<<<(unsigned) blocks, SSQ_THREADS, 0, s>>>(partial, d_x, n);
    sum_partials_kernel<<<1, SSQ_THREADS, 0, s>>>(d_sum, partial, (int) blocks);
    err = cudaGetLastError();
    cudaError_t freeErr = cudaFreeAsync(partial, s);
    if (err != cudaSuccess) return (int) err;
    return (int) freeErr;
}

extern "C" int dive_first_non_finite(long* d_index, const float* d_x, long n, void* stream) {
    DIVE_REQUIRE(n >= 0 && d_index && (n == 0 || d_x));
    cudaStream_t s = dive_stream(stream);
    cudaError_t err = cudaMemsetAsync(d_index, 0xff, sizeof(long), s); // −1
    if (err != cudaSuccess) return (int) err;
    if (n == 0) return 0;
    first_non_finite_kernel<<<dive_blocks(n, 256), 256, 0, s>>>((unsigned long long*) d_index, d_x, n);
    return dive_launch_status();
}
