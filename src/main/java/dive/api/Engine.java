package dive.api;

import dive.backend.Backend;
import dive.backend.Backends;
import dive.model.*;
import dive.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * The library entry point: a Hugging Face Llama or Mixtral checkpoint folder loaded once (weights memory-mapped,
 * tokenizer parsed) and then used from any number of threads. Per-call state (KV caches, scratch) is
 * made per call, so concurrent calls never share mutable state.
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
        return tok.decode(Generator.generate(model, ids, options, decodable, id -> {}), true);
    }

    /** perplexity of {@code text} in non-overlapping windows of {@code window} tokens */
    public Perplexity.Result perplexity(String text, int window) {
        if (text.isEmpty()) throw new IllegalArgumentException("empty text: perplexity needs at least two tokens");
        return Perplexity.compute(model, requireTokenizer().encode(text), window);
    }

    /** logits (T, vocab) of one sequence */
    public float[] logits(int[] ids) { return model.logits(ids); }

    @Override
    public void close() throws Exception { model.close(); }

    private static void closeQuietly(AutoCloseable c) {
        try { c.close(); } catch (Exception ignored) { }
    }
}
