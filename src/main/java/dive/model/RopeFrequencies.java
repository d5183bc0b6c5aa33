package dive.model;

/**
 * Rotary-embedding inverse frequencies, as transformers computes them (modeling_rope_utils.py).
 *
 * <p>default: invFreq[i] = 1 / theta^(2i / headDim), i &lt; headDim/2.
 * <br>linear: default / factor.
 * <br>llama3 (Llama 3.1): with wavelen = 2π / invFreq, lowWavelen = original / lowFreqFactor and
 * highWavelen = original / highFreqFactor: wavelen &lt; highWavelen keeps invFreq; wavelen &gt; lowWavelen uses
 * invFreq / factor; in between, smooth = (original / wavelen − lowFreqFactor) / (highFreqFactor − lowFreqFactor)
 * and invFreq' = (1 − smooth) · invFreq / factor + smooth · invFreq.
 */
public final class RopeFrequencies {
    private RopeFrequencies() {}

    /** → invFreq (headDim / 2) */
    public static float[] of(LlamaConfig config) {
        return of(config.rope(), config.headDim());
    }

    public static float[] of(LlamaConfig.Rope rope, int headDim) {
        int half = headDim / 2;
        float[] invFreq = new float[half];
        for (int i = 0; i < half; i++) {
            double f = 1.0 / Math.pow(rope.theta(), (2.0 * i) / headDim);
            invFreq[i] = (float) switch (rope.type()) {
                case "default" -> f;
                case "linear" -> f / rope.factor();
                case "llama3" -> llama3(f, rope);
                default -> throw new IllegalArgumentException("rope type '" + rope.type() + "' (expected default, linear or llama3)");
            };
        }
        return invFreq;
    }

    private static double llama3(double invFreq, LlamaConfig.Rope rope) {
        double original = rope.originalMaxPositionEmbeddings();
        double lowFreqWavelen = original / rope.lowFreqFactor();
        double highFreqWavelen = original / rope.highFreqFactor();
        double wavelen = 2 * Math.PI / invFreq;
        if (wavelen < highFreqWavelen) return invFreq;                 // high frequency: unchanged
        if (wavelen > lowFreqWavelen) return invFreq / rope.factor();  // low frequency: scaled
        double smooth = (original / wavelen - rope.lowFreqFactor()) / (rope.highFreqFactor() - rope.lowFreqFactor());
        return (1 - smooth) * invFreq / rope.factor() + smooth * invFreq;
    }
}
