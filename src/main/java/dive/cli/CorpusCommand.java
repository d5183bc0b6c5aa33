package dive.cli;

import dive.data.Catalog;
import dive.data.Corpus;
import dive.data.CorpusBuilder;
import dive.data.CorpusSampler;
import dive.data.Manifest;
import dive.data.Sources;
import dive.data.Split;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "corpus", mixinStandardHelpOptions = true,
        description = "Multi-domain text corpora from Debian and npm packages: build, sample, list.",
        subcommands = {CorpusCommand.Build.class, CorpusCommand.Sample.class, CorpusCommand.ListDatasets.class})
final class CorpusCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override public void run() { spec.commandLine().usage(System.out); }

    @Command(name = "build", mixinStandardHelpOptions = true,
            description = "Build <out>/<dataset>/{train,calib,eval}.jsonl and <out>/manifest.json from the installed sources "
                    + "(install them with src/main/scripts/install-corpus-sources.sh).")
    static final class Build implements Callable<Integer> {
        @Option(names = "--out", required = true, paramLabel = "DIR") Path out;
        @Option(names = "--datasets", split = ",", paramLabel = "NAME", description = "only these datasets (default: all; see `dive corpus list`)") List<String> datasets;
        @Option(names = "--max-train-bytes", defaultValue = "4194304", paramLabel = "N", description = "text bytes kept for train per dataset (default ${DEFAULT-VALUE})") long maxTrain;
        @Option(names = "--max-calib-bytes", defaultValue = "524288", paramLabel = "N", description = "text bytes kept for calib per dataset (default ${DEFAULT-VALUE})") long maxCalib;
        @Option(names = "--max-eval-bytes", defaultValue = "262144", paramLabel = "N", description = "text bytes kept for eval per dataset (default ${DEFAULT-VALUE})") long maxEval;
        @Option(names = "--npm-dir", paramLabel = "DIR", description = "npm --prefix dir holding spdx-license-list (default $DIVE_CORPUS_NPM or ~/.cache/dive/npm)") Path npmDir;
        @Option(names = "--jdk", paramLabel = "DIR", description = "JDK home whose lib/src.zip gives the Java datasets (default: the running JDK)") Path jdk;
        @Option(names = "--root", paramLabel = "DIR", defaultValue = "/", description = "file-system root of the Debian packages (default ${DEFAULT-VALUE})") Path root;
        @Option(names = {"-q", "--quiet"}, description = "no progress bars") boolean quiet;

        @Override public Integer call() throws Exception {
            Sources sys = Sources.system();
            Sources sources = new Sources(root, jdk != null ? jdk : sys.jdkHome(), npmDir != null ? npmDir : sys.npmDir());
            long start = System.nanoTime();
            Manifest m = CorpusBuilder.build(sources, Catalog.select(datasets), out,
                    new CorpusBuilder.Limits(maxTrain, maxCalib, maxEval), !quiet);
            printSummary(m, out.toString(), (System.nanoTime() - start) / 1e9);
            return 0;
        }
    }

    @Command(name = "sample", mixinStandardHelpOptions = true,
            description = "Cut a small sample (whole documents, same format, plus SOURCES.md) out of a built corpus.")
    static final class Sample implements Callable<Integer> {
        @Option(names = "--from", required = true, paramLabel = "DIR", description = "a corpus built by `dive corpus build`") Path from;
        @Option(names = "--out", required = true, paramLabel = "DIR", description = "e.g. src/main/resources/dive/corpus") Path out;
        @Option(names = "--bytes-per-dataset", defaultValue = "147456", paramLabel = "N",
                description = "text bytes per dataset: half train, a quarter each calib and eval (default ${DEFAULT-VALUE})") long bytes;

        @Override public Integer call() throws Exception {
            long start = System.nanoTime();
            Manifest m = CorpusSampler.sample(Corpus.open(from), out, bytes);
            printSummary(m, out.toString(), (System.nanoTime() - start) / 1e9);
            return 0;
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true, description = "List the datasets the builder knows, with their domains and sources.")
    static final class ListDatasets implements Callable<Integer> {
        @Override public Integer call() {
            for (Catalog.Dataset d : Catalog.all()) {
                System.out.printf(Locale.ROOT, "%-20s %-12s %s%n", d.name(), d.domain(), d.upstream());
            }
            return 0;
        }
    }

    static void printSummary(Manifest m, String where, double seconds) {
        long total = 0;
        System.out.printf(Locale.ROOT, "%-20s %-12s %8s %8s %8s %12s%n", "dataset", "domain", "train", "calib", "eval", "bytes");
        for (Manifest.Entry e : m.datasets()) {
            long bytes = 0;
            for (Split s : Split.values()) bytes += e.bytes().get(s);
            total += bytes;
            System.out.printf(Locale.ROOT, "%-20s %-12s %8d %8d %8d %12d%n", e.name(), e.domain(),
                    e.documents().get(Split.TRAIN), e.documents().get(Split.CALIB), e.documents().get(Split.EVAL), bytes);
        }
        System.out.printf(Locale.ROOT, "%d datasets, %d bytes in %s (%.1f s)%n", m.datasets().size(), total, where, seconds);
    }
}
