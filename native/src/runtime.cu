// runtime.cu — discovery, memory, streams, events: thin wrappers over the CUDA runtime (linked statically into
// libdive.so), so the Java side needs no CUDA toolkit, only the driver.
#include "common.cuh"
#include <string.h>

extern "C" int dive_version(int* major, int* minor) {
    DIVE_REQUIRE(major && minor);
    *major = 1;
    *minor = 1;
    return 0;
}

extern "C" int dive_device_count(int* count) {
    DIVE_REQUIRE(count);
    *count = 0;
    cudaError_t err = cudaGetDeviceCount(count);
    if (err != cudaSuccess) *count = 0;
    return (int) err;
}

extern "C" int dive_error_string(int status, char* buf, long len) {
    DIVE_REQUIRE(buf && len > 0);
    const char* s = status == DIVE_ERR_ARGUMENT ? "DIVE_ERR_ARGUMENT: impossible argument (negative size or null pointer)"
                                                : cudaGetErrorString((cudaError_t) status);
    strncpy(buf, s ? s : "unknown error", (size_t) len - 1);
    buf[len - 1] = '\0';
    return 0;
}

extern "C" int dive_driver_version(int* driverVersion, int* runtimeVersion) {
    DIVE_REQUIRE(driverVersion && runtimeVersion);
    *driverVersion = 0;
    *runtimeVersion = 0;
    cudaError_t err = cudaRuntimeGetVersion(runtimeVersion);
    if (err != cudaSuccess) return (int) err;
    err = cudaDriverGetVersion(driverVersion); // 0 with no driver, and success
    if (err != cudaSuccess) *driverVersion = 0;
    return (int) err;
}

extern "C" int dive_set_device(int device) {
    DIVE_REQUIRE(device >= 0);
    return (int) cudaSetDevice(device);
}

extern "C" int dive_device_info(int device, char* name, long nameLen, long* totalMemoryBytes, int* ccMajor, int* ccMinor,
                                int* multiprocessors) {
    DIVE_REQUIRE(device >= 0 && name && nameLen > 0 && totalMemoryBytes && ccMajor && ccMinor && multiprocessors);
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return (int) err;
    strncpy(name, prop.name, (size_t) nameLen - 1);
    name[nameLen - 1] = '\0';
    *totalMemoryBytes = (long) prop.totalGlobalMem;
    *ccMajor = prop.major;
    *ccMinor = prop.minor;
    *multiprocessors = prop.multiProcessorCount;
    return 0;
}

extern "C" int dive_mem_info(long* freeBytes, long* totalBytes) {
    DIVE_REQUIRE(freeBytes && totalBytes);
    size_t f = 0, t = 0;
    cudaError_t err = cudaMemGetInfo(&f, &t);
    *freeBytes = (long) f;
    *totalBytes = (long) t;
    return (int) err;
}

extern "C" int dive_malloc(void** d_ptr, long bytes) {
    DIVE_REQUIRE(d_ptr && bytes >= 0);
    *d_ptr = nullptr;
    if (bytes == 0) return 0;
    cudaError_t err = cudaMalloc(d_ptr, (size_t) bytes);
    // a failed allocation leaves its error pending, and the next launch's cudaGetLastError would report it: clear it,
    // the caller gets it from this return value
    if (err != cudaSuccess) (void) cudaGetLastError();
    return (int) err;
}

extern "C" int dive_free(void* d_ptr) {
    return (int) cudaFree(d_ptr); // null is a no-op
}

extern "C" int dive_stream_create(void** stream) {
    DIVE_REQUIRE(stream);
    *stream = nullptr;
    cudaStream_t s;
    cudaError_t err = cudaStreamCreate(&s); // blocking: ordered with the legacy default stream
    if (err == cudaSuccess) *stream = (void*) s;
    return (int) err;
}

extern "C" int dive_stream_destroy(void* stream) {
    DIVE_REQUIRE(stream); // the legacy default stream is not ours to destroy
    return (int) cudaStreamDestroy(dive_stream(stream));
}

extern "C" int dive_stream_sync(void* stream) {
    return (int) cudaStreamSynchronize(dive_stream(stream));
}

extern "C" int dive_memcpy_h2d(void* d_dst, const void* src, long bytes, void* stream) {
    DIVE_REQUIRE(bytes >= 0);
    if (bytes == 0) return 0;
    DIVE_REQUIRE(d_dst && src);
    return (int) cudaMemcpyAsync(d_dst, src, (size_t) bytes, cudaMemcpyHostToDevice, dive_stream(stream));
}

extern "C" int dive_memcpy_d2d(void* d_dst, const void* d_src, long bytes, void* stream) {
    DIVE_REQUIRE(bytes >= 0);
    if (bytes == 0) return 0;
    DIVE_REQUIRE(d_dst && d_src);
    return (int) cudaMemcpyAsync(d_dst, d_src, (size_t) bytes, cudaMemcpyDeviceToDevice, dive_stream(stream));
}

extern "C" int dive_memset(void* d_dst, int byteValue, long bytes, void* stream) {
    DIVE_REQUIRE(bytes >= 0);
    if (bytes == 0) return 0;
    DIVE_REQUIRE(d_dst);
    return (int) cudaMemsetAsync(d_dst, byteValue, (size_t) bytes, dive_stream(stream));
}

extern "C" int dive_memcpy_d2h_sync(void* dst, const void* d_src, long bytes, void* stream) {
    DIVE_REQUIRE(bytes >= 0);
    if (bytes == 0) return 0;
    DIVE_REQUIRE(dst && d_src);
    cudaError_t err = cudaMemcpyAsync(dst, d_src, (size_t) bytes, cudaMemcpyDeviceToHost, dive_stream(stream));
    if (err != cudaSuccess) return (int) err;
    return (int) cudaStreamSynchronize(dive_stream(stream));
}

extern "C" int dive_event_create(void** event) {
    DIVE_REQUIRE(event);
    *event = nullptr;
    cudaEvent_t e;
    cudaError_t err = cudaEventCreate(&e);
    if (err == cudaSuccess) *event = (void*) e;
    return (int) err;
}

extern "C" int dive_event_destroy(void* event) {
    DIVE_REQUIRE(event);
    return (int) cudaEventDestroy((cudaEvent_t) event);
}

extern "C" int dive_event_record(void* event, void* stream) {
    DIVE_REQUIRE(event);
    return (int) cudaEventRecord((cudaEvent_t) event, dive_stream(stream));
}

extern "C" int dive_event_elapsed(float* ms, void* start, void* end) {
    DIVE_REQUIRE(ms && start && end);
    *ms = 0;
    cudaError_t err = cudaEventSynchronize((cudaEvent_t) end);
    if (err != cudaSuccess) return (int) err;
    return (int) cudaEventElapsedTime(ms, (cudaEvent_t) start, (cudaEvent_t) end);
}
