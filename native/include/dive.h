/*
 * dive.h — the one C header of the native (CUDA) library, libdive.so.
 *
 * Rules of the boundary (the Java bindings in bindings/ mirror this file, one function each):
 *   - extern "C"; every function returns an int status: 0 = success, otherwise the cudaError_t of the
 *     failing call (launch errors are read with cudaGetLastError right after the launch), or
 *     DIVE_ERR_ARGUMENT (10001) when an argument is impossible (negative size, null required pointer).
 *   - no structs cross the boundary: pointers and integers only. `long` is 64-bit (LP64).
 *   - pointers named d_* or documented "device" point to device memory; everything else is host memory.
 *   - every kernel launcher is asynchronous on `stream` (a cudaStream_t, NULL = the legacy default stream)
 *     and never synchronises the host; only dive_stream_sync, dive_memcpy_d2h_sync and dive_event_elapsed do.
 *   - shapes are written as in the Java Backend: `x (rows, d)` is row-major; weights use PyTorch's
 *     Linear layout `w (out, in)`. bf16 values are passed as `unsigned short` bit patterns (void* here).
 *   - results are deterministic: no floating-point atomics; reductions run in a fixed order.
 *
 * cudart is linked statically into libdive.so, so the CUDA runtime calls the engine needs are the
 * dive_* runtime wrappers below (no CUDA toolkit needed at run time, only the driver). cuBLAS is NOT linked:
 * the Java side finds libcublas at run time and binds the few calls it uses (bindings/…/cublas_h.java).
 *
 * Kernels live one family per file in native/src/: runtime.cu, convert.cu, stats.cu, prune.cu, route.cu,
 * moe.cu, elementwise.cu, norm.cu, rope.cu, attention.cu, loss.cu, adamw.cu, reduce.cu.
 *
 * Per-expert arguments (weights, biases, gradients of E experts) are HOST arrays of E device pointers, named h_*:
 * the launcher passes them to the kernel by value (no copy of the pointers to the device, nothing cached), at most
 * DIVE_MAX_TABLE_EXPERTS of them.
 */
#ifndef DIVE_H
#define DIVE_H

