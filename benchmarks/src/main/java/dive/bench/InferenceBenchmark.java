package dive.bench;

import dive.backend.Backends;
import dive.model.KVCache;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.tensor.DType;
import dive.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Dense Llama prefill and decode on random F32 weights of the benchmark shape (hidden 256,
 * 4 layers, FFN 1024, 8 heads / 4 KV heads, vocab 4096): the shape of benchmarks/peers/make_bench_model.py,
 * so tokens/s compare with transformers (benchmarks/llama-vs-transformers.sh).
 * <ul>
 * <li>{@code prefill}: one forward of {@code promptLen} tokens, batch 1 → tokens/s = score × promptLen</li>
 * <li>{@code decode}: {@code gen} greedy steps after a {@code promptLen}-token prompt (the prefill runs in
 *     the untimed per-invocation setup) → tokens/s = score × gen</li>
 * </ul>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
public class InferenceBenchmark {
    @Param({"vector"}) public String backend;
    @Param({"128"}) public int promptLen;
    @Param({"64"}) public int gen;

    LlamaModel model;
    int[] prompt;

    static LlamaConfig config() {
        var root = new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode()
                .put("model_type", "llama").put("hidden_size", 256).put("intermediate_size", 1024)
                .put("num_hidden_layers", 4).put("num_attention_heads", 8).put("num_key_value_heads", 4)
                .put("vocab_size", 4096).put("max_position_embeddings", 2048).put("rms_norm_eps", 1e-5)
                .put("rope_theta", 10000.0).put("tie_word_embeddings", false).put("hidden_act", "silu");
        return LlamaConfig.parse(root, "InferenceBenchmark");
    }

    /** random weights N(0, 0.02²) as HF initialises, norm weights 1 */
    static LlamaModel randomModel(LlamaConfig c, String backend) {
        SplittableRandom rnd = new SplittableRandom(42);
        Map<String, Tensor> w = new HashMap<>();
        int d = c.hiddenSize(), f = c.intermediateSize(), v = c.vocabSize(), q = c.queryDim(), kv = c.kvDim();
        gaussian(w, rnd, "model.embed_tokens.weight", v, d);
        gaussian(w, rnd, "lm_head.weight", v, d);
        ones(w, "model.norm.weight", d);
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            String p = "model.layers." + l + ".";
            ones(w, p + "input_layernorm.weight", d);
            ones(w, p + "post_attention_layernorm.weight", d);
            gaussian(w, rnd, p + "self_attn.q_proj.weight", q, d);
            gaussian(w, rnd, p + "self_attn.k_proj.weight", kv, d);
            gaussian(w, rnd, p + "self_attn.v_proj.weight", kv, d);
            gaussian(w, rnd, p + "self_attn.o_proj.weight", d, q);
            gaussian(w, rnd, p + "mlp.gate_proj.weight", f, d);
            gaussian(w, rnd, p + "mlp.up_proj.weight", f, d);
            gaussian(w, rnd, p + "mlp.down_proj.weight", d, f);
        }
        return LlamaModel.fromWeights(c, w::get, "random weights", Backends.create(backend), null);
    }

    private static void gaussian(Map<String, Tensor> w, SplittableRandom rnd, String name, int rows, int cols) {
        float[] x = new float[rows * cols];
        for (int i = 0; i < x.length; i++) x[i] = (float) (rnd.nextGaussian() * 0.02);
        w.put(name, offHeap(name, x, rows, cols));
    }

    private static void ones(Map<String, Tensor> w, String name, int n) {
        float[] x = new float[n];
        Arrays.fill(x, 1f);
        w.put(name, offHeap(name, x, n));
    }

    /** weights live off-heap in the engine (memory-mapped files), so the benchmark puts them there too */
    private static Tensor offHeap(String name, float[] values, long... shape) {
        MemorySegment seg = Arena.ofAuto().allocate((long) values.length * Float.BYTES, 64);
        MemorySegment.copy(values, 0, seg, Tensor.F32, 0, values.length);
        return new Tensor(name, DType.F32, shape, seg);
    }

    @Setup(Level.Trial)
    public void setup() {
        model = randomModel(config(), backend);
        prompt = Greedy.prompt(model, promptLen);
    }

    /** a freshly prefilled cache per decode invocation (untimed) */
    @State(Scope.Thread)
    public static class Prefilled {
        KVCache cache;
        float[] lastLogits;

        @Setup(Level.Invocation)
        public void prefill(InferenceBenchmark b) {
            cache = b.model.newCache(b.promptLen + b.gen);
            lastLogits = b.model.forwardLast(b.prompt, cache);
        }
    }

    @Benchmark
    public float[] prefill() {
        return model.forwardLast(prompt, model.newCache(promptLen));
    }

    @Benchmark
    public float[] decode(Prefilled p) {
        return Greedy.decode(model, p.lastLogits, p.cache, gen);
    }
}
