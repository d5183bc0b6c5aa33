package dive.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class CorpusBuilderTest {
    @TempDir Path tmp;

    /** a fake machine with two datasets' sources: 60 man pages and a fortune file */
    private Sources fakeSources() throws IOException {
        FakeSources f = new FakeSources(tmp.resolve("root")).pkg("manpages", "6.03-2").pkg("manpages-dev", "6.03-2")
                .pkg("fortunes", "1:1.99.1-7.3").pkg("fortunes-min", "1:1.99.1-7.3");
        for (int i = 0; i < 60; i++) {
            f.file("manpages-dev", "/usr/share/man/man2/call" + i + ".2.gz", FakeSources.gzip(".TH CALL" + i + " 2\n.SH NAME\ncall" + i
                    + " \\- system call number " + i + ", described in a sentence long enough to be kept as a document.\n"));
        }
        StringBuilder cookies = new StringBuilder();
        for (int i = 0; i < 200; i++) cookies.append("%\nFortune ").append(i).append(": ").append("a computer joke ".repeat(8)).append('\n');
        f.file("fortunes", "/usr/share/games/fortunes/computers", cookies.toString());
        return f.sources(tmp, tmp);
    }

    private static final List<String> TWO = List.of("man2", "fortunes-computers");

    @Test void sameSourcesGiveIdenticalBytesAndManifestMatchesFiles() throws IOException {
        Sources s = fakeSources();
        Manifest first = CorpusBuilder.build(s, Catalog.select(TWO), tmp.resolve("a"), CorpusBuilder.Limits.DEFAULT, false);
        CorpusBuilder.build(s, Catalog.select(TWO), tmp.resolve("b"), CorpusBuilder.Limits.DEFAULT, false);
        for (String f : List.of("manifest.json", "man2/train.jsonl", "man2/calib.jsonl", "man2/eval.jsonl", "fortunes-computers/train.jsonl")) {
            assertArrayEquals(Files.readAllBytes(tmp.resolve("a").resolve(f)), Files.readAllBytes(tmp.resolve("b").resolve(f)), f);
        }
        assertEquals(List.of("man2", "fortunes-computers"), first.datasets().stream().map(Manifest.Entry::name).toList());
        Manifest.Entry man2 = first.entry("man2");
        assertEquals("manpages 6.03-2, manpages-dev 6.03-2 (Debian)", man2.source());
        assertEquals("manpages", man2.domain());
        checkManifestAgainstFiles(Corpus.open(tmp.resolve("a")));
        // every man page is in exactly one split (caps are far above this tiny source)
        Set<String> ids = new HashSet<>();
        Corpus c = Corpus.open(tmp.resolve("a"));
        for (Split sp : Split.values()) for (Document d : c.documents("man2", sp)) assertTrue(ids.add(d.id()), "in two splits: " + d.id());
        assertEquals(60, ids.size());
    }

    /** independent check: counts, sizes and SHA-256 of every file equal the manifest; ids unique across splits */
    static void checkManifestAgainstFiles(Corpus c) throws IOException {
        for (Manifest.Entry e : c.datasets()) {
            Set<String> ids = new HashSet<>();
            for (Split s : Split.values()) {
                byte[] bytes = c.fileBytes(e.name(), s);
                assertEquals(e.bytes().get(s), bytes.length, e.name() + " " + s);
                assertEquals(e.sha256().get(s), HexFormat.of().formatHex(sha256(bytes)), e.name() + " " + s);
                long lines = new String(bytes, StandardCharsets.UTF_8).lines().count();
                assertEquals(e.documents().get(s), lines, e.name() + " " + s);
                List<Document> docs = c.documents(e.name(), s);
                assertEquals(lines, docs.size());
                for (Document d : docs) assertTrue(ids.add(d.id()), e.name() + ": document " + d.id() + " in two splits");
            }
        }
    }

    static byte[] sha256(byte[] b) {
        try { return MessageDigest.getInstance("SHA-256").digest(b); } catch (Exception e) { throw new AssertionError(e); }
    }

    @Test void splitRuleFollowsTheHashOfDatasetAndId() {
        List<Document> docs = new ArrayList<>();
        for (int i = 0; i < 400; i++) docs.add(new Document("doc" + i, "x".repeat(1000)));
        // 400 KB in all: held-out share f = 96 KiB / 400,000 bytes
        double f = 96 * 1024 / 400_000.0;
        Map<Split, List<Document>> splits = CorpusBuilder.assign("ds", docs, CorpusBuilder.Limits.DEFAULT);
        int total = 0;
        for (Split s : Split.values()) {
            for (Document d : splits.get(s)) {
                byte[] h = sha256(("ds/" + d.id()).getBytes(StandardCharsets.UTF_8));
                double u = new java.math.BigInteger(1, java.util.Arrays.copyOf(h, 8)).doubleValue() / Math.pow(2, 64); // first 8 bytes as a fraction
                Split expected = u < f ? Split.EVAL : u < 2 * f ? Split.CALIB : Split.TRAIN;
                assertEquals(expected, s, d.id());
                total++;
            }
        }
        assertEquals(400, total);
        assertEquals(splits, CorpusBuilder.assign("ds", new ArrayList<>(docs.reversed()), CorpusBuilder.Limits.DEFAULT), "input order must not matter");
        // each held-out split is near its expected share f (binomial, 400 draws: within 5 standard deviations)
        double sd = Math.sqrt(400 * f * (1 - f));
        assertEquals(400 * f, splits.get(Split.EVAL).size(), 5 * sd);
        assertEquals(400 * f, splits.get(Split.CALIB).size(), 5 * sd);
    }

    @Test void capsKeepAPrefixOfTheOrderAndNest() {
        List<Document> docs = new ArrayList<>();
        for (int i = 0; i < 300; i++) docs.add(new Document("d" + i, "y".repeat(500)));
        Map<Split, List<Document>> wide = CorpusBuilder.assign("ds", docs, new CorpusBuilder.Limits(1 << 30, 1 << 30, 1 << 30));
        Map<Split, List<Document>> capped = CorpusBuilder.assign("ds", docs, new CorpusBuilder.Limits(10_000, 2_000, 1_499));
        assertEquals(wide.get(Split.TRAIN).subList(0, 20), capped.get(Split.TRAIN)); // 20 × 500 bytes = 10,000
        assertEquals(wide.get(Split.CALIB).subList(0, 4), capped.get(Split.CALIB));
        assertEquals(wide.get(Split.EVAL).subList(0, 2), capped.get(Split.EVAL));   // a third would be 1,500 > 1,499
    }

    @Test void duplicateIdsAreRejected() {
        List<Document> docs = List.of(new Document("same", "a"), new Document("same", "b"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CorpusBuilder.assign("ds", docs, CorpusBuilder.Limits.DEFAULT));
        assertTrue(e.getMessage().contains("'same'"));
    }

    @Test void rebuildingOneDatasetKeepsTheOthersInTheManifest() throws IOException {
        Sources s = fakeSources();
        Path out = tmp.resolve("c");
        CorpusBuilder.build(s, Catalog.select(TWO), out, CorpusBuilder.Limits.DEFAULT, false);
        byte[] before = Files.readAllBytes(out.resolve("manifest.json"));
        CorpusBuilder.build(s, Catalog.select(List.of("man2")), out, CorpusBuilder.Limits.DEFAULT, false);
        assertArrayEquals(before, Files.readAllBytes(out.resolve("manifest.json")));
    }

    @Test void missingPackageFailsNamingDatasetAndPackage() throws IOException {
        Sources s = new FakeSources(tmp.resolve("empty")).pkg("manpages", "6.03-2").sources(tmp, tmp);
        MissingSourceException e = assertThrows(MissingSourceException.class,
                () -> CorpusBuilder.build(s, Catalog.select(List.of("foldoc")), tmp.resolve("x"), CorpusBuilder.Limits.DEFAULT, false));
        assertTrue(e.getMessage().contains("dict-foldoc is not installed"), e.getMessage());
    }

    @Test void sampleTakesWholeDocumentsFromTheStartAndWritesSources() throws IOException {
        Sources s = fakeSources();
        CorpusBuilder.build(s, Catalog.select(TWO), tmp.resolve("full"), CorpusBuilder.Limits.DEFAULT, false);
        Corpus full = Corpus.open(tmp.resolve("full"));
        Manifest m = CorpusSampler.sample(full, tmp.resolve("sample"), 4000);
        Corpus sample = Corpus.open(tmp.resolve("sample"));
        checkManifestAgainstFiles(sample);
        for (Manifest.Entry e : m.datasets()) {
            for (Split sp : Split.values()) {
                List<Document> all = full.documents(e.name(), sp), cut = sample.documents(e.name(), sp);
                long budget = sp == Split.TRAIN ? 2000 : 1000;
                // the longest prefix within the budget, at least one document
                int n = 0;
                long bytes = 0;
                while (n < all.size() && (n == 0 || bytes + Text.utf8Length(all.get(n).text()) <= budget)) bytes += Text.utf8Length(all.get(n++).text());
                assertEquals(all.subList(0, n), cut, e.name() + " " + sp);
            }
        }
        String sources = Files.readString(tmp.resolve("sample/SOURCES.md"));
        assertTrue(sources.contains("| man2 | manpages | manpages 6.03-2, manpages-dev 6.03-2 (Debian) |"), sources);
    }
}