#ifdef __cplusplus
extern "C" {
#endif

#define DIVE_ERR_ARGUMENT 10001

/* the most experts a per-expert pointer table (h_* arguments) holds */
#define DIVE_MAX_TABLE_EXPERTS 256

/* ============================================================ runtime.cu: discovery, memory, streams, events */

/* library ABI version: *major changes when a signature changes */
int dive_version(int* major, int* minor);

/* number of CUDA devices visible; fails with cudaErrorInsufficientDriver (35) or cudaErrorNoDevice (100) */
int dive_device_count(int* count);

/* name of a status (cudaError_t, or DIVE_ERR_ARGUMENT) as text, into buf (NUL-terminated, at most len bytes) */
int dive_error_string(int status, char* buf, long len);

/* CUDA driver and runtime versions, e.g. 13000 for 13.0 (the driver's is 0 when there is none) */
int dive_driver_version(int* driverVersion, int* runtimeVersion);

/* make `device` current for the calling thread */
int dive_set_device(int device);

/* device properties: name (NUL-terminated, at most nameLen bytes), total memory, compute capability, SM count */
int dive_device_info(int device, char* name, long nameLen, long* totalMemoryBytes, int* ccMajor, int* ccMinor,
                     int* multiprocessors);

/* free and total memory of the current device */
int dive_mem_info(long* freeBytes, long* totalBytes);

/* cudaMalloc / cudaFree (plain device memory, never managed) */
int dive_malloc(void** d_ptr, long bytes);
int dive_free(void* d_ptr);

/* streams */
int dive_stream_create(void** stream);
int dive_stream_destroy(void* stream);
int dive_stream_sync(void* stream);

/* copies, asynchronous on stream (host memory should be pinned or the copy is staged by the driver) */
int dive_memcpy_h2d(void* d_dst, const void* src, long bytes, void* stream);
int dive_memcpy_d2d(void* d_dst, const void* d_src, long bytes, void* stream);
int dive_memset(void* d_dst, int byteValue, long bytes, void* stream);
/* device → host, then synchronises the stream (the result is in dst on return) */
int dive_memcpy_d2h_sync(void* dst, const void* d_src, long bytes, void* stream);

/* events for timing on the device */
int dive_event_create(void** event);
int dive_event_destroy(void* event);
int dive_event_record(void* event, void* stream);
/* waits for `end`, then *ms = time between start and end in milliseconds */
int dive_event_elapsed(float* ms, void* start, void* end);

/* ============================================================ convert.cu: dtype conversion */

/* out[i] = bf16(in[i]) (round to nearest even, NaN kept NaN), i < n */
int dive_f32_to_bf16(void* d_out, const float* d_in, long n, void* stream);
/* out[i] = f32(in[i]) (exact), i < n */
int dive_bf16_to_f32(float* d_out, const void* d_in, long n, void* stream);

/* ============================================================ stats.cu: FFN channel statistics */

/*
 * Merges one batch h (rows, width) F32 into running per-channel statistics held in double on the device:
 * count (host-known, passed as countBefore), mean (width), m2 (width) = Σ (h − mean)², sumSquares (width) = Σ h².
 * The batch is reduced exactly (its mean, then M2 about that mean, in double) and merged with Chan et al.'s
 * update: n = na + nb, δ = mean_b − mean_a, mean += δ·nb/n, M2 = M2_a + M2_b + δ²·na·nb/n. rows ≥ 1 (rows = 0 changes
 * nothing). Rows are summed in order and every double operation is rounded on its own (no FMA), as Java's
 * ChannelStatistics.add evaluates it, so the result is bitwise the CPU's.
 */
int dive_channel_stats_update(double* d_mean, double* d_m2, double* d_sumSquares, long countBefore,
                              const float* d_h, long rows, int width, void* stream);

/* ============================================================ prune.cu: channel gather for structured pruning */

/*
 * Row gather: out[r, :] = in[index[r], :] for r < count; in (·, width), out (count, width); elements of
 * elementBytes bytes (2 = bf16/f16, 4 = f32). Prunes gate_proj / up_proj (F, H) to the kept channels, and gathers
 * activation rows for the MoE permutation (Backend.gather).
 */
int dive_gather_rows(void* d_out, const void* d_in, const int* d_index, int count, long width, int elementBytes,
                     void* stream);

/* Column gather: out[r, c] = in[r, index[c]] for r < rows, c < count; in (rows, width), out (rows, count). Prunes
 * down_proj (H, F) to the kept channels. */
int dive_gather_columns(void* d_out, const void* d_in, const int* d_index, long rows, int width, int count,
                        int elementBytes, void* stream);

/*
 * Checked F32 row gather with an optional conversion: for r < n = min(*d_count, maxCount) (n = maxCount when d_count
 * is null), src = d_rows[r] (src = r when d_rows is null): out[r, :] = x[src, :], as bf16 bits (round to nearest even)
 * when outBf16 ≠ 0, else F32. x (xRows, width); out (maxCount, width), rows ≥ n untouched. A src outside [0, xRows)
 * writes a zero row and sets *d_badIndex to the smallest such r when d_badIndex is given (the caller sets −1 before).
 * d_count is read ON THE DEVICE (e.g. offsets + numExperts: the grouped matmuls' row count), so only the rows in use
 * are converted while maxCount stays a host-known bound.
 */
int dive_gather_convert_rows(void* d_out, int outBf16, const float* d_x, int xRows, const int* d_rows,
                             const int* d_count, int maxCount, int width, int* d_badIndex, void* stream);

/* ============================================================ route.cu: router top-k and the expert permutation */

/*
 * Top-k routing: routerLogits (n, numExperts) F32 → expertIds (n, k): per token the k largest logits in descending
 * order, ties to the lower expert index; expertWeights (n, k): softmax over those k logits (max-subtracted, F32).
 * A NaN logit propagates into that token's weights. 1 ≤ k ≤ numExperts ≤ 256.
 */
int dive_route_topk(int* d_expertIds, float* d_expertWeights, const float* d_routerLogits, int n, int numExperts,
                    int k, void* stream);

/*
 * Expert histogram, prefix sum and stable permutation (a counting sort), all on the device:
 * expertIds (n, k) → offsets (numExperts + 1): expert e owns permuted rows [offsets[e], offsets[e+1]),
 * offsets[numExperts] = n·k; rowToken (n·k): the token of each permuted row, in token order within an expert;
 * slotRow (n, k): the permuted row of (token, slot). An id outside [0, numExperts) sets *d_badAssignment to the
 * first such flat index (token·k + slot); it is −1 otherwise (read it back whenever convenient: no sync here).
 * A bad id is sorted as expert 0, so the outputs remain a permutation and later kernels stay in bounds.
 * k ≥ 1, 1 ≤ numExperts ≤ 256, n·k < 2^31; n = 0 only zeroes offsets and sets *d_badAssignment = −1.
 */
int dive_sort_by_expert(int* d_offsets, int* d_rowToken, int* d_slotRow, int* d_badAssignment,
                        const int* d_expertIds, int n, int k, int numExperts, void* stream);

/* *d_flag = min(*d_flag, *d_index) where −1 means "none" (dive_sort_by_expert's badAssignment, which it sets on every
 * call, folded into a flag that stays set until the caller clears it) */
int dive_fold_first_index(int* d_flag, const int* d_index, void* stream);

/*
 * Soft routing over all experts: expertIds[t, j] = j; expertWeights[t, :] = softmax(routerLogits[t, :]·invTemperature)
 * (the product rounded to F32, then the CPU's softmax: max, (float) exp(x − max), Σ in double in order, × (float) 1/Σ).
 * All (n, numExperts). One thread per token.
 */
int dive_soft_routing(int* d_expertIds, float* d_expertWeights, const float* d_routerLogits, int n, int numExperts,
                      float invTemperature, void* stream);

/* softmax of every row of x (rows, n) in place, the CPU's loop (max, (float) exp(x − max), Σ in double in order,
 * × (float) 1/Σ), one thread per row (routing widths; a wide row runs serially) */
int dive_softmax_rows(float* d_x, long rows, int n, void* stream);

/* counts[id] += 1 for every id of expertIds[0 .. assignments) (integer atomics); an id outside [0, countsSize) is
 * skipped and sets *d_badIndex to the smallest such index when d_badIndex is given (the caller sets −1 before) */
int dive_count_experts(int* d_counts, int countsSize, const int* d_expertIds, int assignments, int* d_badIndex,
                       void* stream);

/*
 * Gradient of the routing weights' softmax onto the logits, accumulated, per token t (one thread, the CPU's loop):
 * mean = Σ_s (double) w[t, s]·dw[t, s], dLogits[t, ids[t, s]] += (float) (w[t, s]·(dw[t, s] − mean)·invTemperature),
 * every double operation rounded on its own (bitwise the CPU's). weights, dWeights F32 (n, slots), expertIds (n, slots)
 * → dLogits (n, numExperts). An id outside [0, numExperts) is skipped and recorded in *d_badIndex when given.
 */
int dive_routing_backward(float* d_dLogits, const float* d_weights, const float* d_dWeights, const int* d_expertIds,
                          int n, int slots, int numExperts, double invTemperature, int* d_badIndex, void* stream);

/* ============================================================ moe.cu: grouped expert matmul and the weighted sum */

/*
 * Grouped matmul on BF16 tensor cores with F32 accumulation: for every expert e and permuted row
 * r in [offsets[e], offsets[e+1]): out[r, :] = x[r, :] · w[e]ᵀ (+ bias[e, :]).
 * x (rows, K) bf16; w (numExperts, N, K) bf16, experts contiguous; bias null or (numExperts, N) F32;
 * out (rows, N) F32. offsets (numExperts + 1) are read ON THE DEVICE (no host sync); `rows` is an upper
 * bound of offsets[numExperts] (n·k), used only to size the launch. Experts without rows read nothing; rows past
 * offsets[numExperts] are not written. numExperts ≥ 1.
 */
int dive_grouped_matmul_bf16(float* d_out, const void* d_x, const int* d_offsets, const void* d_w, const float* d_bias,
                             int numExperts, int rows, int N, int K, void* stream);

/*
 * The same product with F32 operands (CUDA cores, F32 throughout): the exact twin of the CPU's groupedMatmul (each
 * output summed over K in order, products and sums rounded separately, no FMA: bitwise ScalarBackend's loop).
 * x (rows, K) F32, w (numExperts, N, K) F32, bias null or (numExperts, N) F32 → out (rows, N) F32.
 */
int dive_grouped_matmul_f32(float* d_out, const float* d_x, const int* d_offsets, const float* d_w,
                            const float* d_bias, int numExperts, int rows, int N, int K, void* stream);

/*
 * Weighted un-permute and sum: y[t, :] = Σ_{s < k} expertWeights[t, s] · expertOut[slotRow[t, s], :], summed in slot
 * order. expertOut (n·k, d), slotRow, expertWeights (n, k) → y (n, d), overwritten.
 */
int dive_combine_experts(float* d_y, const float* d_expertOut, const int* d_slotRow, const float* d_expertWeights,
                         int n, int k, int d, void* stream);

/*
 * Gradient of dive_combine_experts: for token t, slot s, r = slotRow[t, s]:
 * dExpertOut[r, :] = expertWeights[t, s] · dy[t, :]; dWeights[t, s] = Σ_i dy[t, i] · expertOut[r, i] (fixed order).
 */
int dive_combine_experts_backward(float* d_dExpertOut, float* d_dWeights, const float* d_dy, const float* d_expertOut,
                                  const int* d_slotRow, const float* d_expertWeights, int n, int k, int d, void* stream);

/* Gradient of the MoE gather, accumulated per token in slot order: dx[t, :] += Σ_{s<k} dRows[slotRow[t, s], :].
 * dRows (n·k, d), slotRow (n, k) → dx (n, d). */
int dive_unpermute_add(float* d_dx, const float* d_dRows, const int* d_slotRow, int n, int k, int d, void* stream);

/*
 * The grouped matmuls with the experts' weights as a table (h_w: E device pointers, one allocation each; h_bias null
 * or E pointers, each null or (N) F32), rows read from the device offsets exactly as dive_grouped_matmul_*:
 *   backwardInput = 0: out (rows, N) = in (rows, K) · w[e]ᵀ (+ bias[e])         (the forward)
 *   backwardInput = 1: out (rows, K) = in (rows, N) · w[e]  (h_bias must be null) (the input gradient)
 * w[e] (N, K) as stored in both. BF16: in and w bf16, tensor cores, F32 accumulation (the BF16 kernel's tiles; the
 * 16-byte path needs the depth (and for backwardInput the width) % 8 == 0 and every pointer 16-byte aligned). F32: each
 * output summed over the depth in order, products and sums rounded separately (no FMA). 1 ≤ numExperts ≤ 256.
 */
int dive_grouped_gemm_bf16(float* d_out, const void* d_in, const int* d_offsets, const void* const* h_w,
                           const float* const* h_bias, int numExperts, int rows, int N, int K, int backwardInput,
                           void* stream);
int dive_grouped_gemm_f32(float* d_out, const float* d_in, const int* d_offsets, const float* const* h_w,
                          const float* const* h_bias, int numExperts, int rows, int N, int K, int backwardInput,
                          void* stream);

/*
 * Per-expert weight gradient, accumulated: dw[e] (N, K) += Σ_{r ∈ rows of e} dOut[r, :]ᵀ · x[r, :] for every e with
 * h_dw[e] not null; dOut (rows, N), x (rows, K) F32. A block per (64 × 64 tile, expert) sums the expert's rows in
 * order (products and sums rounded separately) and adds its sum to dw last. 1 ≤ numExperts ≤ 256.
 */
int dive_grouped_weight_grad_f32(float* const* h_dw, const float* d_dOut, const float* d_x, const int* d_offsets,
                                 int numExperts, int rows, int N, int K, void* stream);

/* out[r, :] += bias[e] (d) for the rows r of every expert e whose h_bias[e] is not null; out (rows, d) */
int dive_expert_add_bias(float* d_out, const int* d_offsets, const float* const* h_bias, int numExperts, int rows, int d,
                         void* stream);

/* db[e] (d) += Σ over the rows of e of dy (rows, d), in row order (one thread per column: bitwise the CPU's), for
 * every e whose h_db[e] is not null */
int dive_expert_bias_backward(float* const* h_db, const float* d_dy, const int* d_offsets, int numExperts, int rows,
                              int d, void* stream);

/* ============================================================ elementwise.cu */

/* out[i] = SiLU(gate[i]) · up[i], i < n; out may alias gate */
int dive_swiglu(float* d_out, const float* d_gate, const float* d_up, long n, void* stream);

/* σ = 1/(1+e^(−gate)): dGate = dOut·up·σ·(1 + gate·(1 − σ)), dUp = dOut·gate·σ; overwritten, no aliasing */
int dive_swiglu_backward(float* d_dGate, float* d_dUp, const float* d_dOut, const float* d_gate, const float* d_up,
                         long n, void* stream);

/* x[i] += a · y[i], i < n (a = 1: the residual add) */
int dive_add_scaled(float* d_x, const float* d_y, float a, long n, void* stream);

/* out[t, :] = table[ids[t], :] as F32; table (vocab, d) of elementBytes 2 (bf16) or 4 (f32); ids checked against
 * vocab: an id outside [0, vocab) sets *d_badIndex to t (the smallest such t; else it stays −1: the caller sets −1
 * before) and writes zeros for that row. d_badIndex is required. */
int dive_embedding(float* d_out, const void* d_table, int elementBytes, const int* d_ids, int T, int vocab, int d,
                   int* d_badIndex, void* stream);

/* dTable[ids[t], :] += dOut[t, :] for t = 0, 1, … in order (one thread per column: deterministic) */
int dive_embedding_backward(float* d_dTable, const float* d_dOut, const int* d_ids, int T, int d, void* stream);

/* y[r, j] += bias[j]; y (rows, width), bias (width) F32 */
int dive_add_bias(float* d_y, const float* d_bias, long rows, int width, void* stream);

/* x[i] ·= a, i < n */
int dive_scale(float* d_x, float a, long n, void* stream);

/* x[i] ·= y[i], i < n */
int dive_multiply(float* d_x, const float* d_y, long n, void* stream);

/* db[j] += Σ_r dy[r, j] in row order (one thread per column: bitwise the CPU's); dy (rows, width), db (width) */
int dive_bias_backward(float* d_db, const float* d_dy, long rows, int width, void* stream);

/*
 * Inverted dropout with the draws of java.util.SplittableRandom(seed) numbered from firstDraw (counter-based: every
 * element on its own): u_i = (mix64(seed + (i + 1)·0x9E3779B97F4A7C15) >>> 11)·2⁻⁵³ (bit for bit Java's),
 * mask[j] = u_{firstDraw + j} < p ? 0 : keep, xDropped[j] = x[j]·mask[j], j < n. keep = (float) (1 / (1 − p)), formed
 * by the caller. All (n) F32.
 */
int dive_dropout(float* d_mask, float* d_xDropped, const float* d_x, long n, long seed, long firstDraw, double p,
                 float keep, void* stream);

/* dive_swiglu and dive_swiglu_backward over the rows in use only: n = min(*d_rowCount, maxRows)·width elements, the
 * count read ON THE DEVICE (offsets + numExperts: the permuted rows of the experts); elements past n untouched. Element
 * by element, so the values are those of one call per expert. */
int dive_swiglu_rows(float* d_out, const float* d_gate, const float* d_up, const int* d_rowCount, long maxRows,
                     int width, void* stream);
int dive_swiglu_backward_rows(float* d_dGate, float* d_dUp, const float* d_dOut, const float* d_gate, const float* d_up,
                              const int* d_rowCount, long maxRows, int width, void* stream);

/*
 * dive_dropout of one linear of every expert, drawing as a loop over the experts does: element c < width of row i of
 * expert e (permuted row offsets[e] + i, count_e rows) takes draw firstDraw + offsets[e]·stride + count_e·prefix +
 * i·width + c (stride: the draws per row of all of an expert's dropping linears; prefix: those of the linears before
 * this one). mask, xDropped, x (rows, width) with rows ≥ offsets[numExperts] a host-known bound; rows past
 * offsets[numExperts] untouched. A block per row finds its expert by bisection of the device offsets.
 */
int dive_expert_dropout(float* d_mask, float* d_xDropped, const float* d_x, const int* d_offsets, int numExperts,
                        long rows, int width, long seed, long firstDraw, int stride, int prefix, double p, float keep,
                        void* stream);

/*
 * x[rows[r], :] += src[r, :] for r = 0, 1, …, count − 1 in that order (one thread per column walks the sources: a
 * fixed order per element, bitwise the CPU's). src (count, width), x (xRows, width). A row outside [0, xRows) is
 * skipped and sets *d_badIndex to the smallest such r when d_badIndex is given (the caller sets −1 before). The
 * gradient of a gather, and of an embedding lookup (x = dTable).
 */
int dive_scatter_add_rows(float* d_x, const float* d_src, const int* d_rows, int count, int width, int xRows,
                          int* d_badIndex, void* stream);

/* ============================================================ norm.cu */

/* out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight; x (rows, d), weight (d) F32; out may be x */
int dive_rmsnorm(float* d_out, const float* d_x, const float* d_weight, int rows, int d, float eps, void* stream);

/*
 * inv = 1/sqrt(mean(x²) + eps) per row, g = weight:
 * dx[r, i] = inv·g[i]·dOut[r, i] − inv³/d · x[r, i] · Σ_j g[j]·dOut[r, j]·x[r, j]  (overwritten; dx may be dOut);
 * dWeight[i] += Σ_r dOut[r, i]·x[r, i]·inv_r in row order (skipped when dWeight is null): partial sums over fixed
 * chunks of rows, then the chunks in order, with a temporary from the stream-ordered allocator (cudaMallocAsync).
 */
int dive_rmsnorm_backward(float* d_dx, float* d_dWeight, const float* d_dOut, const float* d_x, const float* d_weight,
                          int rows, int d, float eps, void* stream);

/* ============================================================ rope.cu */

/*
 * Rotary embedding in place, HF rotate_half layout: pair (i, i + hd/2) of each head, angle = positions[r]·invFreq[i];
 * (a, b) → (a·cos − b·sin, b·cos + a·sin); with inverse ≠ 0 the inverse rotation (the backward pass). headDim even;
 * cos and sin of the F32 angle are taken in double and rounded to F32, as the CPU does.
 * x (rows, heads, headDim), positions (rows), invFreq (headDim/2).
 */
int dive_rope(float* d_x, int rows, int heads, int headDim, const int* d_positions, const float* d_invFreq,
              int inverse, void* stream);

/* ============================================================ attention.cu */

/*
 * Causal grouped-query attention, tiled flash-style (online softmax in F32): T new queries of one sequence.
 * q (T, nHeads, hd); kCache, vCache (maxSeq, nKvHeads, hd) hold positions 0 .. startPos+T−1; query t sits at
 * startPos + t and attends to 0 .. startPos + t; query head h reads KV head h / (nHeads / nKvHeads).
 * → out (T, nHeads, hd). headDim ≤ 256.
 */
int dive_attention(float* d_out, const float* d_q, const float* d_kCache, const float* d_vCache, int T, int startPos,
                   int nHeads, int nKvHeads, int headDim, float scale, void* stream);

/*
 * Backward of causal GQA over B sequences of T positions from position 0 (training); probabilities recomputed:
 * p = softmax(scale·q·kᵀ) (causal), dP = dOut·vᵀ, dS = p ⊙ (dP − Σ_s p·dP): dq = scale·dS·k, dk = scale·dSᵀ·q,
 * dv = pᵀ·dOut, dk and dv summed over the query heads sharing a KV head in a fixed order. headDim ≤ 256.
 * Takes a temporary (B·T·nHeads·8 bytes) from the stream-ordered allocator (cudaMallocAsync), freed on the stream.
 * q, dOut (B, T, nHeads, hd); k, v (B, T, nKvHeads, hd) → dq, dk, dv, all overwritten.
 */
int dive_attention_backward(float* d_dq, float* d_dk, float* d_dv, const float* d_dOut, const float* d_q,
                            const float* d_k, const float* d_v, int B, int T, int nHeads, int nKvHeads, int headDim,
                            float scale, void* stream);

/* ============================================================ loss.cu */

/*
 * Fused softmax cross-entropy per row (F32, max-subtracted): loss[r] = −log softmax(logits[r])[targets[r]],
 * 0 for rows with targets[r] == −100 (ignored). When dLogits is not null:
 * dLogits[r] = gradScale · (softmax(logits[r]) − onehot(targets[r])), zeros on ignored rows (the caller folds
 * 1/count into gradScale). logits (rows, vocab), targets (rows) → loss (rows), dLogits (rows, vocab);
 * dLogits may be logits. A target outside [0, vocab) other than −100 sets *d_badIndex to its row (the smallest such
 * row; the caller sets −1 before); that row's loss is NaN and its dLogits zeros. vocab ≥ 1; d_badIndex is required.
 */
int dive_cross_entropy(float* d_loss, float* d_dLogits, const float* d_logits, const int* d_targets, int rows,
                       int vocab, float gradScale, int* d_badIndex, void* stream);

/*
 * dive_cross_entropy over the rows, then their mean on the device: d_result (3 doubles) = {Σ loss over the rows whose
 * target is not −100 (each row's loss in double, summed in a fixed tree), the count of those rows, the first row with
 * a target outside [0, vocab) or −1}. dLogits (null: no gradient) = gradScale/count · (softmax − onehot), the scale
 * formed in F32 as the CPU does (0 when no row counts). The host reads d_result once (one device → host copy) and
 * divides. Temporaries (rows doubles, two ints) from the stream-ordered allocator. rows = 0: nothing is written.
 */
int dive_cross_entropy_mean(double* d_result, float* d_dLogits, const float* d_logits, const int* d_targets, int rows,
                            int vocab, float gradScale, void* stream);

/* ============================================================ adamw.cu */

/*
 * One AdamW step in F32, torch's single-tensor formula, over n values:
 * param ·= (1 − lr·weightDecay)  (the caller passes weightDecay 0 for parameters it does not decay);
 * m = m + (1−β1)·(g − m)  (torch's lerp);  v = β2·v + (1−β2)·g·g;
 * param −= (lr / biasCorrection1) · m / (sqrt(v) / sqrt(biasCorrection2) + eps)  — each product rounded in F32 as
 * dive.train.AdamW does.
 * biasCorrection1 = 1 − β1^step, biasCorrection2 = 1 − β2^step, computed by the caller in double.
 * The per-step scalars lr/biasCorrection1, sqrt(biasCorrection2), 1 − β1, 1 − β2 and 1 − lr·weightDecay are formed in
 * double from these F32 arguments and rounded to F32 once; the element loop is then AdamW.step's, operation for
 * operation. AdamW.step forms the scalars from its double β, lr, so they can differ in the last bit (e.g. 1 − β1 from
 * β1 = 0.9f is 0.10000002f, from 0.9 it is 0.1f). weightDecay = 0 skips the decay multiply.
 */
int dive_adamw(float* d_param, const float* d_grad, float* d_m, float* d_v, long n, float lr, float beta1, float beta2,
               float eps, float weightDecay, float biasCorrection1, float biasCorrection2, void* stream);

/*
 * The same step with the per-step scalars already formed by the caller (Backend.AdamWStep: each rounded to F32 once),
 * so the element loop gives the CPU's bits: p ·= decayFactor (if decay ≠ 0); m = m + oneMinusBeta1·(g − m);
 * v = v·beta2 + oneMinusBeta2·g·g; p −= stepSize · m / (sqrt(v) / sqrtBiasCorrection2 + eps).
 */
int dive_adamw_step(float* d_param, const float* d_grad, float* d_m, float* d_v, long n, int decay, float decayFactor,
                    float stepSize, float sqrtBiasCorrection2, float oneMinusBeta1, float beta2, float oneMinusBeta2,
                    float eps, void* stream);

/* ============================================================ reduce.cu: whole-tensor reductions */

/* *d_sum += Σ_{i<n} (double) x[i]², in double on the device (a global gradient norm: one accumulator over many
 * tensors, read once at the end): per-block partial sums over a grid fixed by n, the partials in a fixed tree, then
 * added to *d_sum (deterministic for a given n, but not the CPU's index order: the last bits can differ). n = 0
 * changes nothing. A temporary (≤ 1024 doubles) from the stream-ordered allocator. */
int dive_sum_of_squares(double* d_sum, const float* d_x, long n, void* stream);

/* *d_index = the smallest i < n with x[i] NaN or infinite, or −1 (set by this call; integer atomics) */
int dive_first_non_finite(long* d_index, const float* d_x, long n, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* DIVE_H */
