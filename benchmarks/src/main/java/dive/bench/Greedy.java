package dive.bench;

import dive.model.KVCache;
import dive.model.LlamaModel;

import java.util.SplittableRandom;

/** what the prefill/decode benchmarks share: a seeded random prompt and greedy decoding from a prefilled cache */
final class Greedy {
    private Greedy() {}

    /** {@code length} token ids drawn uniformly from the vocabulary (seed 1, as the peers' prompts are random too) */
    static int[] prompt(LlamaModel model, int length) {
        int[] prompt = new int[length];
        SplittableRandom rnd = new SplittableRandom(1);
        for (int i = 0; i < length; i++) prompt[i] = rnd.nextInt(model.config().vocabSize());
        return prompt;
    }

    /** {@code steps} greedy decode steps after {@code logits} (the last position's); returns the last logits */
    static float[] decode(LlamaModel model, float[] logits, KVCache cache, int steps) {
        int[] next = new int[1];
        for (int g = 0; g < steps; g++) {
            int best = 0;
            for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
            next[0] = best;
            logits = model.forwardLast(next, cache);
        }
        return logits;
    }
}
