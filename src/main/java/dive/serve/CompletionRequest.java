package dive.serve;

import java.time.Duration;
import java.util.List;

/**
 * One request to a {@link BatchEngine}: a prompt (token ids, BOS included when the model wants one) and how to continue it.
 *
 * @param prompt      the prompt's token ids (at least one)
 * @param maxTokens   the most new tokens (≥ 1)
 * @param temperature 0 for greedy decoding, else the softmax temperature (finite, &gt; 0)
 * @param topP        nucleus mass in (0, 1]
 * @param seed        seeds the request's own sampler (ignored when greedy)
 * @param stop        strings that end the completion when they appear in its text (not included in it); may be empty
 * @param deadline    the longest the request may take from submission (null: no limit); past it, it ends with
 *                    {@link FinishReason#DEADLINE} and keeps the tokens made so far
 */
public record CompletionRequest(int[] prompt, int maxTokens, float temperature, float topP, long seed, List<String> stop, Duration deadline) {
    /** the most stop strings a request may carry, and their longest length (OpenAI allows 4) */
    public static final int MAX_STOP = 16, MAX_STOP_LENGTH = 256;

    public CompletionRequest {
        if (prompt == null || prompt.length == 0) throw new IllegalArgumentException("empty prompt: a completion needs at least one token");
        prompt = prompt.clone();
        if (maxTokens < 1) throw new IllegalArgumentException("max_tokens " + maxTokens + " (expected ≥ 1)");
        if (!(temperature >= 0) || Float.isInfinite(temperature))
            throw new IllegalArgumentException("temperature " + temperature + " (expected 0 for greedy or a positive finite number)");
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p " + topP + " (expected a number in (0, 1])");
        stop = stop == null ? List.of() : List.copyOf(stop);
        if (stop.size() > MAX_STOP) throw new IllegalArgumentException(stop.size() + " stop strings (at most " + MAX_STOP + ")");
        for (String s : stop)
            if (s.isEmpty() || s.length() > MAX_STOP_LENGTH)
                throw new IllegalArgumentException("stop string of " + s.length() + " characters (expected 1 to " + MAX_STOP_LENGTH + ")");
        if (deadline != null && (deadline.isNegative() || deadline.isZero()))
            throw new IllegalArgumentException("deadline " + deadline + " (expected a positive duration)");
    }

    /** greedy decoding of up to {@code maxTokens}, no stop strings, no deadline */
    public static CompletionRequest greedy(int[] prompt, int maxTokens) {
        return new CompletionRequest(prompt, maxTokens, 0f, 1f, 0L, List.of(), null);
    }

    /** the same request with another deadline */
    public CompletionRequest withDeadline(Duration d) { return new CompletionRequest(prompt, maxTokens, temperature, topP, seed, stop, d); }

    /** the same request with other stop strings */
    public CompletionRequest withStop(List<String> s) { return new CompletionRequest(prompt, maxTokens, temperature, topP, seed, s, deadline); }

    @Override public int[] prompt() { return prompt.clone(); }

    int promptLength() { return prompt.length; }

    int promptToken(int i) { return prompt[i]; }
}
