package dive.data;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;

/**
 * Reads a corpus: a directory written by {@link CorpusBuilder} ({@link #open}) or the sample bundled in the jar under
 * {@code /dive/corpus/} ({@link #bundled}; jar resources are read as streams, never as files).
 */
public final class Corpus {
    /** the classpath folder of the bundled sample */
    public static final String BUNDLED_RESOURCE_DIR = "/dive/corpus/";

    private interface Files2 { InputStream open(String relativePath) throws IOException; }

    private final String where;
    private final Files2 files;
    private final Manifest manifest;

    private Corpus(String where, Files2 files) throws IOException {
        this.where = where;
        this.files = files;
        try (InputStream in = files.open(Manifest.FILE_NAME)) {
            this.manifest = Manifest.read(in, where + "/" + Manifest.FILE_NAME);
        }
    }

    /** a corpus directory ({@code manifest.json} plus one folder per dataset) */
    public static Corpus open(Path dir) throws IOException {
        if (!Files.isRegularFile(dir.resolve(Manifest.FILE_NAME))) {
            throw new NoSuchFileException(dir.resolve(Manifest.FILE_NAME) + " (not a corpus directory: build one with `dive corpus build --out " + dir + "`)");
        }
        return new Corpus(dir.toString(), rel -> Files.newInputStream(dir.resolve(rel)));
    }

    /** the small sample bundled in the jar (every dataset, a few tens of KB per split) */
    public static Corpus bundled() {
        try {
            return new Corpus("classpath:" + BUNDLED_RESOURCE_DIR, rel -> {
                InputStream in = Corpus.class.getResourceAsStream(BUNDLED_RESOURCE_DIR + rel);
                if (in == null) throw new NoSuchFileException("classpath resource " + BUNDLED_RESOURCE_DIR + rel + " is missing from this build");
                return in;
            });
        } catch (IOException e) {
            throw new UncheckedIOException("the bundled corpus sample cannot be read: " + e.getMessage(), e);
        }
    }

    public Manifest manifest() { return manifest; }

    /** where the corpus was read from (a directory or {@code classpath:/dive/corpus/}) */
    public String location() { return where; }

    /** the datasets, in manifest order (name, domain, source, licence, counts) */
    public List<Manifest.Entry> datasets() { return manifest.datasets(); }

    /** the documents of one split of one dataset, in file order */
    public List<Document> documents(String dataset, Split split) throws IOException {
        manifest.entry(dataset); // clear error for an unknown name
        String rel = dataset + "/" + split.fileName();
        try (InputStream in = files.open(rel)) {
            return Jsonl.read(in, where + "/" + rel);
        }
    }

    /** the texts of one split of one dataset, in file order */
    public List<String> texts(String dataset, Split split) throws IOException {
        return documents(dataset, split).stream().map(Document::text).toList();
    }

    /** the raw bytes of a file of the corpus (for checks against the manifest) */
    public byte[] fileBytes(String dataset, Split split) throws IOException {
        manifest.entry(dataset);
        try (InputStream in = files.open(dataset + "/" + split.fileName())) {
            return in.readAllBytes();
        }
    }
}
