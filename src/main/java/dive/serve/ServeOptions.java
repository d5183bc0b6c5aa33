package dive.serve;

/**
 * The limits of a {@link BatchEngine}.
 *
 * @param maxBatch       the most sequences in one step (running and prefilling together)
 * @param maxQueued      the most requests waiting for a place; one more is refused ({@link RejectedException.Reason#QUEUE_FULL})
 * @param kvBudgetBytes  the KV-cache memory of all sequences together: a sequence takes its whole cache (prompt plus
 *                       max_tokens positions) when admitted and frees it when it ends; a request that does not fit now
 *                       waits, one that could never fit is refused
 * @param prefillTokens  the most prompt tokens one step processes (prompts are prefilled in chunks, so running
 *                       streams keep getting a token every step)
 */
public record ServeOptions(int maxBatch, int maxQueued, long kvBudgetBytes, int prefillTokens) {
    public ServeOptions {
        if (maxBatch < 1 || maxBatch > 4096) throw new IllegalArgumentException("max batch " + maxBatch + " (expected 1 to 4096)");
        if (maxQueued < 1 || maxQueued > 1_000_000) throw new IllegalArgumentException("max queued " + maxQueued + " (expected 1 to 1000000)");
        if (kvBudgetBytes <= 0) throw new IllegalArgumentException("KV-cache budget " + kvBudgetBytes + " bytes (expected > 0)");
        if (prefillTokens < 1) throw new IllegalArgumentException("prefill tokens per step " + prefillTokens + " (expected ≥ 1)");
    }

    /** 64 sequences per step, 256 waiting, 512 prompt tokens per step, and a KV budget of a quarter of the Java heap (at most 4 GB) */
    public static ServeOptions defaults() {
        return new ServeOptions(64, 256, Math.min(4L << 30, Runtime.getRuntime().maxMemory() / 4), 512);
    }

    public ServeOptions withMaxBatch(int n) { return new ServeOptions(n, maxQueued, kvBudgetBytes, prefillTokens); }
    public ServeOptions withMaxQueued(int n) { return new ServeOptions(maxBatch, n, kvBudgetBytes, prefillTokens); }
    public ServeOptions withKvBudgetBytes(long n) { return new ServeOptions(maxBatch, maxQueued, n, prefillTokens); }
    public ServeOptions withPrefillTokens(int n) { return new ServeOptions(maxBatch, maxQueued, kvBudgetBytes, n); }
}
