// route.cu — router top-k and the expert permutation (a stable counting sort), all on the device; soft routing
// (softmax over every expert), expert counts, the routing weights' gradient onto the logits.
#include "common.cuh"
#include <limits.h>

#define MAX_EXPERTS 256

// One thread per token, the CPU's selection loop as written: k times, the largest logit not yet taken (strict >, so
// ties keep the lower index; a NaN never compares greater). Then softmax over the k chosen logits: max (NaN wins, as
// Java's Math.max), e = (float) exp(x − max), Σ in double, × (float) (1/Σ).
__global__ void route_topk_kernel(int* expertIds, float* expertWeights, const float* logits, int n, int E, int k) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    const float* row = logits + (long) t * E;
    unsigned taken[MAX_EXPERTS / 32];
    for (int w = 0; w < MAX_EXPERTS / 32; w++) taken[w] = 0;
    int* ids = expertIds + (long) t * k;
    float* wts = expertWeights + (long) t * k;
    for (int s = 0; s < k; s++) {
        int best = -1;
        float bestLogit = 0.0f;
        for (int e = 0; e < E; e++) {
            if (taken[e >> 5] & (1u << (e & 31))) continue;
            float v = row[e];
            if (best < 0 || v > bestLogit) { best = e; bestLogit = v; }
        }
        taken[best >> 5] |= 1u << (best & 31);
        ids[s] = best;
        wts[s] = bestLogit;
    }
    float max = -INFINITY;
    for (int s = 0; s < k; s++) {
        float v = wts[s];
        max = (v != v || max != max) ? __int_as_float(0x7fc00000) : fmaxf(max, v);
    }
    double sum = 0;
    for (int s = 0; s < k; s++) {
        float e = (float) exp((double) (wts[s] - max));
        wts[s] = e;
        sum += e;
    }
    float inv = (float) (1.0 / sum);
    for (int s = 0; s < k; s++) wts[s] *= inv;
}

#define SORT_THREADS 1024
#define SORT_WARPS (SORT_THREADS / 32)

// One block. (1) histogram (integer shared atomics: order-free), bad ids recorded (the smallest flat index wins) and
// sorted as expert 0 so the permutation stays one; (2) prefix sum by one thread (E ≤ 256); (3) stable positions, tile
// by tile of SORT_THREADS assignments in index order: each warp counts its lanes per id (__match_any_sync), one thread
// per expert turns the per-warp counts into each warp's first row (warps in order, from the expert's next free row)
// and advances that row; a lane's row is its warp's first row plus its rank among equal ids inside the warp.
__global__ void __launch_bounds__(SORT_THREADS) sort_by_expert_kernel(int* offsets, int* rowToken, int* slotRow,
                                                                      int* badAssignment, const int* ids, int n, int k,
                                                                      int E) {
    __shared__ int next[MAX_EXPERTS];                  // counts, then the next free row of each expert
    __shared__ int warpCount[SORT_WARPS * MAX_EXPERTS]; // [warp][expert] counts of the current tile
    __shared__ int firstBad;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int total = n * k;
    for (int e = tid; e < E; e += blockDim.x) next[e] = 0;
    if (tid == 0) firstBad = INT_MAX;
    __syncthreads();
    for (int i = tid; i < total; i += blockDim.x) {
        int e = ids[i];
        if (e < 0 || e >= E) { atomicMin(&firstBad, i); e = 0; }
        atomicAdd(&next[e], 1);
    }
    __syncthreads();
    if (tid == 0) {
        int sum = 0;
        for (int e = 0; e < E; e++) {
            int c = next[e];
            offsets[e] = sum;
            next[e] = sum;
            sum += c;
        }
        offsets[E] = sum;
        *badAssignment = firstBad == INT_MAX ? -1 : firstBad;
    }
    for (int base = 0; base < total; base += blockDim.x) {
        for (int j = tid; j < SORT_WARPS * E; j += blockDim.x) warpCount[j] = 0;
        __syncthreads(); // also orders the prefix sum (first tile) and the previous tile's advance before this tile
        int i = base + tid;
        bool valid = i < total;
        int e = -1;
        if (valid) {
            e = ids[i];
            if (e < 0 || e >= E) e = 0;
        }
        unsigned peers = __match_any_sync(0xffffffffu, e);
        int rankInWarp = __popc(peers & ((1u << lane) - 1u));
        if (valid && rankInWarp == 0) warpCount[warp * E + e] = __popc(peers); // the first lane of each id group
        __syncthreads();
        for (int x = tid; x < E; x += blockDim.x) { // per expert: the first row of each warp's group, warps in order
            int row = next[x];
            for (int w = 0; w < SORT_WARPS; w++) {
                int c = warpCount[w * E + x];
                warpCount[w * E + x] = row;
                row += c;
            }
            next[x] = row;
        }
        __syncthreads();
        if (valid) {
            int row = warpCount[warp * E + e] + rankInWarp;
            rowToken[row] = i / k;
            slotRow[i] = row;
        }
        __syncthreads(); // every row is read before the next tile clears warpCount
    }
}

