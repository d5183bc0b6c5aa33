package dive.train;

import dive.backend.Backend;
import dive.io.SafetensorsWriter;
import dive.model.LlamaConfig;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The one place where a recipe's {@code model} becomes a {@link TrainableModel} and its exporter.
 * Kinds: {@code config} (a fresh Llama or Mixtral from config fields or config.json, initialised from the recipe seed),
 * {@code checkpoint} (a Llama or Mixtral model folder to continue from; a Mixtral one is exported as Mixtral), and kinds registered with {@link #register}
 * (an extension point; the tests register a toy model).
 */
public final class ModelFactory {
    private ModelFactory() {}

    public record Built(TrainableModel model, Trainer.Export export) {}

    /** builds a registered kind's model; {@code backend}: what the run computes on */
    public interface Builder { Built build(Recipe recipe, Tokenizer tokenizer, Path tokenizerJson, Backend backend) throws IOException; }

    private static final Map<String, Builder> KINDS = new ConcurrentHashMap<>();

    public static void register(String kind, Builder builder) {
        if (kind.equals("config") || kind.equals("checkpoint")) throw new IllegalArgumentException("model kind '" + kind + "' is built in");
        KINDS.put(kind, builder);
    }

    /** checks of the model section that need no tokenizer and no weights (run before any work) */
    public static void check(Recipe recipe) throws IOException {
        String kind = recipe.model().kind();
        if (kind.equals("config") || kind.equals("checkpoint")) {
            LlamaConfig config = llamaConfig(recipe);
            if (recipe.seqLen() > config.maxPositionEmbeddings()) {
                throw new IllegalArgumentException(recipe.source() + ": seq_len " + recipe.seqLen() + " exceeds the model's max_position_embeddings "
                        + config.maxPositionEmbeddings());
            }
        } else if (!KINDS.containsKey(kind)) {
            throw new IllegalArgumentException(recipe.source() + ": model." + kind + ": unknown model kind (expected config or checkpoint)");
        }
    }

    static LlamaConfig llamaConfig(Recipe recipe) throws IOException {
        Recipe.Model m = recipe.model();
        if (m.kind().equals("checkpoint")) {
            if (!Files.isDirectory(m.path())) throw new java.nio.file.NoSuchFileException(m.path() + " (model.checkpoint: expected a model folder)");
            return LlamaConfig.load(m.path());
        }
        if (m.path() != null) return LlamaConfig.load(m.path().getFileName().toString().equals("config.json") ? m.path().getParent() : m.path());
        return LlamaConfig.parse(m.spec(), recipe.source() + " model.config");
    }

    /** the recipe's model and its exporter, computing on {@code backend} */
    public static Built create(Recipe recipe, Tokenizer tokenizer, Path tokenizerJson, Backend backend) throws IOException {
        check(recipe);
        String kind = recipe.model().kind();
        if (kind.equals("config") || kind.equals("checkpoint")) {
            LlamaConfig config = llamaConfig(recipe);
            if (tokenizer.vocabSize() > config.vocabSize()) {
                throw new IllegalArgumentException(recipe.source() + ": the tokenizer has " + tokenizer.vocabSize()
                        + " tokens but the model's vocab_size is " + config.vocabSize());
            }
            TrainableLlama llama = kind.equals("checkpoint")
                    ? TrainableLlama.fromCheckpoint(recipe.model().path(), backend)
                    : TrainableLlama.initialize(config, backend, recipe.seed());
            if (llama.isMoe()) {
                LlamaConfig.Moe moe = llama.config().moe();
                Recipe.Moe m = recipe.moe();
                double aux = m != null && !Double.isNaN(m.auxLossCoef()) ? m.auxLossCoef() : moe.outputRouterLogits() ? moe.routerAuxLossCoef() : 0;
                llama.setAuxLossCoef(aux);
                if (m != null && m.soft())
                    llama.setRouting(Double.isNaN(m.temperature()) ? RoutingMode.paperSoft(moe.numExpertsPerTok()) : RoutingMode.soft(m.temperature()));
            } else if (recipe.moe() != null) {
                throw new IllegalArgumentException(recipe.source() + ": moe: the model is not a Mixtral (MoE) model");
            }
            if (recipe.lora() != null) {
                Recipe.Lora l = recipe.lora();
                llama.addLora(new TrainableLlama.LoraConfig(l.r(), l.alpha(), l.dropout(), Set.copyOf(l.targets()), recipe.seed()));
            }
            DType sourceDtype = llama.parameter("model.embed_tokens.weight").value().dtype();  // before anything trains
            Trainer.Export export = dir -> {
                if (llama.lora() != null) llama.mergeLora();   // the end of training: fold adapters into the weights
                llama.saveCheckpoint(dir, tokenizerJson, recipe.outputDtype(sourceDtype));
            };
            return new Built(llama, export);
        }
        if (recipe.moe() != null) throw new IllegalArgumentException(recipe.source() + ": moe: only Mixtral models (model.config / model.checkpoint) have MoE layers");
        if (recipe.lora() != null) throw new IllegalArgumentException(recipe.source() + ": lora: only Llama models (model.config / model.checkpoint) take LoRA adapters");
        return KINDS.get(kind).build(recipe, tokenizer, tokenizerJson, backend);
    }

    /**
     * an exporter for any model: every parameter, under its own name, into {@code model.safetensors} as {@code dtype}
     * (F32, BF16 or F16; null: each in its own dtype), converted while streaming to the file
     */
    public static Trainer.Export parametersExport(TrainableModel model, DType dtype) {
        if (dtype != null && !dtype.isFloatWeight()) throw new IllegalArgumentException("output: expected F32, BF16 or F16, found " + dtype);
        return dir -> {
            List<Tensor> tensors = new ArrayList<>();
            for (Parameter p : model.parameters()) tensors.add(p.value());
            SafetensorsWriter.write(dir.resolve(SafetensorsWriter.SINGLE_FILE), tensors, Map.of(), dtype);
        };
    }
}
