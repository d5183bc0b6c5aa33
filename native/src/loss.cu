// loss.cu — fused softmax cross-entropy, one block per row.
#include "common.cuh"

#define CE_THREADS 256

// max (F32), Σ e^(x − max) in double (fixed tree), loss = log Σ + max − x[target] in double, rounded to F32;
// dLogits = gradScale·(softmax − onehot). Every read of the row precedes the last barrier: dLogits may be logits.
// A bad target (outside [0, vocab), not −100) records its row in badIndex; its loss is NaN and its gradient zeros.
__global__ void cross_entropy_kernel(float* loss, float* dLogits, const float* logits, const int* targets, int vocab,
                                     float gradScale, int* badIndex) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    long r = blockIdx.x;
    const float* x = logits + r * vocab;
    int target = targets[r];
    bool ignored = target == -100, bad = !ignored && (target < 0 || target >= vocab);
    if (ignored || bad) {
        if (threadIdx.x == 0) {
            loss[r] = ignored ? 0.0f : __int_as_float(0x7fc00000);
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
    if (threadIdx.x == 0) loss[r] = (float) (log(sum) + max - targetLogit);
    if (dLogits) {
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
                                                                       gradScale, d_badIndex);
    return dive_launch_status();
}
