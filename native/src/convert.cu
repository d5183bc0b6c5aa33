// convert.cu — F32 ↔ BF16 (bf16 as unsigned short bit patterns).
#include "common.cuh"

__global__ void f32_to_bf16_kernel(unsigned short* out, const float* in, long n) {
    for (long i = blockIdx.x * (long) blockDim.x + threadIdx.x; i < n; i += (long) gridDim.x * blockDim.x)
        out[i] = dive_f32_to_bf16_bits(in[i]);
}

__global__ void bf16_to_f32_kernel(float* out, const unsigned short* in, long n) {
    for (long i = blockIdx.x * (long) blockDim.x + threadIdx.x; i < n; i += (long) gridDim.x * blockDim.x)
        out[i] = dive_bf16_bits_to_f32(in[i]);
}

extern "C" int dive_f32_to_bf16(void* d_out, const float* d_in, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_out && d_in);
    f32_to_bf16_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>((unsigned short*) d_out, d_in, n);
    return dive_launch_status();
}

extern "C" int dive_bf16_to_f32(float* d_out, const void* d_in, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_out && d_in);
    bf16_to_f32_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_out, (const unsigned short*) d_in, n);
    return dive_launch_status();
}
