package dive.data;

import dive.data.Catalog.Dataset;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Builds a corpus directory: {@code <out>/<dataset>/{train,calib,eval}.jsonl} and {@code <out>/manifest.json}.
 *
 * <p>Splits are decided per document by {@code d = SHA-256("<dataset>/<document id>")}: its first 8 bytes, read as an
 * unsigned fraction {@code u} in [0, 1), put the document in eval when {@code u < f}, calib when {@code u < 2f}, else
 * train, with {@code f = clamp(HELD_OUT_TARGET_BYTES / dataset bytes, 5%, 25%)} (small datasets give a larger share so
 * that calib and eval reach ~60–100 KB). Each document is in exactly one split. Within a split documents are ordered
 * by the next 8 bytes of {@code d} (a fixed pseudo-random order), and the split keeps the longest prefix of that order
 * within its byte cap, so any prefix of a file is a uniform sample and caps nest. Same sources → same bytes.
 */
public final class CorpusBuilder {
    private CorpusBuilder() {}

    /** caps on the UTF-8 text bytes kept per split */
    public record Limits(long maxTrainBytes, long maxCalibBytes, long maxEvalBytes) {
        public static final Limits DEFAULT = new Limits(4L << 20, 512L << 10, 256L << 10);

        public Limits {
            if (maxTrainBytes <= 0 || maxCalibBytes <= 0 || maxEvalBytes <= 0) {
                throw new IllegalArgumentException("byte caps must be > 0, got train " + maxTrainBytes + ", calib " + maxCalibBytes + ", eval " + maxEvalBytes);
            }
        }

        long cap(Split s) {
            return switch (s) { case TRAIN -> maxTrainBytes; case CALIB -> maxCalibBytes; case EVAL -> maxEvalBytes; };
        }
    }

    /** each of calib and eval aims at this many bytes when the dataset is small (within 5–25% of it) */
    public static final long HELD_OUT_TARGET_BYTES = 96 * 1024;

    /** builds the datasets into {@code out}; the manifest keeps entries of other datasets already there */
    public static Manifest build(Sources sources, List<Dataset> datasets, Path out, Limits limits, boolean showProgress) throws IOException {
        Files.createDirectories(out);
        List<Manifest.Entry> built = new ArrayList<>();
        for (Dataset d : datasets) {
            String source;
            List<Document> docs;
            try {
                source = d.source(sources); // fails early and clearly when a package is missing
                docs = extractWithProgress(d, sources, showProgress);
            } catch (MissingSourceException e) {
                throw new MissingSourceException("dataset " + d.name() + ": " + e.getMessage().replaceFirst(" \\(install every corpus source with .*\\)$", ""));
            }
            if (docs.isEmpty()) throw new IOException("dataset " + d.name() + ": its source gave no documents (" + source + ")");
            built.add(write(out, d.name(), d.domain(), source, d.license(), assign(d.name(), docs, limits)));
        }
        return writeManifest(out, built);
    }

    private static List<Document> extractWithProgress(Dataset d, Sources sources, boolean showProgress) throws IOException {
        Progress[] bar = new Progress[1];
        Extractors.Tick tick = new Extractors.Tick() {
            @Override public void total(long items) { bar[0] = new Progress(String.format("%-20s", d.name()), items, "files", showProgress); }
            @Override public void step() { if (bar[0] != null) bar[0].step(1); }
        };
        try {
            return d.extractor().extract(sources, tick);
        } finally {
            if (bar[0] != null) bar[0].close();
        }
    }

    /** the documents of each split, in file order, after the caps (see the class comment) */
    public static Map<Split, List<Document>> assign(String dataset, List<Document> docs, Limits limits) {
        Set<String> ids = new HashSet<>();
        long total = 0;
        for (Document d : docs) {
            if (!ids.add(d.id())) throw new IllegalArgumentException("dataset " + dataset + ": document id '" + d.id() + "' occurs twice");
            total += Text.utf8Length(d.text());
        }
        double f = Math.min(0.25, Math.max(0.05, HELD_OUT_TARGET_BYTES / (double) Math.max(1, total)));
        record Keyed(Document doc, long order) {}
        Map<Split, List<Keyed>> bySplit = new EnumMap<>(Split.class);
        for (Split s : Split.values()) bySplit.put(s, new ArrayList<>());
        for (Document d : docs) {
            byte[] h = sha256((dataset + "/" + d.id()).getBytes(StandardCharsets.UTF_8));
            double u = (ByteBuffer.wrap(h, 0, 8).getLong() >>> 11) * 0x1.0p-53;
            Split s = u < f ? Split.EVAL : u < 2 * f ? Split.CALIB : Split.TRAIN;
            bySplit.get(s).add(new Keyed(d, ByteBuffer.wrap(h, 8, 8).getLong()));
        }
        Map<Split, List<Document>> result = new EnumMap<>(Split.class);
        for (Split s : Split.values()) {
            List<Keyed> list = bySplit.get(s);
            list.sort(Comparator.comparingLong(Keyed::order).thenComparing(k -> k.doc().id()));
            List<Document> kept = new ArrayList<>();
            long bytes = 0;
            for (Keyed k : list) {
                long n = Text.utf8Length(k.doc().text());
                if (bytes + n > limits.cap(s)) break;
                bytes += n;
                kept.add(k.doc());
            }
            result.put(s, kept);
        }
        return result;
    }

    /** writes one dataset's three files atomically and returns its manifest entry */
    static Manifest.Entry write(Path out, String name, String domain, String source, String license, Map<Split, List<Document>> splits) throws IOException {
        Path dir = out.resolve(name);
        Files.createDirectories(dir);
        Map<Split, Long> docs = new EnumMap<>(Split.class), bytes = new EnumMap<>(Split.class);
        Map<Split, String> sha = new EnumMap<>(Split.class);
        for (Split s : Split.values()) {
            byte[] content = Jsonl.encode(splits.get(s));
            AtomicFiles.write(dir.resolve(s.fileName()), ch -> AtomicFiles.writeFully(ch, ByteBuffer.wrap(content)));
            docs.put(s, (long) splits.get(s).size());
            bytes.put(s, (long) content.length);
            sha.put(s, HexFormat.of().formatHex(sha256(content)));
        }
        return new Manifest.Entry(name, domain, source, license, docs, bytes, sha);
    }

    /** merges {@code built} into the manifest already in {@code out} (if any), in catalogue order, and writes it */
    static Manifest writeManifest(Path out, List<Manifest.Entry> built) throws IOException {
        List<Manifest.Entry> entries = new ArrayList<>(built);
        Path file = out.resolve(Manifest.FILE_NAME);
        if (Files.isRegularFile(file)) {
            Manifest old;
            try (InputStream in = Files.newInputStream(file)) { old = Manifest.read(in, file.toString()); }
            for (Manifest.Entry e : old.datasets()) {
                if (built.stream().noneMatch(b -> b.name().equals(e.name()))) entries.add(e);
            }
        }
        List<String> order = Catalog.all().stream().map(Dataset::name).toList();
        entries.sort(Comparator.comparingInt((Manifest.Entry e) -> order.indexOf(e.name()) < 0 ? Integer.MAX_VALUE : order.indexOf(e.name()))
                .thenComparing(Manifest.Entry::name));
        Manifest m = new Manifest(Manifest.VERSION, List.copyOf(entries));
        AtomicFiles.writeString(file, m.toJson());
        return m;
    }

    static byte[] sha256(byte[] bytes) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(bytes);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 missing from this JDK", e);
        }
    }
}
