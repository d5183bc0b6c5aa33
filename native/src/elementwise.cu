// elementwise.cu — SwiGLU and its gradient (also over the rows in use, counted on the device), scaled add, embedding
// lookup and its gradient, bias add and gradient, scale, multiply, counter-based dropout (also per expert, drawing as
// a loop over the experts does), ordered row scatter-add.
#include "common.cuh"

#define GRID_STRIDE(i, n) for (long i = blockIdx.x * (long) blockDim.x + threadIdx.x; i < (n); i += (long) gridDim.x * blockDim.x)

// out = gate / (1 + e^(−gate)) · up, in the CPU's F32 order (expf: within an ulp or two of Java's Math.exp)
__device__ __forceinline__ void swiglu_at(float* out, const float* gate, const float* up, long i) {
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

__device__ __forceinline__ void swiglu_backward_at(float* dGate, float* dUp, const float* dOut, const float* gate,
                                                   const float* up, long i) {
    float g = gate[i], sig = 1.0f / (1.0f + expf(-g));
    dGate[i] = dOut[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    dUp[i] = dOut[i] * g * sig;
}

__global__ void swiglu_kernel(float* out, const float* gate, const float* up, long n) {
    GRID_STRIDE(i, n) swiglu_at(out, gate, up, i);
}

__global__ void swiglu_backward_kernel(float* dGate, float* dUp, const float* dOut, const float* gate, const float* up,
                                       long n) {
    GRID_STRIDE(i, n) swiglu_backward_at(dGate, dUp, dOut, gate, up, i);
}

// the rows in use only: n = min(*rowCount, maxRows) · width, the count read on the device (offsets[E] of the experts)
__device__ __forceinline__ long rows_in_use(const int* rowCount, long maxRows, int width) {
    long rows = *rowCount;
    if (rows < 0) rows = 0;
    if (rows > maxRows) rows = maxRows;
    return rows * width;
}

__global__ void swiglu_rows_kernel(float* out, const float* gate, const float* up, const int* rowCount, long maxRows,
                                   int width) {
    long n = rows_in_use(rowCount, maxRows, width);
    GRID_STRIDE(i, n) swiglu_at(out, gate, up, i);
}

__global__ void swiglu_backward_rows_kernel(float* dGate, float* dUp, const float* dOut, const float* gate,
                                            const float* up, const int* rowCount, long maxRows, int width) {
    long n = rows_in_use(rowCount, maxRows, width);
    GRID_STRIDE(i, n) swiglu_backward_at(dGate, dUp, dOut, gate, up, i);
}

// block per permuted row (strided): thread 0 finds the row's expert; element c of row i of expert e takes draw
// firstDraw + offsets[e]·stride + count_e·prefix + i·width + c (a loop over the experts' linears drawing in order)
__global__ void expert_dropout_kernel(float* mask, float* xDropped, const float* x, const int* offsets, int E,
                                      long rowsBound, int width, unsigned long long seed, unsigned long long firstDraw,
                                      long stride, long prefix, double p, float keep) {
    __shared__ int expert;
    for (long r = blockIdx.y; r < rowsBound; r += gridDim.y) {
        __syncthreads(); // the previous row is done with `expert`
        if (threadIdx.x == 0) expert = dive_expert_of_row(offsets, E, rowsBound, r);
        __syncthreads();
        int e = expert;
        if (e < 0) continue; // block-uniform
        long first = offsets[e], count = offsets[e + 1] - first, i = r - first;
        unsigned long long base = firstDraw + (unsigned long long) (first * stride) + (unsigned long long) (count * prefix)
                                  + (unsigned long long) (i * width);
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < width; c += gridDim.x * blockDim.x) {
            long at = r * width + c;
            float m = dive_splittable_draw(seed, base + (unsigned long long) c) < p ? 0.0f : keep;
            mask[at] = m;
            xDropped[at] = __fmul_rn(x[at], m);
        }
    }
}

__global__ void add_scaled_kernel(float* x, const float* y, float a, long n) {
    GRID_STRIDE(i, n) x[i] += a * y[i];
}

// grid.y over tokens (strided), threads over the row
template <typename T>
__global__ void embedding_kernel(float* out, const T* table, const int* ids, int T_, int vocab, int d, int* badIndex) {
    for (int t = blockIdx.y; t < T_; t += gridDim.y) {
        int id = ids[t];
        bool ok = id >= 0 && id < vocab;
        if (!ok && blockIdx.x == 0 && threadIdx.x == 0) dive_record_first(badIndex, t); // the first bad t
        float* dst = out + (long) t * d;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < d; i += gridDim.x * blockDim.x) {
            float v = 0.0f;
            if (ok) {
                if constexpr (sizeof(T) == 2) v = dive_bf16_bits_to_f32(table[(long) id * d + i]);
                else v = table[(long) id * d + i];
            }
            dst[i] = v;
        }
    }
}

