package dive.bench.gpu;

import dive.backend.CudaBackend;
import dive.backend.DeviceTensor;
import dive.backend.ScalarBackend;
import dive.cuda.Cuda;
import dive.model.DenseFfn;
import dive.model.MoeFfn;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

/**
 * Set-up shared by the GPU benchmarks, which run the product's own GPU path — {@link CudaBackend}'s device-tensor ops
 * and the model's {@link MoeFfn} / {@link DenseFfn} blocks — with no device code of their own: whether a GPU is usable
 * (else the benchmark prints a SKIPPED line and measures nothing), the backend, and seeded random weights and
 * activations. Weights are read-only off-heap {@link Tensor}s, as a mapped checkpoint gives them: the backend uploads
 * each once, at its first use (in the set-up's warm-up call, never inside a measurement).
 */
final class GpuBench {
    private GpuBench() {}

    /** why the GPU benchmarks cannot run on this machine, or null when they can */
    static String unavailableReason() {
        try {
            Cuda.Status s = Cuda.status();
            return s.usable() ? null : s.reason();
        } catch (RuntimeException e) {
            return "the CUDA probe failed: " + e.getMessage();
        }
    }

    /**
     * The skip line a benchmark prints when {@link #unavailableReason} is not null. Starts with the marker
     * {@code run.sh} and the report look for.
     */
    static String skipMessage(String benchmark, String reason) {
        return "SKIPPED " + benchmark + ": no usable GPU here (" + reason + "); the numbers JMH prints for it measure an empty method";
    }

    /** a CUDA backend on device 0; callers checked {@link #unavailableReason} first */
    static CudaBackend open() {
        CudaBackend cuda = new CudaBackend(new ScalarBackend());
        System.out.println("GPU: " + Cuda.status().describe());
        return cuda;
    }

    /** a read-only BF16 weight of {@code shape}, uniform in [−scale, scale) from {@code seed} */
    static Tensor bf16(String name, float scale, long seed, long... shape) {
        long n = Tensor.numel(shape);
        MemorySegment seg = Arena.ofAuto().allocate(2 * n, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) seg.setAtIndex(Tensor.I16, i, DType.floatToBf16((float) ((r.nextDouble() * 2 - 1) * scale)));
        return new Tensor(name, DType.BF16, shape, seg.asReadOnly());
    }

    /** {@code count} F32 values uniform in [−scale, scale) from {@code seed}, on the device (one counted upload) */
    static DeviceTensor f32(CudaBackend cuda, int count, float scale, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[count];
        for (int i = 0; i < count; i++) v[i] = (float) ((r.nextDouble() * 2 - 1) * scale);
        return cuda.upload(v);
    }

    /**
     * A Mixtral block of random BF16 weights: router (E, H), w1 and w3 (I, H), w2 (H, I) per expert, uniform in
     * ±1/sqrt(fan-in) so activations keep their scale
     */
    static MoeFfn moe(int hidden, int expertWidth, int numExperts, int topK, long seed) {
        float inScale = (float) (1 / Math.sqrt(hidden)), outScale = (float) (1 / Math.sqrt(expertWidth));
        Tensor router = bf16("router", inScale, seed, numExperts, hidden);
        Tensor[] w1 = new Tensor[numExperts], w3 = new Tensor[numExperts], w2 = new Tensor[numExperts];
        for (int e = 0; e < numExperts; e++) {
            w1[e] = bf16("w1." + e, inScale, seed + 1 + 3L * e, expertWidth, hidden);
            w3[e] = bf16("w3." + e, inScale, seed + 2 + 3L * e, expertWidth, hidden);
            w2[e] = bf16("w2." + e, outScale, seed + 3 + 3L * e, hidden, expertWidth);
        }
        return new MoeFfn(router, w1, w3, w2, null, topK);
    }

    /** a Llama SwiGLU MLP of random BF16 weights: gate and up (F, H), down (H, F), no biases */
    static DenseFfn dense(int hidden, int width, long seed) {
        float inScale = (float) (1 / Math.sqrt(hidden)), outScale = (float) (1 / Math.sqrt(width));
        return new DenseFfn(bf16("gate_proj", inScale, seed, width, hidden), bf16("up_proj", inScale, seed + 1, width, hidden),
                bf16("down_proj", outScale, seed + 2, hidden, width));
    }
}
