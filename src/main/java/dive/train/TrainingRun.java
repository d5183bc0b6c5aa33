package dive.train;

import dive.backend.Backend;
import dive.data.Corpus;
import dive.data.Manifest;
import dive.data.Split;
import dive.tokenizer.BpeTrainer;
import dive.tokenizer.Tokenizer;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Logger;

/**
 * A recipe made ready to train, in this order, so that every check runs before any work and nothing in the run
 * folder is overwritten by a failing start: recipe and run folder checks → corpus and dataset names → model
 * section (config, seq_len) → tokenizer (loaded, or trained once and kept in RUN_DIR/tokenizer.json) →
 * token shards (cached in RUN_DIR/data/) → model, freeze patterns → loader and eval windows (sizes) →
 * on --resume the checkpoint (recipe hash, shapes, integrity).
 */
public final class TrainingRun implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(TrainingRun.class.getName());
    public static final String TOKENIZER_FILE = "tokenizer.json";
    public static final List<String> TRAINED_SPECIAL_TOKENS = List.of("<|begin_of_text|>", "<|end_of_text|>");

    private final Trainer trainer;
    private final ModelFactory.Built built;
    private final Path runDir;

    private TrainingRun(Trainer trainer, ModelFactory.Built built, Path runDir) {
        this.trainer = trainer; this.built = built; this.runDir = runDir;
    }

    public Trainer trainer() { return trainer; }
    public TrainableModel model() { return built.model(); }

    /** the run of {@code recipe} in {@code runDir}, its model computing on {@code backend} (every check before any work) */
    public static TrainingRun prepare(Recipe recipe, Path runDir, boolean resume, boolean progress, Backend backend) throws IOException {
        boolean hasCheckpoint = Files.isRegularFile(runDir.resolve(TrainState.DIR).resolve(TrainState.LATEST));
        if (hasCheckpoint && !resume) throw new IllegalArgumentException(runDir + " already holds a training run: pass --resume to continue it or choose another --out");
        if (!hasCheckpoint && resume) throw new IllegalArgumentException(runDir + ": --resume, but there is no checkpoint to resume from");

        Corpus corpus = recipe.data().corpus().equals("bundled") ? Corpus.bundled()
                : Corpus.open(recipe.baseDir().resolve(recipe.data().corpus()));
        List<String> known = corpus.datasets().stream().map(Manifest.Entry::name).toList();
        for (String name : recipe.data().datasets()) {
            if (!known.contains(name)) throw new IllegalArgumentException(recipe.source() + ": data.datasets: '" + name + "' is not in the corpus " + corpus.location() + " (has " + known + ")");
        }
        ModelFactory.check(recipe);
        if (recipe.tokenizer().file() != null && !Files.isRegularFile(recipe.tokenizer().file())) {
            throw new java.nio.file.NoSuchFileException(recipe.tokenizer().file() + " (tokenizer)");
        }

        Files.createDirectories(runDir);
        Path tokenizerJson = tokenizer(recipe, corpus, runDir);
        Tokenizer tokenizer = Tokenizer.load(tokenizerJson);
        String tokenizerSha256 = TokenShard.sha256(Files.readAllBytes(tokenizerJson));

        List<TokenShard> trainShards = new ArrayList<>();
        List<EvalSet> evalSets = new ArrayList<>();
        Path cache = runDir.resolve("data");
        for (String name : recipe.data().datasets()) {
            trainShards.add(TokenShard.loadOrBuild(cache, name + ".train", corpus.fileBytes(name, Split.TRAIN),
                    corpus.location() + "/" + name + "/" + Split.TRAIN.fileName(), tokenizer, tokenizerSha256));
            if (recipe.data().evalWindows() > 0) {
                TokenShard eval = TokenShard.loadOrBuild(cache, name + ".eval", corpus.fileBytes(name, Split.EVAL),
                        corpus.location() + "/" + name + "/" + Split.EVAL.fileName(), tokenizer, tokenizerSha256);
                evalSets.add(EvalSet.of(eval, name, recipe.seqLen(), recipe.batchSize(), recipe.data().evalWindows()));
            }
        }
        double[] weights = recipe.data().weights() != null ? recipe.data().weights() : DataLoader.proportionalWeights(trainShards);
        DataLoader loader = new DataLoader(trainShards, weights, recipe.batchSize(), recipe.seqLen(), recipe.seed());

        ModelFactory.Built built = ModelFactory.create(recipe, tokenizer, tokenizerJson, backend);
        int trainable = ParameterPatterns.apply(built.model().parameters(), recipe.train(), recipe.freeze());
        long trainableElements = built.model().parameters().stream().filter(Parameter::trainable).mapToLong(Parameter::numel).sum();
        LOG.info(String.format("%d trainable tensors (%,d values); %d steps × %,d tokens", trainable, trainableElements,
                recipe.maxSteps(), recipe.tokensPerStep()));

        Trainer trainer = new Trainer(built.model(), loader, evalSets, runDir, new Trainer.Settings(recipe.gradAccum(), recipe.maxSteps(),
                recipe.evalEvery(), recipe.checkpointEvery(), recipe.keepCheckpoints(), recipe.clip(), recipe.schedule(),
                recipe.optimizer(), recipe.sha256(), progress));
        if (resume) trainer.resume();
        if (Files.isRegularFile(recipe.source())) { // a copy of the recipe beside its results
            String name = recipe.source().getFileName().toString();
            AtomicFiles.writeString(runDir.resolve("recipe" + name.substring(Math.max(0, name.lastIndexOf('.')))), Files.readString(recipe.source()));
        }
        return new TrainingRun(trainer, built, runDir);
    }

    public Trainer.Result run() throws IOException { return trainer.run(built.export()); }

    /** frees the model's memory now when it holds any (a {@link TrainableLlama}); the run must not be used afterwards */
    @Override
    public void close() throws Exception {
        if (built.model() instanceof AutoCloseable c) c.close();
    }

    /**
     * Exports the model as the latest checkpoint left it (after {@code prepare(..., resume = true, ...)}) into
     * {@code dir}, which must not exist yet: written into a temp folder beside it, then renamed.
     */
    public Path exportLatest(Path dir) throws IOException {
        Path target = dir.toAbsolutePath();
        if (Files.exists(target)) throw new java.nio.file.FileAlreadyExistsException(target + " (--export-latest: choose a folder that does not exist yet)");
        Files.createDirectories(target.getParent());
        Path temp = dive.util.AtomicFiles.tempDirectoryBeside(target);
        try {
            built.export().save(temp);
            Files.move(temp, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } finally {
            if (Files.exists(temp)) try (var s = Files.walk(temp)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        return target;
    }

    /** the tokenizer.json to use: the recipe's file, or RUN_DIR/tokenizer.json (trained on the first start) */
    private static Path tokenizer(Recipe recipe, Corpus corpus, Path runDir) throws IOException {
        if (recipe.tokenizer().file() != null) return recipe.tokenizer().file();
        Path trained = runDir.resolve(TOKENIZER_FILE);
        if (Files.isRegularFile(trained)) return trained;
        List<String> texts = new ArrayList<>();
        for (String name : recipe.tokenizer().datasets()) texts.addAll(corpus.texts(name, Split.TRAIN));
        LOG.info("training a " + recipe.tokenizer().vocabSize() + "-token BPE tokenizer on " + texts.size() + " documents");
        Tokenizer t = BpeTrainer.train(texts, recipe.tokenizer().vocabSize(), recipe.tokenizer().minFrequency(),
                TRAINED_SPECIAL_TOKENS, TRAINED_SPECIAL_TOKENS.getFirst());
        try {
            BpeTrainer.save(t, trained);
        } catch (IOException e) {
            throw dive.util.FileErrors.wrap("writing", trained, e);  // a full disk's message names no file
        }
        return trained;
    }
}
