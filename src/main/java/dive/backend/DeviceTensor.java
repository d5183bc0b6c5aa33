package dive.backend;

import dive.tensor.DType;

/**
 * Memory that belongs to the backend that computes on it: activations, gradients, KV caches, routing tables and
 * optimizer moments. On the CPU backends it is ordinary host memory ({@link HostTensor}); on the CUDA backend it is
 * device memory. Model, training and DIVE code hold these as opaque handles and pass them to {@link Backend} ops; the
 * only ways to host values are the backend's edge transfers ({@link Backend#upload}, {@link Backend#download},
 * {@link Backend#write}, {@link Backend#read}), which every backend counts ({@link Backend#transfers()}).
 *
 * <p>A tensor is a flat array of {@link #size()} elements of {@link #dtype()} (F32, I32 or F64); ops take the shapes
 * they need as arguments, like the CUDA kernels they twin. Not thread-safe: one tensor belongs to one call chain.
 */
public interface DeviceTensor extends AutoCloseable {

    /** F32 (activations, gradients, moments), I32 (token ids, positions, routing tables) or F64 (statistics) */
    DType dtype();

    /** elements */
    long size();

    /** frees device memory now (on the CPU: nothing to do, the garbage collector frees it); idempotent */
    @Override void close();
}
