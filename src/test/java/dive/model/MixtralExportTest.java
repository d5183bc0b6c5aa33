package dive.model;

import com.fasterxml.jackson.databind.JsonNode;
import dive.backend.ScalarBackend;
import dive.io.Checkpoint;
import dive.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

import static dive.model.LlamaFixtureTest.relativeError;
import static org.junit.jupiter.api.Assertions.*;

/**
 * MixtralExport: fixture (saved by transformers) → export → load gives the same logits bit for bit, config.json holds
 * the Mixtral fields, tensors keep transformers' names, shards and tokenizer files, expert biases are refused or written
 * as the documented extension (never dropped), and a failed export leaves nothing behind.
 */
class MixtralExportTest {
    @TempDir Path tmp;
    private final ScalarBackend backend = new ScalarBackend();

    private static int[] ids(String fixture) throws IOException {
        return Fixtures.ints(MixtralFixtureTest.expected(fixture).get("input_ids"));
    }

    @Test
    void roundTripGivesIdenticalLogitsAndTransformersNames() throws Exception {
        for (String name : MixtralFixtureTest.NAMES) {
            Path out = tmp.resolve(name);
            try (LlamaModel original = LlamaModel.load(MixtralFixtureTest.dir(name), backend)) {
                MixtralExport.write(out, original, MixtralExport.Options.defaults());
                try (LlamaModel again = LlamaModel.load(out, backend);
                     Checkpoint written = Checkpoint.open(out);
                     Checkpoint source = Checkpoint.open(MixtralFixtureTest.dir(name))) {
                    assertArrayEquals(original.logits(ids(name)), again.logits(ids(name)), name);
                    // the same tensor names transformers' save_pretrained wrote, same dtypes and shapes
                    assertEquals(new java.util.TreeSet<>(source.names()), new java.util.TreeSet<>(written.names()), name);
                    for (String t : source.names()) {
                        assertEquals(source.tensor(t).dtype(), written.tensor(t).dtype(), t);
                        assertArrayEquals(source.tensor(t).shape(), written.tensor(t).shape(), t);
                    }
                }
            }
            JsonNode c = Fixtures.JSON.readTree(out.resolve("config.json").toFile());
            JsonNode ref = Fixtures.JSON.readTree(MixtralFixtureTest.dir(name).resolve("config.json").toFile());
            assertEquals("mixtral", c.get("model_type").asText());
            assertEquals("MixtralForCausalLM", c.get("architectures").get(0).asText());
            for (String key : new String[] {"intermediate_size", "num_local_experts", "num_experts_per_tok", "router_aux_loss_coef",
                    "tie_word_embeddings", "bos_token_id", "eos_token_id", "dtype", "hidden_size", "num_key_value_heads", "vocab_size"})
                assertEquals(ref.get(key), c.get(key), name + " " + key);
            assertEquals(ref.get("rope_parameters").get("rope_theta").asDouble(), c.get("rope_theta").asDouble(), name);
            assertEquals(ref.get("rope_parameters"), c.get("rope_parameters"), name);
            assertFalse(c.get("output_router_logits").asBoolean());
            assertTrue(c.get("sliding_window").isNull());
            assertFalse(c.has("dive_expert_bias"));
            try (Stream<Path> s = Files.list(tmp)) { // no temp folder left beside the export
                assertTrue(s.noneMatch(p -> p.getFileName().toString().contains(".tmp-")));
            }
        }
    }

    @Test
    void shardedExportWithTokenizerLoadsTheSame() throws Exception {
        Path tokSrc = tmp.resolve("tok");
        Files.createDirectories(tokSrc);
        Files.copy(Path.of("src/test/resources/llama/tiny_bpe/tokenizer.json"), tokSrc.resolve("tokenizer.json"));
        Path out = tmp.resolve("sharded");
        try (LlamaModel original = LlamaModel.load(MixtralFixtureTest.dir("k2_i40"), backend)) {
            MixtralExport.write(out, original, MixtralExport.Options.defaults().withMaxShardBytes(40_000).withTokenizerFrom(tokSrc));
            assertTrue(Files.exists(out.resolve("model.safetensors.index.json")));
            assertFalse(Files.exists(out.resolve("model.safetensors")));
            assertArrayEquals(Files.readAllBytes(tokSrc.resolve("tokenizer.json")), Files.readAllBytes(out.resolve("tokenizer.json")));
            try (Checkpoint c = Checkpoint.open(out); LlamaModel again = LlamaModel.load(out, backend)) {
                assertTrue(c.files().size() > 3, "shards: " + c.files());
                assertArrayEquals(original.logits(ids("k2_i40")), again.logits(ids("k2_i40")));
            }
        }
    }

    /** the fixture's weights plus random (or zero) expert biases, as in-memory tensors */
    private static Map<String, Tensor> withBiases(LlamaModel m, boolean zero) {
        Map<String, Tensor> w = new LinkedHashMap<>(m.namedWeights());
        Random r = new Random(1);
        int d = m.config().hiddenSize();
        for (int l = 0; l < m.config().numHiddenLayers(); l++)
            for (int e = 0; e < m.config().moe().numLocalExperts(); e++) {
                float[] b = new float[d];
                if (!zero) for (int i = 0; i < d; i++) b[i] = (r.nextFloat() - 0.5f) * 0.5f;
                String name = "model.layers." + l + ".block_sparse_moe.experts." + e + ".bias";
                w.put(name, Tensor.ofFloats(name, b, d));
            }
        return w;
    }

    private static LlamaConfig biased(LlamaConfig c) {
        LlamaConfig.Moe m = c.moe();
        return c.toMixtral(c.intermediateSize(), new LlamaConfig.Moe(m.numLocalExperts(), m.numExpertsPerTok(), m.routerAuxLossCoef(), false, true));
    }

