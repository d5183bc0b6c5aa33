// probe.cu — version and device discovery: the calls the Java side makes before choosing a backend.
#include "dive.h"
#include <cuda_runtime.h>
#include <string.h>

extern "C" int dive_version(int* major, int* minor) {
    *major = 0;
    *minor = 1;
    return 0;
}

extern "C" int dive_device_count(int* count) {
    *count = 0;
    cudaError_t err = cudaGetDeviceCount(count);
    if (err != cudaSuccess) *count = 0;
    return (int) err;
}

extern "C" int dive_error_string(int status, char* buf, long len) {
    if (len <= 0) return 1;
    const char* s = cudaGetErrorString((cudaError_t) status);
    strncpy(buf, s ? s : "unknown error", (size_t) len - 1);
    buf[len - 1] = '\0';
    return 0;
}
