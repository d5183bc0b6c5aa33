package dive.model;

/**
 * How {@link Generator} continues a prompt.
 *
 * @param maxNewTokens the most tokens to add (≥ 0)
 * @param temperature  0 for greedy decoding, else the softmax temperature
 * @param topP         nucleus mass in (0, 1]; 1 samples from every token
 * @param seed         seeds the sampler (ignored when greedy)
 * @param eosTokenIds  ids that end generation (included in the output, as transformers does); null: the config's
 */
public record GenerateOptions(int maxNewTokens, float temperature, float topP, long seed, int[] eosTokenIds) {
    public GenerateOptions {
        if (maxNewTokens < 0) throw new IllegalArgumentException("max new tokens " + maxNewTokens + " (expected ≥ 0)");
        eosTokenIds = eosTokenIds == null ? null : eosTokenIds.clone();
    }

    /** greedy decoding of up to {@code maxNewTokens}, stopping at the config's EOS ids */
    public static GenerateOptions greedy(int maxNewTokens) { return new GenerateOptions(maxNewTokens, 0f, 1f, 0L, null); }

    /** sampling with temperature and top-p from a seed, stopping at the config's EOS ids */
    public static GenerateOptions sampling(int maxNewTokens, float temperature, float topP, long seed) {
        return new GenerateOptions(maxNewTokens, temperature, topP, seed, null);
    }

    /** the same options with other stop ids */
    public GenerateOptions withEos(int... ids) { return new GenerateOptions(maxNewTokens, temperature, topP, seed, ids); }
}
