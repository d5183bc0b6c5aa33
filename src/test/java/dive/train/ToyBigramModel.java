package dive.train;

import dive.tensor.DType;
import dive.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A tiny trainable model for trainer tests: logits(x) = W · E[x] + b, E (V, D) embedding, W (V, D), b (V);
 * loss = mean cross-entropy of the next token. Exact gradients (checked by finite differences in ToyBigramModelTest).
 */
public final class ToyBigramModel implements TrainableModel {
    final int vocab, dim;
    final Parameter embedding, output, bias;

    public ToyBigramModel(int vocab, int dim, long seed) {
        this.vocab = vocab; this.dim = dim;
        SplitMix64 rng = new SplitMix64(seed);
        embedding = param("embed.weight", rng, 0.5f, vocab, dim);
        output = param("out.weight", rng, 0.5f, vocab, dim);
        bias = param("out.bias", rng, 0.1f, vocab);
    }

    private static Parameter param(String name, SplitMix64 rng, float scale, long... shape) {
        long n = Tensor.numel(shape);
        MemorySegment seg = Arena.ofAuto().allocate(n * 4, 64);
        for (long i = 0; i < n; i++) seg.setAtIndex(Tensor.F32, i, (float) (scale * rng.nextGaussian()));
        return new Parameter(name, new Tensor(name, DType.F32, shape, seg));
    }

    @Override public List<Parameter> parameters() { return List.of(embedding, output, bias); }

    @Override public double lossAndGradients(int[][] batch, float gradScale) { return run(batch, gradScale, true); }

    @Override public double loss(int[][] batch) { return run(batch, 0f, false); }

    private double run(int[][] batch, float gradScale, boolean backward) {
        int count = 0;
        for (int[] row : batch) count += row.length - 1;
        double total = 0;
        float[] logits = new float[vocab], h = new float[dim];
        // gradients accumulate on the host and go back to the backend at the end
        float[] gBias = bias.gradValues(), gOutput = output.gradValues(), gEmbedding = embedding.gradValues();
        for (int[] row : batch) {
            for (int t = 0; t + 1 < row.length; t++) {
                int x = row[t], y = row[t + 1];
                for (int d = 0; d < dim; d++) h[d] = embedding.value().data().getAtIndex(Tensor.F32, (long) x * dim + d);
                double max = Double.NEGATIVE_INFINITY;
                for (int v = 0; v < vocab; v++) {
                    double s = bias.value().data().getAtIndex(Tensor.F32, v);
                    for (int d = 0; d < dim; d++) s += output.value().data().getAtIndex(Tensor.F32, (long) v * dim + d) * h[d];
                    logits[v] = (float) s;
                    max = Math.max(max, s);
                }
                double sum = 0;
                for (int v = 0; v < vocab; v++) sum += Math.exp(logits[v] - max);
                total += Math.log(sum) + max - logits[y];
                if (!backward) continue;
                float scale = gradScale / count;
                for (int v = 0; v < vocab; v++) {
                    float dLogit = (float) (Math.exp(logits[v] - max) / sum - (v == y ? 1 : 0)) * scale; // ∂loss/∂logit
                    if (bias.trainable()) gBias[v] += dLogit;
                    for (int d = 0; d < dim; d++) {
                        if (output.trainable()) gOutput[v * dim + d] += dLogit * h[d];
                        if (embedding.trainable()) gEmbedding[x * dim + d] += dLogit * output.value().data().getAtIndex(Tensor.F32, (long) v * dim + d);
                    }
                }
            }
        }
        if (backward) {
            if (bias.trainable()) GradAccess.set(bias, backend(), gBias);
            if (output.trainable()) GradAccess.set(output, backend(), gOutput);
            if (embedding.trainable()) GradAccess.set(embedding, backend(), gEmbedding);
        }
        return total / count;
    }
}
