// stats.cu — FFN channel statistics in double, the device twin of dive.convert.ChannelStatistics.add.
#include "common.cuh"

// One thread per channel j walks the rows in order (the CPU's summation order, so the result is bitwise the CPU's):
// batch mean and Σh², then M2 about the batch mean, then Chan's merge into the running values.
// Consecutive threads read consecutive channels of a row: coalesced. (Parallel over channels only: widths are the
// FFN's F, thousands of channels.)
__global__ void channel_stats_kernel(double* mean, double* m2, double* sumSquares, long countBefore, const float* h,
                                     long rows, int width) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= width) return;
    // __d*_rn: every product and sum rounded on its own (never fused into an FMA), as Java evaluates it
    double sum = 0, squares = 0;
    for (long n = 0; n < rows; n++) {
        double v = h[n * width + j];
        sum = __dadd_rn(sum, v);
        squares = __dadd_rn(squares, __dmul_rn(v, v));
    }
    double batchMean = __ddiv_rn(sum, (double) rows), batchM2 = 0;
    for (long n = 0; n < rows; n++) {
        double dev = __dsub_rn((double) h[n * width + j], batchMean);
        batchM2 = __dadd_rn(batchM2, __dmul_rn(dev, dev));
    }
    long na = countBefore, nb = rows, total = na + nb;
    double meanA = mean[j], delta = __dsub_rn(batchMean, meanA);
    mean[j] = __dadd_rn(meanA, __ddiv_rn(__dmul_rn(delta, (double) nb), (double) total));       // meanA + δ·nb/n
    double cross = __dmul_rn(__dmul_rn(delta, delta), __ddiv_rn(__dmul_rn((double) na, (double) nb), (double) total));
    m2[j] = __dadd_rn(__dadd_rn(m2[j], batchM2), cross);                                        // M2a + M2b + δ²·na·nb/n
    sumSquares[j] = __dadd_rn(sumSquares[j], squares);
}

extern "C" int dive_channel_stats_update(double* d_mean, double* d_m2, double* d_sumSquares, long countBefore,
                                         const float* d_h, long rows, int width, void* stream) {
    DIVE_REQUIRE(countBefore >= 0 && rows >= 0 && width >= 0);
    if (rows == 0 || width == 0) return 0; // an empty batch changes nothing (Chan's update with nb = 0)
    DIVE_REQUIRE(d_mean && d_m2 && d_sumSquares && d_h);
    channel_stats_kernel<<<(width + 127) / 128, 128, 0, dive_stream(stream)>>>(d_mean, d_m2, d_sumSquares, countBefore,
                                                                               d_h, rows, width);
    return dive_launch_status();
}
