// prune.cu — row and column gathers (structured pruning, the MoE permutation), for 2- and 4-byte elements; the
// checked F32 row gather that also converts to bf16 (the grouped matmuls' operands).
#include "common.cuh"

// grid.y walks output rows (strided), threads walk the width
template <typename T>
__global__ void gather_rows_kernel(T* out, const T* in, const int* index, int count, long width) {
    for (long r = blockIdx.y; r < count; r += gridDim.y) {
        const T* src = in + (long) index[r] * width;
        T* dst = out + r * width;
        for (long i = blockIdx.x * (long) blockDim.x + threadIdx.x; i < width; i += (long) gridDim.x * blockDim.x)
            dst[i] = src[i];
    }
}

template <typename T>
__global__ void gather_columns_kernel(T* out, const T* in, const int* index, long rows, int width, int count) {
    for (long r = blockIdx.y; r < rows; r += gridDim.y) {
        const T* src = in + r * width;
        T* dst = out + r * count;
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < count; c += gridDim.x * blockDim.x)
            dst[c] = src[index[c]];
    }
}

static dim3 row_grid(long rows, long width) {
    long x = (width + 255) / 256;
    if (x > 64) x = 64;
    long y = rows < 65535 ? rows : 65535;
    return dim3((unsigned) (x < 1 ? 1 : x), (unsigned) (y < 1 ? 1 : y));
}

extern "C" int dive_gather_rows(void* d_out, const void* d_in, const int* d_index, int count, long width,
                                int elementBytes, void* stream) {
    DIVE_REQUIRE(count >= 0 && width >= 0 && (elementBytes == 2 || elementBytes == 4));
    if (count == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_out && d_in && d_index);
    dim3 grid = row_grid(count, width);
    if (elementBytes == 2)
        gather_rows_kernel<<<grid, 256, 0, dive_stream(stream)>>>((unsigned short*) d_out, (const unsigned short*) d_in,
                                                                  d_index, count, width);
    else
        gather_rows_kernel<<<grid, 256, 0, dive_stream(stream)>>>((float*) d_out, (const float*) d_in, d_index, count, width);
    return dive_launch_status();
}

extern "C" int dive_gather_columns(void* d_out, const void* d_in, const int* d_index, long rows, int width, int count,
                                   int elementBytes, void* stream) {
    DIVE_REQUIRE(rows >= 0 && width >= 0 && count >= 0 && (elementBytes == 2 || elementBytes == 4));
    if (rows == 0 || count == 0) return 0;
    DIVE_REQUIRE(width > 0 && d_out && d_in && d_index);
    dim3 grid = row_grid(rows, count);
    if (elementBytes == 2)
        gather_columns_kernel<<<grid, 256, 0, dive_stream(stream)>>>((unsigned short*) d_out, (const unsigned short*) d_in,
                                                                     d_index, rows, width, count);
    else
        gather_columns_kernel<<<grid, 256, 0, dive_stream(stream)>>>((float*) d_out, (const float*) d_in, d_index, rows,
                                                                     width, count);
    return dive_launch_status();
}

// Rows r < n = min(*count, maxCount) (maxCount without a count): src = rows[r] (r without a row map); a row outside
// [0, xRows) is written as zeros and recorded (the smallest such r) in badIndex when given.
template <bool BF16>
__global__ void gather_convert_rows_kernel(void* out, const float* x, int xRows, const int* rows, const int* count,
                                           int maxCount, int width, int* badIndex) {
    int n = maxCount;
    if (count) n = min(max(*count, 0), maxCount);
    for (long r = blockIdx.y; r < n; r += gridDim.y) {
        int src = rows ? rows[r] : (int) r;
        bool ok = src >= 0 && src < xRows;
        if (!ok && badIndex && blockIdx.x == 0 && threadIdx.x == 0) dive_record_first(badIndex, (int) r);
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += gridDim.x * blockDim.x) {
            float v = ok ? x[(long) src * width + i] : 0.0f;
            if (BF16) ((unsigned short*) out)[r * width + i] = dive_f32_to_bf16_bits(v);
            else ((float*) out)[r * width + i] = v;
        }
    }
}

extern "C" int dive_gather_convert_rows(void* d_out, int outBf16, const float* d_x, int xRows, const int* d_rows,
                                        const int* d_count, int maxCount, int width, int* d_badIndex, void* stream) {
    DIVE_REQUIRE(xRows >= 0 && maxCount >= 0 && width >= 0);
    if (maxCount == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_out && d_x);
    dim3 grid = row_grid(maxCount, width);
    if (outBf16)
        gather_convert_rows_kernel<true><<<grid, 256, 0, dive_stream(stream)>>>(d_out, d_x, xRows, d_rows, d_count,
                                                                                maxCount, width, d_badIndex);
    else
        gather_convert_rows_kernel<false><<<grid, 256, 0, dive_stream(stream)>>>(d_out, d_x, xRows, d_rows, d_count,
                                                                                 maxCount, width, d_badIndex);
    return dive_launch_status();
}
