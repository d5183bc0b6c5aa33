package dive.backend;

import dive.tensor.DType;
import dive.tensor.Tensor;

import static dive.backend.HostTensor.doubles;
import static dive.backend.HostTensor.floats;
import static dive.backend.HostTensor.floatsOrNull;
import static dive.backend.HostTensor.ints;

/**
 * What the CPU backends share: their device memory is the Java heap ({@link HostTensor}: float[], int[], double[]), so
 * every op on device tensors is the backend's array kernel of the same name on the arrays themselves — no copy, the
 * same bits. Edge transfers copy and are counted like a GPU's, so tests on the CPU see the transfers a GPU would make.
 */
public abstract class CpuBackend implements Backend {
    private final Transfers transfers = new Transfers();

    @Override public Transfers transfers() { return transfers; }

    // ---------------------------------------------------------------- memory and edge transfers

    @Override public DeviceTensor allocate(DType dtype, long n) { return HostTensor.allocate(dtype, n); }

    @Override public DeviceTensor upload(float[] values) {
        transfers.countToDevice(4L * values.length);
        return HostTensor.ofFloats(values.clone());
    }

    @Override public DeviceTensor upload(int[] values) {
        transfers.countToDevice(4L * values.length);
        return HostTensor.ofInts(values.clone());
    }

    @Override public void write(DeviceTensor dst, long dstOff, float[] values, int n) {
        float[] d = floats(dst, "write destination");
        System.arraycopy(values, 0, d, Math.toIntExact(dstOff), n);
        transfers.countToDevice(4L * n);
    }

    @Override public void write(DeviceTensor dst, long dstOff, int[] values, int n) {
        int[] d = ints(dst, "write destination");
        System.arraycopy(values, 0, d, Math.toIntExact(dstOff), n);
        transfers.countToDevice(4L * n);
    }

    @Override public void read(DeviceTensor src, long srcOff, float[] dst, int n) {
        System.arraycopy(floats(src, "read source"), Math.toIntExact(srcOff), dst, 0, n);
        transfers.countToHost(4L * n);
    }

    @Override public void read(DeviceTensor src, long srcOff, int[] dst, int n) {
        System.arraycopy(ints(src, "read source"), Math.toIntExact(srcOff), dst, 0, n);
        transfers.countToHost(4L * n);
    }

    @Override public void read(DeviceTensor src, long srcOff, double[] dst, int n) {
        System.arraycopy(doubles(src, "read source"), Math.toIntExact(srcOff), dst, 0, n);
        transfers.countToHost(8L * n);
    }

    @Override public void copy(DeviceTensor dst, long dstOff, DeviceTensor src, long srcOff, long n) {
        if (dst.dtype() != src.dtype()) throw new IllegalArgumentException("copy from " + src.dtype() + " to " + dst.dtype());
        Object from = src instanceof HostTensor h ? (h.f != null ? h.f : h.i != null ? h.i : h.d) : floats(src, "copy source");
        Object to = dst instanceof HostTensor h ? (h.f != null ? h.f : h.i != null ? h.i : h.d) : floats(dst, "copy destination");
        System.arraycopy(from, Math.toIntExact(srcOff), to, Math.toIntExact(dstOff), Math.toIntExact(n));
    }

    @Override public void zero(DeviceTensor x, long off, long n) {
        int from = Math.toIntExact(off), to = Math.toIntExact(off + n);
        switch (x.dtype()) {
            case F32 -> java.util.Arrays.fill(floats(x, "zero"), from, to, 0f);
            case I32 -> java.util.Arrays.fill(ints(x, "zero"), from, to, 0);
            default -> java.util.Arrays.fill(doubles(x, "zero"), from, to, 0.0);
        }
    }

    @Override public void readBack(Tensor weight) { transfers.countToHost(weight.data().byteSize()); }

    @Override public void weightChanged(Tensor weight) {}

    // ---------------------------------------------------------------- ops: the array kernels on the tensors' arrays

    @Override public void matmul(DeviceTensor out, DeviceTensor x, int m, Tensor w) {
        matmul(floats(out, "matmul out"), floats(x, "matmul x"), m, w);
    }

    @Override public void rmsNorm(DeviceTensor out, DeviceTensor x, Tensor weight, int rows, float eps) {
        rmsNorm(floats(out, "rmsNorm out"), floats(x, "rmsNorm x"), weight, rows, eps);
    }