extern "C" int dive_route_topk(int* d_expertIds, float* d_expertWeights, const float* d_routerLogits, int n,
                               int numExperts, int k, void* stream) {
    DIVE_REQUIRE(n >= 0 && k >= 1 && k <= numExperts && numExperts <= MAX_EXPERTS);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_expertIds && d_expertWeights && d_routerLogits);
    route_topk_kernel<<<(n + 127) / 128, 128, 0, dive_stream(stream)>>>(d_expertIds, d_expertWeights, d_routerLogits, n,
                                                                        numExperts, k);
    return dive_launch_status();
}

extern "C" int dive_sort_by_expert(int* d_offsets, int* d_rowToken, int* d_slotRow, int* d_badAssignment,
                                   const int* d_expertIds, int n, int k, int numExperts, void* stream) {
    DIVE_REQUIRE(n >= 0 && k >= 1 && numExperts >= 1 && numExperts <= MAX_EXPERTS && (long) n * k <= INT_MAX);
    DIVE_REQUIRE(d_offsets && d_badAssignment);
    if (n == 0) { // no assignments: every expert owns an empty range, nothing is bad
        int err = (int) cudaMemsetAsync(d_offsets, 0, (size_t) (numExperts + 1) * sizeof(int), dive_stream(stream));
        if (err) return err;
        return (int) cudaMemsetAsync(d_badAssignment, 0xff, sizeof(int), dive_stream(stream)); // −1
    }
    DIVE_REQUIRE(d_rowToken && d_slotRow && d_expertIds);
    sort_by_expert_kernel<<<1, SORT_THREADS, 0, dive_stream(stream)>>>(d_offsets, d_rowToken, d_slotRow, d_badAssignment,
                                                                       d_expertIds, n, k, numExperts);
    return dive_launch_status();
}

// ---------------------------------------------------------------- soft routing, expert counts, routing gradient

// The CPU's softmax of one row, as route_topk_kernel does it: max with NaN winning, e = (float) exp(x − max), Σ in
// double in order, × (float) (1/Σ)
__device__ void softmax_row(float* w, int n) {
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        float v = w[j];
        max = (v != v || max != max) ? __int_as_float(0x7fc00000) : fmaxf(max, v);
    }
    double sum = 0;
    for (int j = 0; j < n; j++) {
        float e = (float) exp((double) (w[j] - max));
        w[j] = e;
        sum += e;
    }
    float inv = (float) (1.0 / sum);
    for (int j = 0; j < n; j++) w[j] = __fmul_rn(w[j], inv);
}

// One thread per token: w = logits · invTemperature (F32), then softmax_row; ids = 0 .. E−1.
__global__ void soft_routing_kernel(int* expertIds, float* expertWeights, const float* logits, int n, int E,
                                    float invTemperature) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    const float* row = logits + (long) t * E;
    int* ids = expertIds + (long) t * E;
    float* w = expertWeights + (long) t * E;
    for (int j = 0; j < E; j++) {
        w[j] = __fmul_rn(row[j], invTemperature);
        ids[j] = j;
    }
    softmax_row(w, E);
}

// one thread per row
__global__ void softmax_rows_kernel(float* x, long rows, int n) {
    for (long r = blockIdx.x * (long) blockDim.x + threadIdx.x; r < rows; r += (long) gridDim.x * blockDim.x)
        softmax_row(x + r * n, n);
}

