package dive.api;

import dive.backend.Backend;
import dive.backend.Backends;
import dive.model.*;
import dive.serve.BatchEngine;
import dive.serve.Completion;
import dive.serve.CompletionRequest;
import dive.serve.RejectedException;
import dive.serve.ServeOptions;
import dive.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * The library entry point: a Hugging Face Llama or Mixtral checkpoint folder loaded once (weights memory-mapped,
 * tokenizer parsed) and then used from any number of threads.
 *
 * <h2>Concurrency</h2>
 * Generation ({@link #generate}, {@link #submit}) goes through one continuous-batching scheduler per engine
 * ({@link BatchEngine}, started on first use with {@link ServeOptions#defaults()} or explicitly with
 * {@link #startBatching}): concurrent callers' requests join one running batch, so N callers share each step's
 * matmuls instead of each running its own forward. Its queue is bounded (a full queue refuses with
 * {@link RejectedException}); {@link #submit} streams tokens and can be cancelled or given a deadline. The other
 * calls ({@link #perplexity}, {@link #logits}) run on the calling thread with their own KV caches and scratch, so
 * concurrent calls never share mutable state. The weights are read-only and shared by everything.
 *
 * <h2>Memory</h2>
 * Weights stay memory-mapped in their dtype. Generation's KV caches come from the scheduler's one budget
 * ({@link ServeOptions#kvBudgetBytes}, by default a quarter of the Java heap): a request holds exactly its prompt plus
 * max-tokens positions while it runs and waits in the queue while the budget is spent. {@link #close} lets running
 * requests finish (up to a minute), fails the rest with a clear error, and then unmaps the weights.
 *
 * <pre>
 * try (Engine engine = Engine.load(Path.of("my-model"))) {
 *     String text = engine.generate("Once upon a time", GenerateOptions.greedy(32));
 *     double ppl = engine.perplexity(Files.readString(file), 256).perplexity();
 * }
 * </pre>
 */
public final class Engine implements AutoCloseable {
    private final Path dir;
    private final LlamaModel model;
    private final Tokenizer tokenizer; // null when the folder has no tokenizer.json
    private final java.util.BitSet decodable; // the ids the tokenizer can decode; null: no tokenizer
    private BatchEngine batch;                 // started on first use; guarded by this
    private boolean closed;                    // guarded by this

    private Engine(Path dir, LlamaModel model, Tokenizer tokenizer) {
        this.dir = dir;
        this.model = model;
        this.tokenizer = tokenizer;
        this.decodable = tokenizer == null ? null : tokenizer.decodableIds();
    }

    /**
     * loads {@code dir} on the default backend: device auto (the GPU when one works, else the CPU) with the auto CPU
     * backend on all cores, i.e. {@code load(dir, Backends.create("auto", "auto"))}
     */
    public static Engine load(Path dir) throws IOException { return load(dir, Backends.create("auto", "auto")); }

    /**
     * loads {@code dir} (config.json, safetensors, optional tokenizer.json), computing on {@code backend}, with the
     * default checks ({@link LoadOptions#DEFAULT}: tensors nothing reads and NaN/Inf weights refused)
     */
    public static Engine load(Path dir, Backend backend) throws IOException { return load(dir, backend, LoadOptions.DEFAULT); }

    /**
     * loads {@code dir} (config.json, safetensors, optional tokenizer.json), computing on {@code backend}, the
     * checkpoint checked against its config as {@code options} says ({@link LlamaModel#load(Path, Backend, LoadOptions)})
     */
    public static Engine load(Path dir, Backend backend, LoadOptions options) throws IOException {
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": model folder does not exist (expected config.json, *.safetensors, tokenizer.json)");
        LlamaModel model = LlamaModel.load(dir, backend, options);
        LlamaConfig config = model.config();
        Path tokenizerFile = dir.resolve("tokenizer.json");
        Tokenizer tokenizer;
        try {
            tokenizer = Files.isRegularFile(tokenizerFile) ? Tokenizer.load(tokenizerFile) : null;
        } catch (IOException | RuntimeException e) {
            closeQuietly(model);
            throw e;
        }
        if (tokenizer != null && tokenizer.vocabSize() > config.vocabSize()) {
            closeQuietly(model);
            throw new ModelException(tokenizerFile + ": the tokenizer has " + tokenizer.vocabSize()
                    + " tokens but config.json vocab_size is " + config.vocabSize());
        }
        return new Engine(dir, model, tokenizer);
    }

    public Path dir() { return dir; }
    public LlamaModel model() { return model; }
    public LlamaConfig config() { return model.config(); }
    public Optional<Tokenizer> tokenizer() { return Optional.ofNullable(tokenizer); }

    /** the tokenizer, or an error naming the folder that lacks one */
    public Tokenizer requireTokenizer() {
        if (tokenizer == null) throw new IllegalStateException(dir + ": no tokenizer.json, so text cannot be tokenized (pass token ids instead)");
        return tokenizer;
    }

    /**
     * the ids generation may pick: those the tokenizer can decode (fewer than vocab_size when the tokenizer is smaller
     * than the model's vocabulary or has gaps); null without a tokenizer (every id). A fresh copy.
     */
    public java.util.BitSet decodableIds() { return decodable == null ? null : (java.util.BitSet) decodable.clone(); }

    /** text → ids, with the tokenizer's special tokens (BOS for Llama) */
    public int[] encode(String text) { return requireTokenizer().encode(text); }

    /**
     * the continuation of {@code prompt} as text (the prompt itself not repeated), made of ids the tokenizer can decode
     *
     * @throws IllegalArgumentException when the prompt plus the new tokens pass the model's max_position_embeddings
     */
    public String generate(String prompt, GenerateOptions options) {
        Tokenizer tok = requireTokenizer();
        int[] ids = tok.encode(prompt);
        if (options.maxNewTokens() == 0) return "";
        if (options.eosTokenIds() != null)  // stop ids of its own: the serial path (the scheduler stops at the config's)
            return tok.decode(Generator.generate(model, ids, options, decodable, id -> {}), true);
        Generator.checkLength(model.config(), ids.length, options.maxNewTokens(), "max new tokens");
        Completion c = submit(new CompletionRequest(ids, options.maxNewTokens(), options.temperature(), options.topP(), options.seed(),
                java.util.List.of(), null));
        return c.join().text();
    }

    /**
     * queues a request in the engine's continuous-batching scheduler (started with {@link ServeOptions#defaults()} if
     * not yet running): its text streams through {@link Completion#deltas()}, its end through {@link Completion#result()}
     *
     * @throws RejectedException when the queue is full, the engine is closed, or the request can never fit
     */
    public Completion submit(CompletionRequest request) { return batching().submit(request); }

    /** the engine's scheduler, started with {@link ServeOptions#defaults()} on first use */
    public synchronized BatchEngine batching() {
        if (closed) throw new RejectedException(RejectedException.Reason.CLOSED, dir + ": the engine is closed");
        if (batch == null) batch = BatchEngine.start(model, tokenizer, decodable, ServeOptions.defaults());
        return batch;
    }

    /**
     * starts the engine's scheduler with {@code options} (a server's limits)
     *
     * @throws IllegalStateException when it is already running (a first {@link #generate} or {@link #submit} starts it)
     */
    public synchronized BatchEngine startBatching(ServeOptions options) {
        if (closed) throw new RejectedException(RejectedException.Reason.CLOSED, dir + ": the engine is closed");
        if (batch != null) throw new IllegalStateException("the engine's scheduler is already running with " + batch.options());
        batch = BatchEngine.start(model, tokenizer, decodable, options);
        return batch;
    }

    /** perplexity of {@code text} in non-overlapping windows of {@code window} tokens */
    public Perplexity.Result perplexity(String text, int window) {
        if (text.isEmpty()) throw new IllegalArgumentException("empty text: perplexity needs at least two tokens");
        return Perplexity.compute(model, requireTokenizer().encode(text), window);
    }

    /** logits (T, vocab) of one sequence */
    public float[] logits(int[] ids) { return model.logits(ids); }

    @Override
    public void close() throws Exception {
        BatchEngine b;
        synchronized (this) {
            if (closed) return;
            closed = true;
            b = batch;
        }
        if (b != null) b.close();
        model.close();
    }

    private static void closeQuietly(AutoCloseable c) {
        try { c.close(); } catch (Exception ignored) { }
    }
}