    @Override public void rope(DeviceTensor x, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq) {
        rope(floats(x, "rope x"), rows, heads, headDim, ints(positions, "rope positions"), floats(invFreq, "rope invFreq"));
    }

    @Override public void attention(DeviceTensor out, DeviceTensor q, DeviceTensor kCache, DeviceTensor vCache, int T, int startPos,
                                    int nHeads, int nKvHeads, int headDim, float scale) {
        attention(floats(out, "attention out"), floats(q, "attention q"), floats(kCache, "attention kCache"),
                floats(vCache, "attention vCache"), T, startPos, nHeads, nKvHeads, headDim, scale);
    }

    @Override public void swiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, int n) {
        swiglu(floats(out, "swiglu out"), floats(gate, "swiglu gate"), floats(up, "swiglu up"), n);
    }

    @Override public void embedding(DeviceTensor out, Tensor table, DeviceTensor ids, int T) {
        int[] all = ints(ids, "embedding ids");
        embedding(floats(out, "embedding out"), table, all.length == T ? all : java.util.Arrays.copyOf(all, T));
    }

    @Override public void add(DeviceTensor x, DeviceTensor y, int n) { add(floats(x, "add x"), floats(y, "add y"), n); }

    @Override public void softmax(DeviceTensor x, int rows, int n) {
        float[] v = floats(x, "softmax x");
        for (int r = 0; r < rows; r++) softmax(v, r * n, n);
    }

    @Override public void addBias(DeviceTensor y, int rows, Tensor bias) {
        float[] out = floats(y, "addBias y"), b = bias.toFloatArray();
        int n = b.length;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++) out[r * n + j] += b[j];
    }

    @Override public void scale(DeviceTensor x, float a, int n) {
        float[] v = floats(x, "scale x");
        for (int i = 0; i < n; i++) v[i] *= a;
    }

    @Override public void matmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, int m, Tensor w) {
        matmulBackwardInput(floats(dx, "matmulBackwardInput dx"), floats(dOut, "matmulBackwardInput dOut"), m, w);
    }

    @Override public void matmulBackwardWeight(DeviceTensor dw, DeviceTensor dOut, DeviceTensor x, int m, int n, int k) {
        matmulBackwardWeight(floats(dw, "matmulBackwardWeight dw"), floats(dOut, "matmulBackwardWeight dOut"),
                floats(x, "matmulBackwardWeight x"), m, n, k);
    }

    @Override public void rmsNormBackward(DeviceTensor dx, DeviceTensor dWeight, DeviceTensor dOut, DeviceTensor x, Tensor weight,
                                          int rows, float eps) {
        rmsNormBackward(floats(dx, "rmsNormBackward dx"), floatsOrNull(dWeight, "rmsNormBackward dWeight"),
                floats(dOut, "rmsNormBackward dOut"), floats(x, "rmsNormBackward x"), weight, rows, eps);
    }

    @Override public void ropeBackward(DeviceTensor dx, int rows, int heads, int headDim, DeviceTensor positions, DeviceTensor invFreq) {
        ropeBackward(floats(dx, "ropeBackward dx"), rows, heads, headDim, ints(positions, "ropeBackward positions"),
                floats(invFreq, "ropeBackward invFreq"));
    }

    @Override public void attentionBackward(DeviceTensor dq, DeviceTensor dk, DeviceTensor dv, DeviceTensor dOut, DeviceTensor q,
                                            DeviceTensor k, DeviceTensor v, int B, int T, int nHeads, int nKvHeads, int headDim, float scale) {
        attentionBackward(floats(dq, "attentionBackward dq"), floats(dk, "attentionBackward dk"), floats(dv, "attentionBackward dv"),
                floats(dOut, "attentionBackward dOut"), floats(q, "attentionBackward q"), floats(k, "attentionBackward k"),
                floats(v, "attentionBackward v"), B, T, nHeads, nKvHeads, headDim, scale);
    }

    @Override public void swigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up, int n) {
        swigluBackward(floats(dGate, "swigluBackward dGate"), floats(dUp, "swigluBackward dUp"), floats(dOut, "swigluBackward dOut"),
                floats(gate, "swigluBackward gate"), floats(up, "swigluBackward up"), n);
    }

    @Override public void embeddingBackward(DeviceTensor dTable, DeviceTensor dOut, DeviceTensor ids, int T, int d) {
        int[] all = ints(ids, "embeddingBackward ids");
        embeddingBackward(floats(dTable, "embeddingBackward dTable"), floats(dOut, "embeddingBackward dOut"),
                all.length == T ? all : java.util.Arrays.copyOf(all, T), d);
    }

    @Override public double crossEntropy(DeviceTensor dLogits, DeviceTensor logits, DeviceTensor targets, int rows, int vocab, float gradScale) {
        double loss = crossEntropy(floatsOrNull(dLogits, "crossEntropy dLogits"), floats(logits, "crossEntropy logits"),
                ints(targets, "crossEntropy targets"), rows, vocab, gradScale);
        transfers.countToHost(8);
        return loss;
    }

    @Override public void addScaled(DeviceTensor x, DeviceTensor y, float a, int n) {
        addScaled(floats(x, "addScaled x"), floats(y, "addScaled y"), a, n);
    }

    @Override public void sumOfSquares(DeviceTensor sum, DeviceTensor x, int n) {
        float[] v = floats(x, "sumOfSquares x");
        double[] acc = doubles(sum, "sumOfSquares sum");
        double s = acc[0];
        for (int i = 0; i < n; i++) s += (double) v[i] * v[i];
        acc[0] = s;
    }

    @Override public long firstNonFinite(DeviceTensor x, long n) {
        float[] v = floats(x, "firstNonFinite x");
        transfers.countToHost(8);
        for (int i = 0; i < n; i++) if (!Float.isFinite(v[i])) return i;
        return -1;
    }

    @Override public void routeTopK(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts, int k) {
        routeTopK(ints(expertIds, "routeTopK expertIds"), floats(expertWeights, "routeTopK expertWeights"),
                floats(routerLogits, "routeTopK routerLogits"), n, numExperts, k);
    }

    @Override public void sortByExpert(DeviceTensor offsets, DeviceTensor rowToken, DeviceTensor slotRow, DeviceTensor expertIds,
                                       int n, int k, int numExperts) {
        sortByExpert(ints(offsets, "sortByExpert offsets"), ints(rowToken, "sortByExpert rowToken"), ints(slotRow, "sortByExpert slotRow"),
                ints(expertIds, "sortByExpert expertIds"), n, k, numExperts);
    }

    @Override public void gather(DeviceTensor out, DeviceTensor x, DeviceTensor rows, int count, int width) {
        gather(floats(out, "gather out"), floats(x, "gather x"), ints(rows, "gather rows"), count, width);
    }

    @Override public void groupedMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w, Tensor[] bias) {
        groupedMatmul(floats(out, "groupedMatmul out"), floats(x, "groupedMatmul x"), ints(offsets, "groupedMatmul offsets"), w, bias);
    }

    @Override public void groupedMatmul2(DeviceTensor outGate, DeviceTensor outUp, DeviceTensor x, DeviceTensor xRows, DeviceTensor offsets,
                                         Tensor[] wGate, Tensor[] wUp) {
        groupedMatmul2(floats(outGate, "groupedMatmul2 outGate"), floats(outUp, "groupedMatmul2 outUp"), floats(x, "groupedMatmul2 x"),
                ints(xRows, "groupedMatmul2 xRows"), ints(offsets, "groupedMatmul2 offsets"), wGate, wUp);
    }

    @Override public void combineExperts(DeviceTensor y, DeviceTensor expertOut, DeviceTensor slotRow, DeviceTensor expertWeights,
                                         int n, int k, int d) {
        combineExperts(floats(y, "combineExperts y"), floats(expertOut, "combineExperts expertOut"), ints(slotRow, "combineExperts slotRow"),
                floats(expertWeights, "combineExperts expertWeights"), n, k, d);
    }

    @Override public void combineExpertsBackward(DeviceTensor dExpertOut, DeviceTensor dWeights, DeviceTensor dy, DeviceTensor expertOut,
                                                 DeviceTensor slotRow, DeviceTensor expertWeights, int n, int k, int d) {
        combineExpertsBackward(floats(dExpertOut, "combineExpertsBackward dExpertOut"), floats(dWeights, "combineExpertsBackward dWeights"),
                floats(dy, "combineExpertsBackward dy"), floats(expertOut, "combineExpertsBackward expertOut"),
                ints(slotRow, "combineExpertsBackward slotRow"), floats(expertWeights, "combineExpertsBackward expertWeights"), n, k, d);
    }

    @Override public void scatterAddRows(DeviceTensor x, DeviceTensor src, DeviceTensor rows, int count, int width) {
        scatterAddRows(floats(x, "scatterAddRows x"), floats(src, "scatterAddRows src"), ints(rows, "scatterAddRows rows"), count, width);
    }

    @Override public void adamW(Tensor param, DeviceTensor grad, DeviceTensor m, DeviceTensor v, int n, AdamWStep step) {
        if (param.dtype() != DType.F32 || param.data().isReadOnly())
            throw new IllegalArgumentException("adamW: parameter '" + param.name() + "' is " + param.dtype()
                    + (param.data().isReadOnly() ? " in read-only memory" : "") + " (expected writable F32)");
        adamW(param.data(), floats(grad, "adamW grad"), floats(m, "adamW m"), floats(v, "adamW v"), n, step);
    }

    @Override public void channelStatistics(DeviceTensor mean, DeviceTensor m2, DeviceTensor sumSquares, long countBefore,
                                            DeviceTensor h, int rows, int width) {
        if (rows <= 0) return;
        double[] runMean = doubles(mean, "channelStatistics mean"), runM2 = doubles(m2, "channelStatistics m2"),
                runSquares = doubles(sumSquares, "channelStatistics sumSquares");
        float[] x = floats(h, "channelStatistics h");
        if ((long) rows * width > x.length) throw new IllegalArgumentException(rows + " rows of width " + width + " but h has " + x.length + " values");
        double[] batchMean = new double[width], batchM2 = new double[width], batchSquares = new double[width];
        for (int r = 0; r < rows; r++) {
            int off = r * width;
            for (int j = 0; j < width; j++) {
                double v = x[off + j];
                batchMean[j] += v;
                batchSquares[j] += v * v;
            }
        }
        for (int j = 0; j < width; j++) batchMean[j] /= rows;
        for (int r = 0; r < rows; r++) {
            int off = r * width;
            for (int j = 0; j < width; j++) {
                double dev = x[off + j] - batchMean[j];
                batchM2[j] += dev * dev;
            }
        }
        long na = countBefore, nb = rows, n = na + nb;
        for (int j = 0; j < width; j++) {
            double meanA = runMean[j], delta = batchMean[j] - meanA;
            runMean[j] = meanA + delta * nb / n;
            runM2[j] = runM2[j] + batchM2[j] + delta * delta * ((double) na * nb / n);
            runSquares[j] += batchSquares[j];
        }
    }
    // ---------------------------------------------------------------- training on device tensors

    @Override public void multiply(DeviceTensor x, DeviceTensor y, int n) {
        float[] a = floats(x, "multiply x"), b = floats(y, "multiply y");
        for (int i = 0; i < n; i++) a[i] *= b[i];
    }

    @Override public void biasBackward(DeviceTensor db, DeviceTensor dy, int rows, int width) {
        float[] g = floats(db, "biasBackward db"), d = floats(dy, "biasBackward dy");
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < width; j++) g[j] += d[r * width + j];
    }

    /** SplittableRandom's draw {@code index} (0-based) of a generator made with {@code seed} */
    static double splittableDraw(long seed, long index) {
        long z = seed + (index + 1) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z = z ^ (z >>> 31);
        return (z >>> 11) * 0x1.0p-53;
    }

    @Override public void dropout(DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, int n, long seed, long firstDraw, double p) {
        float[] m = floats(mask, "dropout mask"), out = floats(xDropped, "dropout xDropped"), in = floats(x, "dropout x");
        float keep = (float) (1 / (1 - p));
        for (int i = 0; i < n; i++) {
            m[i] = splittableDraw(seed, firstDraw + i) < p ? 0f : keep;
            out[i] = in[i] * m[i];
        }
    }

    @Override public void softRouting(DeviceTensor expertIds, DeviceTensor expertWeights, DeviceTensor routerLogits, int n, int numExperts,
                                      float invTemperature) {
        int[] ids = ints(expertIds, "softRouting expertIds");
        float[] w = floats(expertWeights, "softRouting expertWeights"), z = floats(routerLogits, "softRouting routerLogits");
        int e = numExperts;
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < e; j++) {
                ids[t * e + j] = j;
                w[t * e + j] = z[t * e + j] * invTemperature;
            }
            softmax(w, t * e, e);
        }
    }

    @Override public void countExperts(DeviceTensor counts, long countsOff, DeviceTensor expertIds, int assignments) {
        int[] c = ints(counts, "countExperts counts"), ids = ints(expertIds, "countExperts expertIds");
        int off = Math.toIntExact(countsOff);
        for (int i = 0; i < assignments; i++) c[off + ids[i]]++;
    }

    @Override public void routingBackward(DeviceTensor dLogits, DeviceTensor weights, DeviceTensor dWeights, DeviceTensor expertIds,
                                          int n, int slots, int numExperts, double invTemperature) {
        float[] dz = floats(dLogits, "routingBackward dLogits"), w = floats(weights, "routingBackward weights"),
                dw = floats(dWeights, "routingBackward dWeights");
        int[] ids = ints(expertIds, "routingBackward expertIds");
        for (int t = 0; t < n; t++) {
            double mean = 0;
            for (int j = 0; j < slots; j++) mean += (double) w[t * slots + j] * dw[t * slots + j];
            for (int j = 0; j < slots; j++) {
                int i = t * slots + j;
                dz[t * numExperts + ids[i]] += (float) (w[i] * (dw[i] - mean) * invTemperature);
            }
        }
    }

    /** the rows [from, to) of a (·, width) array as their own array */
    private static float[] rows(float[] a, int from, int to, int width) { return java.util.Arrays.copyOfRange(a, from * width, to * width); }

    @Override public void expertMatmul(DeviceTensor out, DeviceTensor x, DeviceTensor offsets, Tensor[] w) {
        float[] o = floats(out, "expertMatmul out"), in = floats(x, "expertMatmul x");
        int[] off = ints(offsets, "expertMatmul offsets");
        for (int e = 0; e < w.length; e++) {
            int first = off[e], count = off[e + 1] - first, n = w[e].rows(), k = w[e].cols();
            if (count == 0) continue;
            float[] y = new float[count * n];
            matmul(y, rows(in, first, first + count, k), count, w[e]);
            System.arraycopy(y, 0, o, first * n, count * n);
        }
    }

    @Override public void expertMatmulBackwardInput(DeviceTensor dx, DeviceTensor dOut, DeviceTensor offsets, Tensor[] w) {
        float[] g = floats(dx, "expertMatmulBackwardInput dx"), dy = floats(dOut, "expertMatmulBackwardInput dOut");
        int[] off = ints(offsets, "expertMatmulBackwardInput offsets");
        for (int e = 0; e < w.length; e++) {
            int first = off[e], count = off[e + 1] - first, n = w[e].rows(), k = w[e].cols();
            if (count == 0) continue;
            float[] part = new float[count * k];
            matmulBackwardInput(part, rows(dy, first, first + count, n), count, w[e]);
            System.arraycopy(part, 0, g, first * k, count * k);
        }
    }

    @Override public void expertMatmulBackwardWeight(DeviceTensor[] dw, DeviceTensor dOut, DeviceTensor x, DeviceTensor offsets, int n, int k) {
        float[] dy = floats(dOut, "expertMatmulBackwardWeight dOut"), in = floats(x, "expertMatmulBackwardWeight x");
        int[] off = ints(offsets, "expertMatmulBackwardWeight offsets");
        for (int e = 0; e < dw.length; e++) {
            int first = off[e], count = off[e + 1] - first;
            if (count == 0 || dw[e] == null) continue;
            matmulBackwardWeight(floats(dw[e], "expertMatmulBackwardWeight dw[" + e + "]"), rows(dy, first, first + count, n),
                    rows(in, first, first + count, k), count, n, k);
        }
    }

    @Override public void expertAddBias(DeviceTensor out, DeviceTensor offsets, Tensor[] bias, int d) {
        float[] o = floats(out, "expertAddBias out");
        int[] off = ints(offsets, "expertAddBias offsets");
        for (int e = 0; e < bias.length; e++) {
            if (bias[e] == null) continue;
            for (int r = off[e]; r < off[e + 1]; r++)
                for (int i = 0; i < d; i++) o[r * d + i] += bias[e].getFloat(i);
        }
    }

    @Override public void expertBiasBackward(DeviceTensor[] db, DeviceTensor dy, DeviceTensor offsets, int d) {
        float[] g = floats(dy, "expertBiasBackward dy");
        int[] off = ints(offsets, "expertBiasBackward offsets");
        for (int e = 0; e < db.length; e++) {
            if (db[e] == null) continue;
            float[] b = floats(db[e], "expertBiasBackward db[" + e + "]");
            for (int r = off[e]; r < off[e + 1]; r++)
                for (int i = 0; i < d; i++) b[i] += g[r * d + i];
        }
    }
}
