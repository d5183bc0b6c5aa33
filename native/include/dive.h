/*
 * dive.h — the one C header of the native (CUDA) library. extern "C", every function returns an int
 * status (0 = success, otherwise the cudaError_t / cuBLAS status of the failing call), no structs
 * cross the boundary: pointers and integers only. The Java bindings (bindings/) mirror this file.
 *
 * This milestone holds only the probe functions; kernels arrive with the CUDA backend issue.
 */
#ifndef DIVE_H
#define DIVE_H

#ifdef __cplusplus
extern "C" {
#endif

/* library ABI version: *major changes when a signature changes */
int dive_version(int* major, int* minor);

/* number of CUDA devices visible; fails with cudaErrorInsufficientDriver (35) where there is no driver */
int dive_device_count(int* count);

/* name of the last error status as text, into buf (NUL-terminated, at most len bytes) */
int dive_error_string(int status, char* buf, long len);

#ifdef __cplusplus
}
#endif

#endif /* DIVE_H */
