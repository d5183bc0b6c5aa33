package dive.convert;

import dive.backend.Backend;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.MixtralExport;
import dive.tensor.DType;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One way of turning the dense model into the model that is retrained (DIVE, each baseline of DIVE-METHOD.md section 6):
 * it builds the FFNs or experts and the routers from the calibration windows (and, for DIVE, the groups) into a Hugging
 * Face folder, and says how that model is retrained and exported. {@link DiveConversion} runs every other stage (windows,
 * groups, evaluation before and after retraining, the retraining stages, the export, the report entry) the same way for
 * every method; {@link Methods} maps the recipe's names to the classes. Adding a method = one class implementing this
 * interface (and its name in {@link Methods} to reach it from a recipe).
 */
public interface Method {
    /** the recipe's name of the method (recipe key {@code methods}), its report.json key and its folder OUT/&lt;name&gt; */
    String name();

    /** what the method builds, which decides its retraining stages and its export */
    Family family();

    /**
     * Builds the model to retrain into {@code c.buildDir()}, atomically (it appears whole or not at all; a rerun skips
     * the build once {@code config.json} is there), plus any side files in {@code c.dir()} (kept_channels.json,
     * output_scales.json …).
     */
    void build(BuildContext c) throws Exception;

    /**
     * Refuses, before any work, settings this method cannot honour (the run's E, k, r and recipe on the dense model's
     * config), with a message naming the setting; the default accepts everything the driver's own checks accept.
     */
    default void check(DiveConversion.Request request, LlamaConfig denseConfig) {}

    /** how the method builds its model, for the report entry's {@code variant}; null for none (DIVE) */
    String variant(Context c);

    /** the grouping the build needs ("affinity", "random" or "file", written to groups.json before the build); null: no groups */
    default String grouping(ConvertRecipe recipe) { return null; }

    /** the folder (in the method's folder) that holds the built model before retraining */
    default String buildFolder() { return "build"; }

    /** refuses a build folder left by an earlier run that this method would not build (another recipe, an older version) */
    default void checkBuilt(Path buildDir, Context c) throws java.io.IOException {}

    /**
     * Non-null: the method is a whole conversion of its own in its folder, run with these settings (and only its
     * primary method); its report entry is that run's primary entry with {@link #variant} added. The DIVE ablation
     * with random groups is one, so its folder reads like any DIVE run (convert.json, report.json, report.md).
     */
    default ConvertRecipe ownConversion(ConvertRecipe recipe) { return null; }

    /** the export's format, in words, for the report entry */
    default String exportFormat(Context c) {
        return switch (family()) {
            case MOE -> c.recipe().biasCompensation() ? "mixtral with dive_expert_bias (this engine's extension) unless all biases are zero"
                    : "stock Mixtral";
            case DENSE -> "llama";
        };
    }

    /** writes the retrained checkpoint {@code from} as the exported model {@code to} (atomically, a folder), as {@code dtype} */
    default void export(Path from, Path to, Context c, DType dtype) throws Exception {
        switch (family()) {
            case MOE -> {
                try (LlamaModel last = LlamaModel.load(from, c.backend())) {
                    MixtralExport.write(to, last, MixtralExport.Options.defaults().withTokenizerFrom(c.modelDir()).withExpertBias(true)
                            .withDtype(dtype));
                }
            }
            case DENSE -> DensePruningMethod.exportLlama(from, to, c.modelDir(), dtype);
        }
    }

    /** the built model's kind: its retraining stages and its export */
    enum Family {
        /**
         * experts and routers (Mixtral, with dive_expert_bias under bias compensation): stage 0 trains the routers with
         * soft routing, stages 1 and 2 LoRA on every expert + routers + RMSNorms with top-k routing; exported as Mixtral
         */
        MOE,
        /**
         * a dense Llama: LoRA on gate_proj/up_proj/down_proj and every RMSNorm in full; there is no router for stage 0, so
         * its tokens join stage 1 (the same total budget); exported as a Llama
         */
        DENSE;

        /** the retraining stages 0, 1, 2 of {@code recipe} for this kind (null or 0 tokens: skipped) */
        public List<ConvertRecipe.Stage> stages(ConvertRecipe recipe) {
            List<ConvertRecipe.Stage> stages = new ArrayList<>(List.of(recipe.stage0(), recipe.stage1(), recipe.stage2()));
            if (this == DENSE) {
                ConvertRecipe.Stage s1 = recipe.stage1();
                stages.set(1, new ConvertRecipe.Stage(s1.tokens() + recipe.stage0().tokens(), s1.lr(), s1.batchSize(), s1.seqLen(), s1.warmup(),
                        s1.temperature(), s1.loraR(), s1.loraAlpha(), s1.loraDropout()));
                stages.set(0, null);
            }
            return stages;
        }
    }

    /**
     * What a method may read: the request (E, k, r, recipe), the dense model's folder, config and tokenizer, every dataset's
     * windows, the method's folder ({@code OUT} for the primary method, {@code OUT/<name>} otherwise) and the backend.
     */
    record Context(DiveConversion.Request request, Path modelDir, LlamaConfig denseConfig, Path tokenizerJson, List<String> datasets,
                   List<DatasetWindows> windows, Path dir, Backend backend) {
        public ConvertRecipe recipe() { return request.recipe(); }

        /** every dataset's calibration windows, in dataset order */
        public List<int[]> pooledCalibration() {
            List<int[]> pool = new ArrayList<>();
            for (DatasetWindows w : windows) pool.addAll(w.calibration());
            return pool;
        }
    }

    /**
     * What a build reads beyond the {@link Context}: the loaded dense model, the groups (null unless {@link #grouping}
     * asks for them) and the folder to build into.
     */
    record BuildContext(Context context, LlamaModel dense, Groups groups, Path buildDir) {
        public ConvertRecipe recipe() { return context.recipe(); }
        public DiveConversion.Request request() { return context.request(); }
        public Path dir() { return context.dir(); }

        /**
         * writes {@code built} as the build (a Mixtral, expert biases kept as dive_expert_bias), each expert's down
         * projection × its output scale first when the recipe asks (fitted on {@code windowsOfExpert}[e], written to
         * the method folder's output_scales.json)
         */
        public void writeExperts(ExpertReconstruction.Result built, List<List<int[]>> windowsOfExpert) throws java.io.IOException {
            if (recipe().outputScale()) {
                double[][] scales = new double[request().experts()][];
                built = OutputScale.apply(dense, built, windowsOfExpert, scales);
                OutputScale.write(dir(), scales);
            }
            MixtralExport.write(buildDir, built.config(), built.weights(),
                    MixtralExport.Options.defaults().withTokenizerFrom(context.modelDir()).withExpertBias(true));
        }
    }

    /** true when {@code buildDir} holds a finished build (its config.json; builds are written atomically) */
    static boolean isBuilt(Path buildDir) { return Files.isRegularFile(buildDir.resolve("config.json")); }

    /** the suffix of a baseline's variant when output_scale is on: where the scale was fitted and what it scales */
    static String outputScaleNote(ConvertRecipe recipe, boolean perExpert) {
        return recipe.outputScale() ? "; output scale: least squares against the dense FFN on the pooled calibration windows, per "
                + (perExpert ? "expert and layer" : "layer") + ", folded into the down projection (" + OutputScale.FILE + ")" : "";
    }
}
