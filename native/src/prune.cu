// prune.cu — row and column gathers (structured pruning, the MoE permutation), for 2- and 4-byte elements.
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