// one thread per column walks the tokens in order: dTable[ids[t], i] += dOut[t, i] for t = 0, 1, …
__global__ void embedding_backward_kernel(float* dTable, const float* dOut, const int* ids, int T_, int d) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    for (int t = 0; t < T_; t++) {
        int id = ids[t];
        if (id < 0) continue; // never written by a well-formed caller (ids were checked by the forward pass)
        dTable[(long) id * d + i] += dOut[(long) t * d + i];
    }
}

extern "C" int dive_swiglu(float* d_out, const float* d_gate, const float* d_up, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_out && d_gate && d_up);
    swiglu_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_out, d_gate, d_up, n);
    return dive_launch_status();
}

extern "C" int dive_swiglu_backward(float* d_dGate, float* d_dUp, const float* d_dOut, const float* d_gate,
                                    const float* d_up, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_dGate && d_dUp && d_dOut && d_gate && d_up);
    swiglu_backward_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_dGate, d_dUp, d_dOut, d_gate, d_up, n);
    return dive_launch_status();
}

extern "C" int dive_add_scaled(float* d_x, const float* d_y, float a, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_x && d_y);
    add_scaled_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_x, d_y, a, n);
    return dive_launch_status();
}

extern "C" int dive_embedding(float* d_out, const void* d_table, int elementBytes, const int* d_ids, int T, int vocab,
                              int d, int* d_badIndex, void* stream) {
    DIVE_REQUIRE(T >= 0 && vocab >= 0 && d >= 0 && (elementBytes == 2 || elementBytes == 4));
    if (T == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_out && d_table && d_ids && d_badIndex);
    unsigned gx = (unsigned) ((d + 255) / 256 < 16 ? (d + 255) / 256 : 16);
    dim3 grid(gx, (unsigned) (T < 65535 ? T : 65535));
    if (elementBytes == 2)
        embedding_kernel<<<grid, 256, 0, dive_stream(stream)>>>(d_out, (const unsigned short*) d_table, d_ids, T, vocab, d,
                                                                d_badIndex);
    else
        embedding_kernel<<<grid, 256, 0, dive_stream(stream)>>>(d_out, (const float*) d_table, d_ids, T, vocab, d,
                                                                d_badIndex);
    return dive_launch_status();
}

extern "C" int dive_embedding_backward(float* d_dTable, const float* d_dOut, const int* d_ids, int T, int d,
                                       void* stream) {
    DIVE_REQUIRE(T >= 0 && d >= 0);
    if (T == 0 || d == 0) return 0;
    DIVE_REQUIRE(d_dTable && d_dOut && d_ids);
    embedding_backward_kernel<<<(d + 127) / 128, 128, 0, dive_stream(stream)>>>(d_dTable, d_dOut, d_ids, T, d);
    return dive_launch_status();
}

// ---------------------------------------------------------------- bias, scale, multiply, dropout, row scatter

// y[r, j] += bias[j]: one add per element (exact as the CPU's)
__global__ void add_bias_kernel(float* y, const float* bias, long n, int width) {
    GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], bias[i % width]);
}

__global__ void scale_kernel(float* x, float a, long n) {
    GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], a);
}

__global__ void multiply_kernel(float* x, const float* y, long n) {
    GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], y[i]);
}

// one thread per column walks the rows in order: db[j] += dy[r, j] for r = 0, 1, … (the CPU's order, the same bits)
__global__ void bias_backward_kernel(float* db, const float* dy, long rows, int width) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= width) return;
    float acc = db[j];
    for (long r = 0; r < rows; r++) acc = __fadd_rn(acc, dy[r * width + j]);
    db[j] = acc;
}

__global__ void dropout_kernel(float* mask, float* xDropped, const float* x, long n, unsigned long long seed,
                               unsigned long long firstDraw, double p, float keep) {
    GRID_STRIDE(i, n) {
        float m = dive_splittable_draw(seed, firstDraw + (unsigned long long) i) < p ? 0.0f : keep;
        mask[i] = m;
        xDropped[i] = __fmul_rn(x[i], m);
    }
}