    @Test
    void expertBiasesAreRefusedOrWrittenAsTheExtensionNeverDropped() throws Exception {
        try (LlamaModel original = LlamaModel.load(MixtralFixtureTest.dir("k2_i40"), backend)) {
            Map<String, Tensor> weights = withBiases(original, false);
            LlamaConfig config = biased(original.config());
            int[] ids = ids("k2_i40");
            // refused by default, naming the extension and the way out
            Path refused = tmp.resolve("refused");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> MixtralExport.write(refused, config, weights, MixtralExport.Options.defaults()));
            assertTrue(e.getMessage().contains("dive_expert_bias") && e.getMessage().contains("withExpertBias"), e.getMessage());
            assertFalse(Files.exists(refused));
            // bias tensors with a config that does not declare them: refused too
            assertThrows(ModelException.class, () -> MixtralExport.write(tmp.resolve("undeclared"), original.config(), weights,
                    MixtralExport.Options.defaults().withExpertBias(true)));
            // allowed: written with the flag, loaded by our engine with the biases in effect
            Path out = tmp.resolve("biased");
            MixtralExport.write(out, config, weights, MixtralExport.Options.defaults().withExpertBias(true));
            assertTrue(Fixtures.JSON.readTree(out.resolve("config.json").toFile()).get("dive_expert_bias").asBoolean());
            LlamaModel inMemory = LlamaModel.fromWeights(config, weights::get, "in memory", backend, null);
            try (LlamaModel loaded = LlamaModel.load(out, backend)) {
                float[] expected = inMemory.logits(ids);
                assertArrayEquals(expected, loaded.logits(ids));
                // and the biases matter (the check above is not vacuous)
                float[] plain = original.logits(ids);
                assertTrue(relativeError(plain, expected, 0, expected.length) > 1e-3);
            }
        }
    }

    @Test
    void zeroBiasesExportAsStockMixtral() throws Exception {
        try (LlamaModel original = LlamaModel.load(MixtralFixtureTest.dir("k2_i40"), backend)) {
            Path out = tmp.resolve("zero");
            MixtralExport.write(out, biased(original.config()), withBiases(original, true), MixtralExport.Options.defaults());
            assertFalse(Fixtures.JSON.readTree(out.resolve("config.json").toFile()).has("dive_expert_bias"));
            try (Checkpoint c = Checkpoint.open(out); LlamaModel again = LlamaModel.load(out, backend)) {
                assertTrue(c.names().stream().noneMatch(n -> n.endsWith(".bias")));
                assertArrayEquals(original.logits(ids("k2_i40")), again.logits(ids("k2_i40")));
            }
        }
    }

    @Test
    void failuresLeaveNothingBehindAndExistingFoldersAreNotOverwritten() throws Exception {
        try (LlamaModel original = LlamaModel.load(MixtralFixtureTest.dir("k1"), backend)) {
            // a tokenizer "file" that is a folder fails after the weights are written: no export, no temp folder
            Path tokSrc = tmp.resolve("badtok");
            Files.createDirectories(tokSrc.resolve("tokenizer.json"));
            Path out = tmp.resolve("out");
            IOException e = assertThrows(IOException.class,
                    () -> MixtralExport.write(out, original, MixtralExport.Options.defaults().withTokenizerFrom(tokSrc)));
            assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
            assertFalse(Files.exists(out));
            try (Stream<Path> s = Files.list(tmp)) {
                assertTrue(s.noneMatch(p -> p.getFileName().toString().contains(".tmp-")));
            }
            // an existing non-empty folder is refused
            Path busy = tmp.resolve("busy");
            Files.createDirectories(busy);
            Files.writeString(busy.resolve("keep.txt"), "mine");
            e = assertThrows(IOException.class, () -> MixtralExport.write(busy, original, MixtralExport.Options.defaults()));
            assertTrue(e.getMessage().contains("not an empty folder"), e.getMessage());
            assertEquals("mine", Files.readString(busy.resolve("keep.txt")));
            // a dense config cannot be exported as Mixtral
            try (LlamaModel dense = LlamaModel.load(Fixtures.dir("gqa"), backend)) {
                assertThrows(IllegalArgumentException.class, () -> MixtralExport.write(tmp.resolve("dense"), dense, MixtralExport.Options.defaults()));
            }
        }
    }

    @Test
    void wrongExpertShapeIsNamed() throws Exception {
        try (LlamaModel original = LlamaModel.load(MixtralFixtureTest.dir("k1"), backend)) {
            Map<String, Tensor> w = new LinkedHashMap<>(original.namedWeights());
            String name = "model.layers.1.block_sparse_moe.experts.2.w2.weight";
            w.put(name, w.get(name).reshape(32, 48)); // transposed shape, same count
            ModelException e = assertThrows(ModelException.class,
                    () -> MixtralExport.write(tmp.resolve("bad"), original.config(), w, MixtralExport.Options.defaults()));
            assertTrue(e.getMessage().contains(name) && e.getMessage().contains("expected [48, 32]"), e.getMessage());
            assertFalse(Files.exists(tmp.resolve("bad")));
            Map<String, Tensor> missing = new LinkedHashMap<>(original.namedWeights());
            String gone = "model.layers.0.block_sparse_moe.experts.3.w3.weight";
            missing.remove(gone);
            e = assertThrows(ModelException.class,
                    () -> MixtralExport.write(tmp.resolve("bad"), original.config(), missing, MixtralExport.Options.defaults()));
            assertTrue(e.getMessage().contains(gone) && e.getMessage().contains("missing"), e.getMessage());
        }
    }
}
