package dive.convert;

import dive.data.Corpus;
import dive.data.Split;
import dive.tokenizer.Tokenizer;
import dive.train.SplitMix64;
import dive.train.TokenShard;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The token windows of one dataset for DIVE, from three disjoint sources:
 * <ul>
 *   <li>{@code calibration}: {@code n} windows of {@code seqlen} tokens at seeded random offsets in the tokenized
 *       CALIB split (windows may overlap each other, never another source);</li>
 *   <li>{@code affinityEval}: consecutive non-overlapping windows from the first half of the tokenized EVAL split;</li>
 *   <li>{@code finalEval}: consecutive non-overlapping windows from the second half of the EVAL split.</li>
 * </ul>
 * A split is tokenized as {@link TokenShard} does: every document without special tokens, followed by the separator
 * (EOS, else BOS), all concatenated — so a window that reaches the end of a short document continues into the next.
 *
 * @param calibrationSeed the seed of the calibration offsets (recorded in the run's JSON)
 * @param calibrationOffsets start of each calibration window in the CALIB token stream
 * @param evalTokens tokens in the EVAL split; affinity windows lie in [0, evalTokens/2), final ones in [evalTokens/2, evalTokens)
 */
public record DatasetWindows(String dataset, int seqlen, long calibrationSeed, int[] calibrationOffsets,
                             List<int[]> calibration, List<int[]> affinityEval, List<int[]> finalEval, int calibTokens, int evalTokens) {

    /** documents → one token stream with the separator after each (as {@link TokenShard}) */
    public static int[] tokenize(Tokenizer tokenizer, List<String> documents) {
        int separator = TokenShard.separatorId(tokenizer);
        int[] buffer = new int[1024];
        int count = 0;
        for (String text : documents) {
            int[] ids = tokenizer.encode(text, false);
            if (count + ids.length + 1 > buffer.length) buffer = Arrays.copyOf(buffer, Math.max(buffer.length * 2, count + ids.length + 1));
            System.arraycopy(ids, 0, buffer, count, ids.length);
            count += ids.length;
            buffer[count++] = separator;
        }
        return Arrays.copyOf(buffer, count);
    }

    /**
     * {@code count} windows of {@code seqlen} tokens at offsets drawn uniformly from [0, tokens − seqlen] by
     * {@link SplitMix64}({@code seed}); offsets returned in {@code offsetsOut} (length count).
     */
    public static List<int[]> sample(int[] tokens, int count, int seqlen, long seed, int[] offsetsOut, String label) {
        if (seqlen < 2) throw new IllegalArgumentException("seqlen " + seqlen + ": expected ≥ 2 tokens");
        if (count < 1) throw new IllegalArgumentException("calibration_windows " + count + ": expected ≥ 1 calibration window");
        if (tokens.length < seqlen)
            throw new IllegalArgumentException(label + " has " + tokens.length + " tokens, fewer than one window of seqlen " + seqlen);
        SplitMix64 random = new SplitMix64(seed);
        List<int[]> windows = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            int offset = (int) random.nextLong(tokens.length - seqlen + 1L);
            offsetsOut[i] = offset;
            windows.add(Arrays.copyOfRange(tokens, offset, offset + seqlen));
        }
        return windows;
    }

    /** up to {@code max} consecutive non-overlapping windows of seqlen tokens in tokens[from, to) */
    public static List<int[]> consecutive(int[] tokens, int from, int to, int seqlen, int max) {
        List<int[]> windows = new ArrayList<>();
        for (int start = from; start + seqlen <= to && windows.size() < max; start += seqlen)
            windows.add(Arrays.copyOfRange(tokens, start, start + seqlen));
        return windows;
    }

    /**
     * Tokenizes the CALIB and EVAL splits of {@code dataset} and cuts its windows.
     *
     * @throws IllegalArgumentException naming the dataset and split when a split is too short for one window
     */
    public static DatasetWindows of(Corpus corpus, String dataset, Tokenizer tokenizer, int calibrationWindows,
                                    int evalWindows, int seqlen, long seed) throws IOException {
        int[] calib = tokenize(tokenizer, corpus.texts(dataset, Split.CALIB));
        int[] eval = tokenize(tokenizer, corpus.texts(dataset, Split.EVAL));
        return of(dataset, calib, eval, calibrationWindows, evalWindows, seqlen, seed);
    }

    /** as {@link #of(Corpus, String, Tokenizer, int, int, int, long)} from token streams */
    public static DatasetWindows of(String dataset, int[] calib, int[] eval, int calibrationWindows, int evalWindows, int seqlen, long seed) {
        if (evalWindows < 1) throw new IllegalArgumentException("eval_windows " + evalWindows + ": expected ≥ 1");
        int[] offsets = new int[calibrationWindows];
        List<int[]> calibration = sample(calib, calibrationWindows, seqlen, seed, offsets, "dataset '" + dataset + "' split calib");
        int half = eval.length / 2;
        List<int[]> affinity = consecutive(eval, 0, half, seqlen, evalWindows);
        List<int[]> last = consecutive(eval, half, eval.length, seqlen, evalWindows);
        if (affinity.isEmpty() || last.isEmpty())
            throw new IllegalArgumentException("dataset '" + dataset + "' split eval has " + eval.length + " tokens: each half needs at least one window of seqlen "
                    + seqlen + " (affinity evaluation uses the first half, final evaluation the second)");
        return new DatasetWindows(dataset, seqlen, seed, offsets, List.copyOf(calibration), List.copyOf(affinity), List.copyOf(last), calib.length, eval.length);
    }
}