// counts[id] += 1 (integer atomics: the count does not depend on the order); an id outside [0, countsSize) is
// skipped and recorded (the smallest index) in badIndex when given
__global__ void count_experts_kernel(int* counts, int countsSize, const int* ids, int assignments, int* badIndex) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < assignments; i += gridDim.x * blockDim.x) {
        int id = ids[i];
        if (id < 0 || id >= countsSize) {
            if (badIndex) dive_record_first(badIndex, i);
            continue;
        }
        atomicAdd(counts + id, 1);
    }
}

// One thread per token, the CPU's loop as written: mean = Σ_s (double) w·dw in slot order, then per slot
// dLogits[t, id] += (float) (w · (dw − mean) · invTemperature), every double operation rounded on its own.
__global__ void routing_backward_kernel(float* dLogits, const float* w, const float* dw, const int* ids, int n, int slots,
                                        int E, double invTemperature, int* badIndex) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    long base = (long) t * slots;
    double mean = 0;
    for (int s = 0; s < slots; s++) mean = __dadd_rn(mean, __dmul_rn((double) w[base + s], (double) dw[base + s]));
    for (int s = 0; s < slots; s++) {
        int id = ids[base + s];
        if (id < 0 || id >= E) {
            if (badIndex) dive_record_first(badIndex, (int) (base + s));
            continue;
        }
        double g = __dmul_rn(__dmul_rn((double) w[base + s], __dsub_rn((double) dw[base + s], mean)), invTemperature);
        long at = (long) t * E + id;
        dLogits[at] = __fadd_rn(dLogits[at], (float) g);
    }
}

extern "C" int dive_soft_routing(int* d_expertIds, float* d_expertWeights, const float* d_routerLogits, int n,
                                 int numExperts, float invTemperature, void* stream) {
    DIVE_REQUIRE(n >= 0 && numExperts >= 1);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_expertIds && d_expertWeights && d_routerLogits);
    soft_routing_kernel<<<(n + 127) / 128, 128, 0, dive_stream(stream)>>>(d_expertIds, d_expertWeights, d_routerLogits,
                                                                          n, numExperts, invTemperature);
    return dive_launch_status();
}

extern "C" int dive_softmax_rows(float* d_x, long rows, int n, void* stream) {
    DIVE_REQUIRE(rows >= 0 && n >= 0);
    if (rows == 0 || n == 0) return 0;
    DIVE_REQUIRE(d_x);
    softmax_rows_kernel<<<dive_blocks(rows, 128), 128, 0, dive_stream(stream)>>>(d_x, rows, n);
    return dive_launch_status();
}

extern "C" int dive_count_experts(int* d_counts, int countsSize, const int* d_expertIds, int assignments,
                                  int* d_badIndex, void* stream) {
    DIVE_REQUIRE(countsSize >= 0 && assignments >= 0);
    if (assignments == 0) return 0;
    DIVE_REQUIRE(d_counts && d_expertIds);
    count_experts_kernel<<<dive_blocks(assignments, 256, 1024), 256, 0, dive_stream(stream)>>>(
            d_counts, countsSize, d_expertIds, assignments, d_badIndex);
    return dive_launch_status();
}

extern "C" int dive_routing_backward(float* d_dLogits, const float* d_weights, const float* d_dWeights,
                                     const int* d_expertIds, int n, int slots, int numExperts, double invTemperature,
                                     int* d_badIndex, void* stream) {
    DIVE_REQUIRE(n >= 0 && slots >= 1 && numExperts >= 1);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_dLogits && d_weights && d_dWeights && d_expertIds);
    routing_backward_kernel<<<(n + 127) / 128, 128, 0, dive_stream(stream)>>>(d_dLogits, d_weights, d_dWeights,
                                                                              d_expertIds, n, slots, numExperts,
                                                                              invTemperature, d_badIndex);
    return dive_launch_status();
}

// *flag = the first-bad-index rule (−1 = none, else the smaller) applied to *index: folds one call's result into a flag
// that stays set across calls until the caller clears it
__global__ void fold_first_index_kernel(int* flag, const int* index) {
    int v = *index;
    if (v >= 0) dive_record_first(flag, v);
}

extern "C" int dive_fold_first_index(int* d_flag, const int* d_index, void* stream) {
    DIVE_REQUIRE(d_flag && d_index);
    fold_first_index_kernel<<<1, 1, 0, dive_stream(stream)>>>(d_flag, d_index);
    return dive_launch_status();
}
