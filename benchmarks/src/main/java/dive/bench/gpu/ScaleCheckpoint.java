package dive.bench.gpu;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.io.SafetensorsWriter;
import dive.model.LlamaConfig;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tensor.TensorArena;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Writes a random-init Llama checkpoint of TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN
 * 5632, vocab 32000, untied LM head; 1,100,048,384 parameters) in BF16 with the engine alone: the fallback of
 * {@code benchmarks/gpu/run.sh} where the GPU machine has no transformers to run
 * {@code benchmarks/scale/make_checkpoint.py}. Every Linear and the embedding are drawn from normal(0, 0.02) as
 * transformers initialises them, RMSNorm weights are 1; the tensors are BF16 from the start (2.2 GB off the heap at the
 * full shape), filled in parallel chunks of {@value #CHUNK} elements, each chunk from its own
 * {@link SplittableRandom} seeded by (seed, tensor, chunk) — the same bytes whatever the thread count — and streamed
 * to {@code model.safetensors} by {@link SafetensorsWriter}; {@code config.json} (transformers' LlamaConfig keys) is
 * written last. No tokenizer: the speed benchmarks feed token ids.
 *
 * <p>{@code dive.train.TrainableLlama.initialize} followed by {@code saveCheckpoint(dir, null, DType.BF16)} writes the
 * same kind of checkpoint but draws 1.1 billion values on one thread into F32 first (88 s on a 2-core machine against
 * a few seconds here on 16 cores), too slow for the GPU run's time box.
 *
 * <pre>java -cp … dive.bench.gpu.ScaleCheckpoint OUT_DIR [--layers 22] [--hidden 2048] [--ffn 5632] [--heads 32]
 *      [--kv-heads 4] [--vocab 32000] [--seed 0]</pre>
 * Prints one line: {@code checkpoint OUT_DIR: N parameters, BF16, S s}.
 */
public final class ScaleCheckpoint {
    static final double INIT_STD = 0.02;
    static final int CHUNK = 1 << 20;

    private ScaleCheckpoint() {}

    /** config.json as transformers writes it for LlamaForCausalLM of this shape */
    static ObjectNode configJson(int layers, int hidden, int ffn, int heads, int kvHeads, int vocab) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", hidden);
        c.put("intermediate_size", ffn);
        c.put("num_hidden_layers", layers);
        c.put("num_attention_heads", heads);
        c.put("num_key_value_heads", kvHeads);
        c.put("head_dim", hidden / heads);
        c.put("vocab_size", vocab);
        c.put("max_position_embeddings", 2048);
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", 10000.0);
        c.put("hidden_act", "silu");
        c.put("attention_bias", false);
        c.put("mlp_bias", false);
        c.put("tie_word_embeddings", false);
        c.put("initializer_range", INIT_STD);
        c.put("bos_token_id", 0);
        c.put("eos_token_id", 1);
        c.put("torch_dtype", "bfloat16");
        return c;
    }

    /** the checkpoint's tensors in transformers' order, names and shapes; zeros (BF16) in {@code arena} */
    static List<Tensor> tensors(LlamaConfig c, TensorArena arena) {
        int d = c.hiddenSize(), f = c.intermediateSize();
        List<Tensor> out = new ArrayList<>();
        out.add(Tensor.allocate("model.embed_tokens.weight", DType.BF16, new long[] {c.vocabSize(), d}, arena));
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            String p = "model.layers." + l + ".";
            out.add(Tensor.allocate(p + "input_layernorm.weight", DType.BF16, new long[] {d}, arena));
            out.add(Tensor.allocate(p + "self_attn.q_proj.weight", DType.BF16, new long[] {c.queryDim(), d}, arena));
            out.add(Tensor.allocate(p + "self_attn.k_proj.weight", DType.BF16, new long[] {c.kvDim(), d}, arena));
            out.add(Tensor.allocate(p + "self_attn.v_proj.weight", DType.BF16, new long[] {c.kvDim(), d}, arena));
            out.add(Tensor.allocate(p + "self_attn.o_proj.weight", DType.BF16, new long[] {d, c.queryDim()}, arena));
            out.add(Tensor.allocate(p + "post_attention_layernorm.weight", DType.BF16, new long[] {d}, arena));
            out.add(Tensor.allocate(p + "mlp.gate_proj.weight", DType.BF16, new long[] {f, d}, arena));
            out.add(Tensor.allocate(p + "mlp.up_proj.weight", DType.BF16, new long[] {f, d}, arena));
            out.add(Tensor.allocate(p + "mlp.down_proj.weight", DType.BF16, new long[] {d, f}, arena));
        }
        out.add(Tensor.allocate("model.norm.weight", DType.BF16, new long[] {d}, arena));
        out.add(Tensor.allocate("lm_head.weight", DType.BF16, new long[] {c.vocabSize(), d}, arena));
        return out;
    }

    /** fills tensor number {@code index}: norms 1, everything else normal(0, INIT_STD), chunks in parallel */
    static void fill(Tensor t, int index, long seed) {
        long n = t.numel();
        boolean norm = t.name().endsWith("norm.weight");
        int chunks = (int) ((n + CHUNK - 1) / CHUNK);
        IntStream.range(0, chunks).parallel().forEach(ch -> {
            SplittableRandom random = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + ((long) index << 32) + ch);
            long from = (long) ch * CHUNK, to = Math.min(n, from + CHUNK);
            for (long i = from; i < to; i++) t.setFloat(i, norm ? 1f : (float) (random.nextGaussian() * INIT_STD));
        });
    }

    /** writes the checkpoint into {@code dir} (created if missing); returns its parameter count */
    static long write(Path dir, int layers, int hidden, int ffn, int heads, int kvHeads, int vocab, long seed) throws Exception {
        ObjectNode json = configJson(layers, hidden, ffn, heads, kvHeads, vocab);
        LlamaConfig config = LlamaConfig.parse(json, "config of " + dir);  // checks the shape as a load would
        Files.createDirectories(dir);
        long params = 0;
        try (TensorArena arena = TensorArena.shared()) {
            List<Tensor> tensors = tensors(config, arena);
            for (int i = 0; i < tensors.size(); i++) {
                fill(tensors.get(i), i, seed);
                params += tensors.get(i).numel();
            }
            SafetensorsWriter.write(dir.resolve(SafetensorsWriter.SINGLE_FILE), tensors, Map.of(), null);
        }
        Files.writeString(dir.resolve("config.json"), new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(json) + "\n");
        return params;
    }

    public static void main(String[] args) throws Exception {
        Path out = null;
        int layers = 22, hidden = 2048, ffn = 5632, heads = 32, kvHeads = 4, vocab = 32000;
        long seed = 0;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) { out = Path.of(a); continue; }
            if (i + 1 >= args.length) usage("flag " + a + " needs a value");
            String v = args[++i];
            switch (a) {
                case "--layers" -> layers = Integer.parseInt(v);
                case "--hidden" -> hidden = Integer.parseInt(v);
                case "--ffn" -> ffn = Integer.parseInt(v);
                case "--heads" -> heads = Integer.parseInt(v);
                case "--kv-heads" -> kvHeads = Integer.parseInt(v);
                case "--vocab" -> vocab = Integer.parseInt(v);
                case "--seed" -> seed = Long.parseLong(v);
                default -> usage("unknown flag " + a);
            }
        }
        if (out == null) usage("no output folder given");
        long t0 = System.nanoTime();
        long params = write(out, layers, hidden, ffn, heads, kvHeads, vocab, seed);
        System.out.printf("checkpoint %s: %d parameters, BF16, %.1f s%n", out, params, (System.nanoTime() - t0) / 1e9);
    }

    private static void usage(String why) {
        System.err.println("ScaleCheckpoint: " + why + System.lineSeparator()
                + "usage: ScaleCheckpoint OUT_DIR [--layers N] [--hidden N] [--ffn N] [--heads N] [--kv-heads N] [--vocab N] [--seed N]");
        System.exit(2);
    }
}
