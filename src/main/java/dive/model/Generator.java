package dive.model;

import java.util.Arrays;
import java.util.function.IntConsumer;

/** Autoregressive generation: prefill the prompt once, then decode one token at a time with a KV cache. */
public final class Generator {
    private Generator() {}

    /** prompt ids → the new ids (at most {@code options.maxNewTokens()}, ending with an EOS id if one was produced) */
    public static int[] generate(LlamaModel model, int[] prompt, GenerateOptions options) {
        return generate(model, prompt, options, id -> {});
    }

    /** as {@link #generate(LlamaModel, int[], GenerateOptions)}, handing each new id to {@code onToken} as it is made */
    public static int[] generate(LlamaModel model, int[] prompt, GenerateOptions options, IntConsumer onToken) {
        return generate(model, prompt, options, null, onToken);
    }

    /**
     * as {@link #generate(LlamaModel, int[], GenerateOptions, IntConsumer)}, picking only ids of {@code allowed} (null:
     * every id of the vocabulary), e.g. the ids the tokenizer can decode ({@code Tokenizer.decodableIds()}) when it has
     * fewer than config.json's vocab_size
     *
     * @throws IllegalArgumentException before any work when the prompt plus {@code options.maxNewTokens()} would pass the
     *                                  model's max_position_embeddings
     */
    public static int[] generate(LlamaModel model, int[] prompt, GenerateOptions options, java.util.BitSet allowed, IntConsumer onToken) {
        if (prompt.length == 0) throw new IllegalArgumentException("empty prompt: generation needs at least one token (e.g. BOS)");
        checkLength(model.config(), prompt.length, options.maxNewTokens(), "max new tokens");
        int[] eos = options.eosTokenIds() != null ? options.eosTokenIds() : model.config().eosTokenIds();
        Sampler sampler = new Sampler(options.temperature(), options.topP(), options.seed());
        int vocab = model.config().vocabSize();
        KVCache cache = model.newCache(prompt.length + Math.max(1, options.maxNewTokens()));
        int[] out = new int[options.maxNewTokens()];
        int n = 0;
        if (options.maxNewTokens() == 0) return out;
        float[] logits = model.forwardLast(prompt, cache);  // (vocab)
        while (true) {
            int next = sampler.sample(logits, 0, vocab, allowed);
            out[n++] = next;
            onToken.accept(next);
            if (n == out.length || contains(eos, next)) break;
            logits = model.forwardLast(new int[] {next}, cache);
        }
        return Arrays.copyOf(out, n);
    }

    /**
     * refuses a prompt of {@code promptTokens} plus {@code maxNewTokens} longer than the model's max_position_embeddings;
     * {@code option} names the new-token count in the message (e.g. "--max-tokens")
     */
    public static void checkLength(LlamaConfig config, int promptTokens, int maxNewTokens, String option) {
        long positions = (long) promptTokens + maxNewTokens;
        if (positions > config.maxPositionEmbeddings())
            throw new IllegalArgumentException(option + " " + maxNewTokens + " after a prompt of " + promptTokens + (promptTokens == 1 ? " token" : " tokens") + " makes "
                    + positions + " positions, more than the model's max_position_embeddings " + config.maxPositionEmbeddings()
                    + " (config.json): at most " + Math.max(0, config.maxPositionEmbeddings() - promptTokens) + " new tokens");
    }

    private static boolean contains(int[] ids, int id) {
        for (int e : ids) if (e == id) return true;
        return false;
    }
}