// one thread per column walks the sources in order: x[rows[r], i] += src[r, i] for r = 0, 1, …; a row outside
// [0, xRows) is skipped and recorded (the smallest such r) in badIndex when given
__global__ void scatter_add_rows_kernel(float* x, const float* src, const int* rows, int count, int width, int xRows,
                                        int* badIndex) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= width) return;
    for (int r = 0; r < count; r++) {
        int row = rows[r];
        if (row < 0 || row >= xRows) {
            if (badIndex && i == 0) dive_record_first(badIndex, r);
            continue;
        }
        long at = (long) row * width + i;
        x[at] = __fadd_rn(x[at], src[(long) r * width + i]);
    }
}

extern "C" int dive_add_bias(float* d_y, const float* d_bias, long rows, int width, void* stream) {
    DIVE_REQUIRE(rows >= 0 && width >= 0);
    if (rows == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_y && d_bias);
    long n = rows * width;
    add_bias_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_y, d_bias, n, width);
    return dive_launch_status();
}

extern "C" int dive_scale(float* d_x, float a, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_x);
    scale_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_x, a, n);
    return dive_launch_status();
}

extern "C" int dive_multiply(float* d_x, const float* d_y, long n, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_x && d_y);
    multiply_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_x, d_y, n);
    return dive_launch_status();
}

extern "C" int dive_bias_backward(float* d_db, const float* d_dy, long rows, int width, void* stream) {
    DIVE_REQUIRE(rows >= 0 && width >= 0);
    if (rows == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_db && d_dy);
    bias_backward_kernel<<<(width + 127) / 128, 128, 0, dive_stream(stream)>>>(d_db, d_dy, rows, width);
    return dive_launch_status();
}

extern "C" int dive_dropout(float* d_mask, float* d_xDropped, const float* d_x, long n, long seed, long firstDraw,
                            double p, float keep, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_mask && d_xDropped && d_x);
    dropout_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_mask, d_xDropped, d_x, n,
                                                                        (unsigned long long) seed,
                                                                        (unsigned long long) firstDraw, p, keep);
    return dive_launch_status();
}

extern "C" int dive_scatter_add_rows(float* d_x, const float* d_src, const int* d_rows, int count, int width, int xRows,
                                     int* d_badIndex, void* stream) {
    DIVE_REQUIRE(count >= 0 && width >= 0 && xRows >= 0);
    if (count == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_x && d_src && d_rows);
    scatter_add_rows_kernel<<<(width + 127) / 128, 128, 0, dive_stream(stream)>>>(d_x, d_src, d_rows, count, width,
                                                                                  xRows, d_badIndex);
    return dive_launch_status();
}

extern "C" int dive_swiglu_rows(float* d_out, const float* d_gate, const float* d_up, const int* d_rowCount, long maxRows,
                                int width, void* stream) {
    DIVE_REQUIRE(maxRows >= 0 && width >= 0);
    if (maxRows == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_out && d_gate && d_up && d_rowCount);
    swiglu_rows_kernel<<<dive_blocks(maxRows * width, 256), 256, 0, dive_stream(stream)>>>(d_out, d_gate, d_up, d_rowCount,
                                                                                          maxRows, width);
    return dive_launch_status();
}

extern "C" int dive_swiglu_backward_rows(float* d_dGate, float* d_dUp, const float* d_dOut, const float* d_gate,
                                         const float* d_up, const int* d_rowCount, long maxRows, int width,
                                         void* stream) {
    DIVE_REQUIRE(maxRows >= 0 && width >= 0);
    if (maxRows == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_dGate && d_dUp && d_dOut && d_gate && d_up && d_rowCount);
    swiglu_backward_rows_kernel<<<dive_blocks(maxRows * width, 256), 256, 0, dive_stream(stream)>>>(
            d_dGate, d_dUp, d_dOut, d_gate, d_up, d_rowCount, maxRows, width);
    return dive_launch_status();
}

extern "C" int dive_expert_dropout(float* d_mask, float* d_xDropped, const float* d_x, const int* d_offsets,
                                   int numExperts, long rows, int width, long seed, long firstDraw, int stride,
                                   int prefix, double p, float keep, void* stream) {
    DIVE_REQUIRE(numExperts >= 1 && rows >= 0 && width >= 0 && stride >= 0 && prefix >= 0);
    if (rows == 0 || width == 0) return 0;
    DIVE_REQUIRE(d_mask && d_xDropped && d_x && d_offsets);
    int gx = (width + 255) / 256;
    dim3 grid((unsigned) (gx > 16 ? 16 : gx), (unsigned) (rows < 65535 ? rows : 65535));
    expert_dropout_kernel<<<grid, 256, 0, dive_stream(stream)>>>(d_mask, d_xDropped, d_x, d_offsets, numExperts, rows, width,
                                                                 (unsigned long long) seed, (unsigned long long) firstDraw,
                                                                 stride, prefix, p, keep);
    return dive_launch_status();
}
