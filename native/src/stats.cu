// stats.cu — FFN channel statistics in double, the device twin of dive.convert.ChannelStatistics.add.
#include "common.cuh"

// One thread per channel j walks the rows in order (the CPU's summation order, so the result is bitwise the CPU's):
// batch mean and Σh², then M2 about the batch mean, then Chan's merge into the running values.
// Consecutive threads read consecutive channels of a row: coalesced.
__global__ void channel_stats_kernel(double* mean, double* m2, double* sumSquares, long countBefore, const float* h,
                                     long rows, int width) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= width) return;
    double sum = 0, squares = 0;
    for (long n = 0; n < rows; n++) {
        double v = h[n * width + j];
        sum += v;
        squares += v * v;
    }
    double batchMean = sum / rows, batchM2 = 0;
    for (long n = 0; n < rows; n++) {
        double dev = h[n * width + j] - batchMean;
        batchM2 += dev * dev;
    }
    long na = countBefore, nb = rows, total = na + nb;
    double meanA = mean[j], delta = batchMean - meanA;
    mean[j] = meanA + delta * nb / total;
    m2[j] = m2[j] + batchM2 + delta * delta * ((double) na * nb / total);
    sumSquares[j] += squares;
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
