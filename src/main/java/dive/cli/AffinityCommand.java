package dive.cli;

import dive.api.Engine;
import dive.convert.AffinityMining;
import dive.convert.Clustering;
import dive.data.Corpus;
import dive.util.Progress;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "affinity", mixinStandardHelpOptions = true,
        description = {"DIVE domain-affinity mining: which datasets prune alike, clustered into --experts groups.",
                "Prunes the dense model with each dataset's calibration windows, measures every",
                "pruned model's perplexity on every dataset, correlate, cluster into --experts groups.",
                "Writes OUT/affinity.json (P, A, correlation, dendrogram, groups, sampling seeds) and OUT/affinity.png."})
final class AffinityCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR", description = "dense Hugging Face Llama folder with tokenizer.json") Path modelDir;
    @Option(names = "--data", defaultValue = "bundled", paramLabel = "bundled|CORPUS_DIR", description = "corpus (default: the bundled sample)") String data;
    @Option(names = "--experts", required = true, paramLabel = "E", description = "number of groups (experts)") int experts;
    @Option(names = "--ratio", defaultValue = "0.5", paramLabel = "R", description = "share of FFN channels removed (default ${DEFAULT-VALUE})") double ratio;
    @Option(names = "--score", defaultValue = "wifv", paramLabel = "NAME", description = "channel score: wifv (default), ifv, wifn, wanda, taylor") String score;
    @Option(names = "--linkage", defaultValue = "average", paramLabel = "NAME", description = "average (default), complete or ward") String linkage;
    @Option(names = "--windows", defaultValue = "16", paramLabel = "N", description = "calibration windows per dataset (default ${DEFAULT-VALUE})") int windows;
    @Option(names = "--eval-windows", defaultValue = "8", paramLabel = "N", description = "affinity-evaluation windows per dataset (default ${DEFAULT-VALUE})") int evalWindows;
    @Option(names = "--seqlen", defaultValue = "256", paramLabel = "T", description = "tokens per window (default ${DEFAULT-VALUE})") int seqlen;
    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "sampling seed (default ${DEFAULT-VALUE})") long seed;
    @Option(names = "--datasets", split = ",", paramLabel = "NAME,...", description = "datasets to use (default: all)") List<String> datasets;
    @Option(names = "--bias", description = "prune with bias compensation") boolean bias;
    @Option(names = "--out", required = true, paramLabel = "DIR", description = "output folder") Path out;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        AffinityMining.Options options = new AffinityMining.Options(datasets == null ? List.of() : datasets, ratio, score, windows,
                evalWindows, seqlen, seed, Clustering.Linkage.parse(linkage, "--linkage"), experts, bias);
        Corpus corpus = data.equals("bundled") ? Corpus.bundled() : Corpus.open(Path.of(data));
        int count = AffinityMining.datasetNames(corpus, options).size();
        dive.backend.Backend backend = common.backend();  // the flags are checked before the plan
        MemoryPlans.state(MemoryPlans.affinity("affinity", modelDir, count, ratio, seqlen), common.quiet);
        try (Engine engine = Engine.load(modelDir, backend, loadFlags.options())) {
            AffinityMining.AffinityResult r;
            try (Progress bar = new Progress("affinity", AffinityMining.progressUnits(count, options), "windows", !common.quiet)) {
                r = AffinityMining.run(engine.model(), engine.requireTokenizer(), corpus, options, out, bar);
            }
            System.out.printf("affinity of %d datasets in %.1f s → %s%n", count, r.seconds(), out.resolve("affinity.json"));
            for (int g = 0; g < experts; g++) {
                StringBuilder line = new StringBuilder("group " + g + ":");
                for (int i = 0; i < r.groups().length; i++) if (r.groups()[i] == g) line.append(' ').append(r.datasets().get(i));
                System.out.println(line);
            }
        }
        return 0;
    }
}
