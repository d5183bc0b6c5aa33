// adamw.cu — one AdamW step in F32, in the order and roundings of dive.train.AdamW (torch's single-tensor formula):
// from the optimizer's hyper-parameters (dive_adamw) or from the per-step scalars it already formed (dive_adamw_step).
#include "common.cuh"

// Each product, quotient and sum is rounded on its own (__f*_rn: never fused into an FMA), as Java evaluates it.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, long n, float decayFactor, int decay,
                             float stepSize, float sqrtBiasCorrection2, float oneMinusBeta1, float beta2,
                             float oneMinusBeta2, float eps) {
    for (long i = blockIdx.x * (long) blockDim.x + threadIdx.x; i < n; i += (long) gridDim.x * blockDim.x) {
        float p = param[i];
        if (decay) p = __fmul_rn(p, decayFactor);
        float g = grad[i];
        float mi = __fadd_rn(m[i], __fmul_rn(oneMinusBeta1, __fsub_rn(g, m[i])));                 // m + (1−β1)·(g − m)
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(oneMinusBeta2, g), g)); // v·β2 + (1−β2)·g·g
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), sqrtBiasCorrection2), eps);
        p = __fsub_rn(p, __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
        m[i] = mi;
        v[i] = vi;
        param[i] = p;
    }
}

extern "C" int dive_adamw(float* d_param, const float* d_grad, float* d_m, float* d_v, long n, float lr, float beta1,
                          float beta2, float eps, float weightDecay, float biasCorrection1, float biasCorrection2,
                          void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_param && d_grad && d_m && d_v);
    // the per-step scalars, formed in double from the F32 arguments and rounded to F32 once (as AdamW.step does)
    float stepSize = (float) ((double) lr / (double) biasCorrection1);
    float sqrtBiasCorrection2 = (float) sqrt((double) biasCorrection2);
    float oneMinusBeta1 = (float) (1.0 - (double) beta1), oneMinusBeta2 = (float) (1.0 - (double) beta2);
    float decayFactor = (float) (1.0 - (double) lr * (double) weightDecay);
    int decay = weightDecay > 0;
    adamw_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_param, d_grad, d_m, d_v, n, decayFactor, decay,
                                                                      stepSize, sqrtBiasCorrection2, oneMinusBeta1,
                                                                      beta2, oneMinusBeta2, eps);
    return dive_launch_status();
}

extern "C" int dive_adamw_step(float* d_param, const float* d_grad, float* d_m, float* d_v, long n, int decay,
                               float decayFactor, float stepSize, float sqrtBiasCorrection2, float oneMinusBeta1,
                               float beta2, float oneMinusBeta2, float eps, void* stream) {
    DIVE_REQUIRE(n >= 0);
    if (n == 0) return 0;
    DIVE_REQUIRE(d_param && d_grad && d_m && d_v);
    adamw_kernel<<<dive_blocks(n, 256), 256, 0, dive_stream(stream)>>>(d_param, d_grad, d_m, d_v, n, decayFactor,
                                                                      decay != 0, stepSize, sqrtBiasCorrection2,
                                                                      oneMinusBeta1, beta2, oneMinusBeta2, eps);
    return dive_launch_status();
}
