package dive.backend;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.util.Arrays;

import static dive.backend.Backend.IGNORE_INDEX;
import static dive.backend.VectorElementwise.exp;
import static dive.backend.VectorSupport.*;

/** Softmax cross-entropy (loss and logit gradient) for {@link VectorBackend}: the CPU twin of native/src/loss.cu. */
final class VectorLoss {
    private VectorLoss() {}

    static double crossEntropy(Workers workers, float[] dLogits, float[] logits, int[] targets, int rows, int vocab, float gradScale) {
        int count = 0;
        for (int r = 0; r < rows; r++) {
            int target = targets[r];
            if (target == IGNORE_INDEX) continue;
            if (target < 0 || target >= vocab)
                throw new IllegalArgumentException("target " + target + " of row " + r + " is outside the vocabulary [0, " + vocab + ") and not " + IGNORE_INDEX);
            count++;
        }
        double[] rowLoss = new double[rows];
        float g = gradScale / Math.max(1, count);
        int upper = vocab - vocab % L;
        workers.parallelFor(rows, (long) rows * vocab >= PARALLEL_MIN_FMAS / 4, r -> {
            int target = targets[r], off = r * vocab;
            if (target == IGNORE_INDEX) {
                if (dLogits != null) Arrays.fill(dLogits, off, off + vocab, 0f);
                return;
            }
            float max = Float.NEGATIVE_INFINITY;
            int i = 0;
            if (upper > 0) {
                FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
                for (; i < upper; i += L) m = m.max(FloatVector.fromArray(F, logits, off + i));
                max = m.reduceLanes(VectorOperators.MAX);
            }
            for (; i < vocab; i++) max = Math.max(max, logits[off + i]);
            FloatVector sums = FloatVector.zero(F);
            for (i = 0; i < upper; i += L) sums = sums.add(exp(FloatVector.fromArray(F, logits, off + i).sub(max)));
            double sum = sumLanes(sums);
            for (; i < vocab; i++) sum += (float) Math.exp(logits[off + i] - max);
            float targetLogit = logits[off + target];
            rowLoss[r] = Math.log(sum) + max - targetLogit;
            if (dLogits != null) {
                float scaleByInv = (float) (1.0 / sum) * g;
                for (i = 0; i < upper; i += L)
                    exp(FloatVector.fromArray(F, logits, off + i).sub(max)).mul(scaleByInv).intoArray(dLogits, off + i);
                for (; i < vocab; i++) dLogits[off + i] = (float) Math.exp(logits[off + i] - max) * scaleByInv;
                dLogits[off + target] -= g;
            }
        });
        double lossSum = 0;
        for (int r = 0; r < rows; r++) lossSum += rowLoss[r];
        return count == 0 ? Double.NaN : lossSum / count;
    }
}
