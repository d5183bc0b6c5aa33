// loss.cu — fused softmax cross-entropy, one block per row; its mean over the counted rows on the device.
#include "common.cuh"

#define CE_THREADS 256

// max (F32), Σ e^(x − max) in double (fixed tree), loss = log Σ + max − x[target] in double, rounded to F32;
// dLogits = gradScale·(softmax − onehot). Every read of the row precedes the last barrier: dLogits may be logits.
// A bad target (outside [0, vocab), not −100) records its row in badIndex; its loss is NaN and its gradient zeros.
// LossT: float (dive_cross_entropy's per-row losses) or double (the mean's, summed without an F32 rounding). With
// `count` (the counted rows, on the device) the gradient scale is gradScale / count, as the CPU forms it in F32.
template <typename LossT>
__global__ void cross_entropy_kernel(LossT* loss, float* dLogits, const float* logits, const int* targets, int vocab,
                                     float gradScale, const int* count, int* badIndex) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    long r = blockIdx.x;
    const float* x = logits + r * vocab;
    int target = targets[r];
    bool ignored = target == -100, bad = !ignored && (target < 0 || target >= vocab);
    if (ignored || bad) {
        if (threadIdx.x == 0) {
            loss[r] = ignored ? (LossT) 0 : (LossT) __int_as_float(0x7fc00000);
            if (bad) dive_record_first(badIndex, (int) r);
        }
        if (dLogits)
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) dLogits[r * vocab + i] = 0.0f;
        return;
    }
    float max = -INFINITY;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) max = fmaxf(max, x[i]);
    max = dive_block_max(max, fscratch);
    double sum = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += (double) expf(x[i] - max);
    float targetLogit = x[target];
    sum = dive_block_sum(sum, dscratch);
    if (threadIdx.x == 0) loss[r] = (LossT) (log(sum) + max - targetLogit);
    if (dLogits) {
        if (count) {
            int c = *count;
            gradScale = c == 0 ? 0.0f : __fdiv_rn(gradScale, (float) c);
        }
        float inv = (float) (1.0 / sum);
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            float prob = expf(x[i] - max) * inv;
            dLogits[r * vocab + i] = (prob - (i == target ? 1.0f : 0.0f)) * gradScale;
        }
    }
}

extern "C" int dive_cross_entropy(float* d_loss, float* d_dLogits, const float* d_logits, const int* d_targets, int rows,
                                  int vocab, float gradScale, int* d_badIndex, void* stream) {
    DIVE_REQUIRE(rows >= 0 && vocab >= 1);
    if (rows == 0) return 0;
    DIVE_REQUIRE(d_loss && d_logits && d_targets && d_badIndex);
    cross_entropy_kernel<<<rows, CE_THREADS, 0, dive_stream(stream)>>>(d_loss, d_dLogits, d_logits, d_targets, vocab,
                                                                       gradScale, (const int*) nullptr, d_badIndex);
    return dive_launch_status();
}

// one block: count[0] = rows whose target is not −100 (an integer sum: order-free), badIndex[0] = −1
__global__ void count_targets_kernel(int* count, int* badIndex, const int* targets, int rows) {
    __shared__ int scratch[32];
    int c = 0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) c += targets[r] != -100;
    c = dive_block_sum(c, scratch);
    if (threadIdx.x == 0) {
        *count = c;
        *badIndex = -1;
    }
}

// one block: result = {Σ loss over the counted rows (double, fixed tree), counted rows, first bad row or −1}
__global__ void mean_loss_kernel(double* result, const double* loss, const int* targets, int rows, const int* count,
                                 const int* badIndex) {
    __shared__ double scratch[32];
    double s = 0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x)
        if (targets[r] != -100) s = __dadd_rn(s, loss[r]);
    s = dive_block_sum(s, scratch);
    if (threadIdx.x == 0) {
        result[0] = s;
        result[1] = (double) *count;
        result[2] = (double) *badIndex;
    }
}

extern "C" int dive_cross_entropy_mean(double* d_result, float* d_dLogits, const float* d_logits, const int* d_targets,
                                       int rows, int vocab, float gradScale, void* stream) {
    DIVE_REQUIRE(rows >= 0 && vocab >= 1);
    if (rows == 0) return 0; // nothing to count: d_result is not written
    DIVE_REQUIRE(d_result && d_logits && d_targets);
    cudaStream_t s = dive_stream(stream);
    void* scratch = nullptr; // rows doubles, then the count and the bad row
    cudaError_t err = cudaMallocAsync(&scratch, (size_t) rows * sizeof(double) + 2 * sizeof(int), s);
    if (err != cudaSuccess) { (void) cudaGetLastError(); return (int) err; } // clear the pending error: returned here
    double* loss = (double*) scratch;
    int* count = (int*) (loss + rows);
    int* bad = count + 1;
    count_targets_kernel<<<1, 1024, 0, s>>>(count, bad, d_targets, rows);
    cross_entropy_kernel<<<rows, CE_THREADS, 0, s>>>(loss, d_dLogits, d_logits, d_targets, vocab, gradScale,
                                                     (const int*) count, bad);
    mean_loss_kernel<<<1, 1024, 0, s>>>(d_result, loss, d_targets, rows, count, bad);
    err = cudaGetLastError();
    cudaError_t freeErr = cudaFreeAsync(scratch, s);
    if (err != cudaSuccess) return (int) err;
    return (int) freeErr;
}
