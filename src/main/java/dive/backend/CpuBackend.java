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
    /** freed large arrays kept for the next allocation of their length (a training step allocates the same sizes) */
    private final HostPool pool = new HostPool();

    @Override public Transfers transfers() { return transfers; }

    // ---------------------------------------------------------------- memory and edge transfers

    @Override public DeviceTensor allocate(DType dtype, long n) { return HostTensor.allocate(dtype, n, pool); }

    /** bytes of the tensors {@link #allocate}d and not yet closed */
    public long liveBytes() { return pool.liveBytes(); }

    /** the most {@link #liveBytes} at once since the last {@link #resetPeakBytes} (or since the backend was made) */
    public long peakBytes() { return pool.peakBytes(); }

    public void resetPeakBytes() { pool.resetPeak(); }

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
        Object from = src instanceof HostTensor h ? h.array("copy source") : floats(src, "copy source");
        Object to = dst instanceof HostTensor h ? h.array("copy destination") : floats(dst, "copy destination");
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

    @Override public void gatherColumns(DeviceTensor out, DeviceTensor x, DeviceTensor cols, int rows, int width, int count) {
        float[] o = floats(out, "gatherColumns out"), in = floats(x, "gatherColumns x");
        int[] c = ints(cols, "gatherColumns cols");
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < count; j++) o[r * count + j] = in[r * width + c[j]];
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
    @Override public void sigmoidGatedAdd(DeviceTensor out, DeviceTensor x, DeviceTensor gate, int rows, int width) {
        sigmoidGatedAdd(floats(out, "sigmoidGatedAdd out"), floats(x, "sigmoidGatedAdd x"), floats(gate, "sigmoidGatedAdd gate"), rows, width);
    }

    @Override public void sigmoidGatedAddBackward(DeviceTensor dx, DeviceTensor dGate, DeviceTensor dOut, DeviceTensor x, DeviceTensor gate,
                                                  int rows, int width) {
        sigmoidGatedAddBackward(floats(dx, "sigmoidGatedAddBackward dx"), floats(dGate, "sigmoidGatedAddBackward dGate"),
                floats(dOut, "sigmoidGatedAddBackward dOut"), floats(x, "sigmoidGatedAddBackward x"),
                floats(gate, "sigmoidGatedAddBackward gate"), rows, width);
    }

    /** σ(g) = 1 / (1 + e^(−g)) in F32, as torch.sigmoid */
    static float sigmoid(float g) { return 1f / (1f + (float) Math.exp(-g)); }

    /** out[r, j] += σ(gate[r]) · x[r, j], r &lt; rows, j &lt; width (the reference of {@link Backend#sigmoidGatedAdd}) */
    public static void sigmoidGatedAdd(float[] out, float[] x, float[] gate, int rows, int width) {
        for (int r = 0; r < rows; r++) {
            float s = sigmoid(gate[r]);
            for (int j = 0, o = r * width; j < width; j++) out[o + j] += s * x[o + j];
        }
    }

    /**
     * dx[r, j] = σ(gate[r]) · dOut[r, j]; dGate[r] = σ(g)(1 − σ(g)) · Σ_j dOut[r, j] · x[r, j] (double sum in j order),
     * both overwritten (the reference of {@link Backend#sigmoidGatedAddBackward})
     */
    public static void sigmoidGatedAddBackward(float[] dx, float[] dGate, float[] dOut, float[] x, float[] gate, int rows, int width) {
        for (int r = 0; r < rows; r++) {
            float s = sigmoid(gate[r]);
            double dot = 0;
            for (int j = 0, o = r * width; j < width; j++) {
                dx[o + j] = s * dOut[o + j];
                dot += (double) dOut[o + j] * x[o + j];
            }
            dGate[r] = (float) (dot * s * (1 - s));
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

    @Override public void expertDropout(DeviceTensor mask, DeviceTensor xDropped, DeviceTensor x, DeviceTensor offsets, int numExperts,
                                        int width, long seed, long firstDraw, int stride, int prefix, double p) {
        float[] m = floats(mask, "expertDropout mask"), out = floats(xDropped, "expertDropout xDropped"), in = floats(x, "expertDropout x");
        int[] off = ints(offsets, "expertDropout offsets");
        float keep = (float) (1 / (1 - p));
        for (int e = 0; e < numExperts; e++) {
            int first = off[e], count = off[e + 1] - first;
            long base = firstDraw + (long) first * stride + (long) count * prefix;
            for (int i = 0; i < count; i++)
                for (int c = 0; c < width; c++) {
                    int j = (first + i) * width + c;
                    m[j] = splittableDraw(seed, base + (long) i * width + c) < p ? 0f : keep;
                    out[j] = in[j] * m[j];
                }
        }
    }

    @Override public void expertSwiglu(DeviceTensor out, DeviceTensor gate, DeviceTensor up, DeviceTensor offsets, int numExperts, int width) {
        float[] o = floats(out, "expertSwiglu out"), g = floats(gate, "expertSwiglu gate"), u = floats(up, "expertSwiglu up");
        int[] off = ints(offsets, "expertSwiglu offsets");
        for (int e = 0; e < numExperts; e++) {
            int first = off[e], count = off[e + 1] - first;
            if (count == 0) continue;
            float[] part = new float[count * width];
            swiglu(part, rows(g, first, first + count, width), rows(u, first, first + count, width), count * width);
            System.arraycopy(part, 0, o, first * width, count * width);
        }
    }

    @Override public void expertSwigluBackward(DeviceTensor dGate, DeviceTensor dUp, DeviceTensor dOut, DeviceTensor gate, DeviceTensor up,
                                               DeviceTensor offsets, int numExperts, int width) {
        float[] dg = floats(dGate, "expertSwigluBackward dGate"), du = floats(dUp, "expertSwigluBackward dUp"),
                dy = floats(dOut, "expertSwigluBackward dOut"), g = floats(gate, "expertSwigluBackward gate"), u = floats(up, "expertSwigluBackward up");
        int[] off = ints(offsets, "expertSwigluBackward offsets");
        for (int e = 0; e < numExperts; e++) {
            int first = off[e], count = off[e + 1] - first;
            if (count == 0) continue;
            float[] pg = new float[count * width], pu = new float[count * width];
            swigluBackward(pg, pu, rows(dy, first, first + count, width), rows(g, first, first + count, width),
                    rows(u, first, first + count, width), count * width);
            System.arraycopy(pg, 0, dg, first * width, count * width);
            System.arraycopy(pu, 0, du, first * width, count * width);
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

    // ================================================================ the array kernels
    // What each backend op means, on Java arrays: the reference definitions the CUDA kernels twin. Model, training and
    // DIVE code call the DeviceTensor ops of Backend; these are for the CPU backends (and their tests).
    // Convention: gradients of inputs (dx, dq, ...) are OVERWRITTEN; gradients of weights (dw, dWeight, dTable) are
    // ACCUMULATED (+=), so micro-batches and tied weights add up in one float[].

    /**
     * out[m, n] = Σ_k x[m, k] · w[n, k]
     * x (M, K) F32 · w (N, K) → out (M, N). M = 1 is a GEMV (decode), M &gt; 1 a GEMM (prefill).
     */
    public abstract void matmul(float[] out, float[] x, int m, Tensor w);

    /**
     * out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight
     * x (rows, d), weight (d) → out (rows, d). out may be x.
     */
    public abstract void rmsNorm(float[] out, float[] x, Tensor weight, int rows, float eps);

    /**
     * Rotary embedding in place, Hugging Face "rotate_half" layout: for pair (i, i + hd/2) of each head,
     * angle = positions[r] · invFreq[i]; (a, b) → (a·cos − b·sin, b·cos + a·sin).
     * x (rows, heads, headDim), positions (rows), invFreq (headDim/2).
     */
    public abstract void rope(float[] x, int rows, int heads, int headDim, int[] positions, float[] invFreq);

    /**
     * Causal grouped-query attention for T new queries of one sequence.
     * q (T, nHeads, hd); kCache, vCache (maxSeq, nKvHeads, hd) hold positions 0 .. startPos+T−1 of this
     * layer; query t sits at position startPos + t and attends to positions 0 .. startPos + t.
     * Query head h reads KV head h / (nHeads / nKvHeads). scores = q·k · scale, softmax in F32.
     * → out (T, nHeads, hd).
     */
    public abstract void attention(float[] out, float[] q, float[] kCache, float[] vCache, int T, int startPos,
                   int nHeads, int nKvHeads, int headDim, float scale);

    /** out[i] = SiLU(gate[i]) · up[i] = gate[i] / (1 + e^(−gate[i])) · up[i], i &lt; n. out may alias gate. */
    public abstract void swiglu(float[] out, float[] gate, float[] up, int n);

    /** in place: x[off .. off+n) ← softmax, max-subtracted, F32 */
    public abstract void softmax(float[] x, int off, int n);

    /** out[t, :] = table[ids[t], :]; table (vocab, d) → out (T, d) */
    public abstract void embedding(float[] out, Tensor table, int[] ids);

    /** x[i] += y[i], i &lt; n (the residual add) */
    public abstract void add(float[] x, float[] y, int n);

    // ---------------------------------------------------------------- training: backward passes
    // Convention: gradients of inputs (dx, dq, ...) are OVERWRITTEN; gradients of weights (dw, dWeight,
    // dTable) are ACCUMULATED (+=), so micro-batches and tied weights add up in one float[].

    /**
     * Gradient of {@link #matmul} with respect to its input: dx[m, k] = Σ_n dOut[m, n] · w[n, k].
     * dOut (M, N), w (N, K) → dx (M, K), overwritten.
     */
    public abstract void matmulBackwardInput(float[] dx, float[] dOut, int m, Tensor w);

    /**
     * Gradient of {@link #matmul} with respect to its weight, accumulated: dw[n, k] += Σ_m dOut[m, n] · x[m, k].
     * dOut (M, N), x (M, K) → dw (N, K).
     */
    public abstract void matmulBackwardWeight(float[] dw, float[] dOut, float[] x, int m, int n, int k);

    /**
     * Gradient of {@link #rmsNorm}: with inv = 1/sqrt(mean(x²) + eps) per row and g = weight,
     * dx[r, i] = inv·g[i]·dOut[r, i] − inv³/d · x[r, i] · Σ_j g[j]·dOut[r, j]·x[r, j]   (overwritten);
     * dWeight[i] += Σ_r dOut[r, i]·x[r, i]·inv_r (skipped when dWeight is null).
     * x, dOut (rows, d) → dx (rows, d); dx may be dOut.
     */
    public abstract void rmsNormBackward(float[] dx, float[] dWeight, float[] dOut, float[] x, Tensor weight, int rows, float eps);

    /**
     * Gradient of {@link #rope} in place: the rotation is orthogonal, so its gradient is the inverse
     * rotation, (da, db) → (da·cos + db·sin, db·cos − da·sin). dx (rows, heads, headDim).
     */
    public abstract void ropeBackward(float[] dx, int rows, int heads, int headDim, int[] positions, float[] invFreq);

    /**
     * Gradient of causal grouped-query attention over B independent sequences of T positions, each starting
     * at position 0 (training): probabilities are recomputed from q and k (nothing saved but q, k, v).
     * With p = softmax(scale·q·kᵀ) (causal), dP = dOut·vᵀ, dS = p ⊙ (dP − Σ_s p·dP):
     * dq = scale·dS·k, dk = scale·dSᵀ·q, dv = pᵀ·dOut (summed over the query heads sharing a KV head).
     * q, dOut (B, T, nHeads, hd); k, v (B, T, nKvHeads, hd) → dq (B, T, nHeads, hd), dk, dv (B, T, nKvHeads, hd),
     * all overwritten.
     */
    public abstract void attentionBackward(float[] dq, float[] dk, float[] dv, float[] dOut, float[] q, float[] k, float[] v,
                           int B, int T, int nHeads, int nKvHeads, int headDim, float scale);

    /**
     * Gradient of {@link #swiglu}: with σ = 1/(1 + e^(−gate)), dGate = dOut·up·σ·(1 + gate·(1 − σ)),
     * dUp = dOut·gate·σ. All (n), overwritten; dGate and dUp must not alias gate, up or dOut.
     */
    public abstract void swigluBackward(float[] dGate, float[] dUp, float[] dOut, float[] gate, float[] up, int n);

    /**
     * Gradient of {@link #embedding}, accumulated: dTable[ids[t], :] += dOut[t, :] in order t = 0, 1, ...
     * dOut (T, d), ids (T) → dTable (vocab, d).
     */
    public abstract void embeddingBackward(float[] dTable, float[] dOut, int[] ids, int d);

    /**
     * Fused softmax cross-entropy, softmax in F32 after subtracting the row maximum. Rows with
     * targets[r] == {@value #IGNORE_INDEX} are ignored (as PyTorch's ignore_index). Returns the mean over the
     * counted rows of −log softmax(logits[r])[targets[r]] (NaN when every row is ignored). When dLogits is not
     * null it receives gradScale · ∂mean/∂logits = gradScale·(softmax − onehot)/count (zeros on ignored rows).
     * logits (rows, vocab), targets (rows) → dLogits (rows, vocab); dLogits may be logits.
     */
    public abstract double crossEntropy(float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale);


    /** x[i] += a · y[i], i &lt; n */
    public abstract void addScaled(float[] x, float[] y, float a, int n);

    // ================================================================ Mixture of Experts
    // The MoE layer as vLLM / MegaBlocks run it: router matmul → routeTopK → sortByExpert (histogram,
    // prefix sum, stable permutation) → gather → groupedMatmul (gate, up) → swiglu → groupedMatmul (down)
    // → combineExperts (weighted, fixed-order sum per token: no atomics, so results are deterministic).
    // "Rows" below are the N·k (token, slot) assignments, permuted so that each expert's rows are contiguous.

    /**
     * Top-k routing. routerLogits (N, E) F32 → expertIds (N, k): per token the k largest logits in
     * descending order, ties to the lower expert index; expertWeights (N, k): softmax over those k logits
     * (max-subtracted, F32), which equals Mixtral's softmax over all E followed by renormalising the top k.
     * A NaN logit propagates into the weights (never silently dropped).
     */
    public abstract void routeTopK(int[] expertIds, float[] expertWeights, float[] routerLogits, int n, int numExperts, int k);

    /**
     * Expert histogram, prefix sum and permutation (a counting sort, stable): expertIds (N, k) →
     * offsets (E + 1): expert e owns permuted rows [offsets[e], offsets[e+1]), offsets[E] = N·k;
     * rowToken (N·k): the token of each permuted row, in token order within an expert;
     * slotRow (N, k): the permuted row of (token, slot). Integer bookkeeping, the same on every backend.
     *
     * @throws IllegalArgumentException naming the token and slot whose expert id is outside [0, E)
     */
    public void sortByExpert(int[] offsets, int[] rowToken, int[] slotRow, int[] expertIds, int n, int k, int numExperts) {
        java.util.Arrays.fill(offsets, 0, numExperts + 1, 0);
        for (int i = 0; i < n * k; i++) {
            int e = expertIds[i];
            if (e < 0 || e >= numExperts)
                throw new IllegalArgumentException("sortByExpert: token " + i / k + " slot " + i % k + " has expert id " + e
                        + ", expected 0 ≤ id < " + numExperts);
            offsets[e + 1]++;
        }
        for (int e = 0; e < numExperts; e++) offsets[e + 1] += offsets[e];
        int[] next = java.util.Arrays.copyOf(offsets, numExperts);
        for (int i = 0; i < n * k; i++) { // (token, slot) in order: stable
            int row = next[expertIds[i]]++;
            rowToken[row] = i / k;
            slotRow[i] = row;
        }
    }

    /** out[r, :] = x[rows[r], :] for r &lt; count; x (·, width) → out (count, width) */
    public abstract void gather(float[] out, float[] x, int[] rows, int count, int width);

    /**
     * Grouped matmul over experts' row ranges: for every expert e and r in [offsets[e], offsets[e+1]),
     * out[r, :] = x[r, :] · w[e]ᵀ (+ bias[e]). x (R, K) F32 with R = offsets[E]; w[e] (N, K) F32/BF16/F16,
     * the same shape for all e; bias null, or per expert null or (N); → out (R, N). Experts without rows are
     * skipped (their weights are not read).
     */
    public abstract void groupedMatmul(float[] out, float[] x, int[] offsets, Tensor[] w, Tensor[] bias);

    /**
     * The MoE layer's two input matmuls, reading the permuted rows through a row map: for every expert e and permuted
     * row r in [offsets[e], offsets[e+1]), outGate[r, :] = x[xRows[r], :] · wGate[e]ᵀ and outUp[r, :] = x[xRows[r], :] ·
     * wUp[e]ᵀ (no bias). x (·, K), xRows (R) (the rowToken of {@link #sortByExpert}), wGate[e] and wUp[e] (N, K) of one
     * shape → outGate, outUp (R, N). Equals {@link #gather} followed by two {@link #groupedMatmul} calls (this default);
     * a backend may read x's rows in place and share one parallel loop between the two.
     */
    public void groupedMatmul2(float[] outGate, float[] outUp, float[] x, int[] xRows, int[] offsets, Tensor[] wGate, Tensor[] wUp) {
        MoeChecks.groupedMatmul2(outGate, outUp, x, xRows, offsets, wGate, wUp);
        int rows = offsets[wGate.length], k = wGate[0].cols();
        float[] xs = new float[rows * k];
        gather(xs, x, xRows, rows, k);
        groupedMatmul(outGate, xs, offsets, wGate, null);
        groupedMatmul(outUp, xs, offsets, wUp, null);
    }

    /**
     * Weighted un-permute and sum: y[t, :] = Σ_{s = 0 .. k−1} expertWeights[t, s] · expertOut[slotRow[t, s], :],
     * summed in slot order (a fixed order per token, no atomics). expertOut (N·k, d), slotRow (N, k),
     * expertWeights (N, k) → y (N, d), overwritten.
     */
    public abstract void combineExperts(float[] y, float[] expertOut, int[] slotRow, float[] expertWeights, int n, int k, int d);

    // ---------------------------------------------------------------- Mixture of Experts: training

    /**
     * Gradient of {@link #combineExperts}: for every token t and slot s, with r = slotRow[t, s],
     * dExpertOut[r, :] = expertWeights[t, s] · dy[t, :] and dWeights[t, s] = Σ_i dy[t, i] · expertOut[r, i].
     * dy (N, d), expertOut (N·k, d), slotRow, expertWeights (N, k) → dExpertOut (N·k, d), dWeights (N, k), both
     * overwritten (slotRow is a permutation, so every row of dExpertOut is written once).
     */
    public abstract void combineExpertsBackward(float[] dExpertOut, float[] dWeights, float[] dy, float[] expertOut, int[] slotRow,
                                float[] expertWeights, int n, int k, int d);

    /**
     * Gradient of {@link #gather}, accumulated: x[rows[r], :] += src[r, :] for r = 0, 1, ..., count − 1 in that order
     * (a fixed order per destination row: deterministic). src (count, width) → x (·, width).
     */
    public abstract void scatterAddRows(float[] x, float[] src, int[] rows, int count, int width);

    // ---------------------------------------------------------------- optimiser

    /**
     * One AdamW update of n F32 elements, each on its own with every product, quotient and sum rounded separately (no
     * fused multiply-add), so every backend gives the same bits: p ← p·decayFactor (if decay); m ← m + (1−β1)(g − m);
     * v ← v·β2 + (1−β2)·g·g; p ← p − stepSize · m / (√v / sqrtBiasCorrection2 + ε). {@code param} is F32 memory (n
     * floats); m and v are updated in place. This default is the plain loop.
     */
    public void adamW(java.lang.foreign.MemorySegment param, float[] grad, float[] m, float[] v, int n, AdamWStep s) {
        s.check(param, grad, m, v, n);
        s.applyPlain(param, grad, m, v, 0, n);
    }
}
