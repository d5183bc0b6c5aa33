package dive.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

import static org.junit.jupiter.api.Assertions.*;

/** Each extractor on a tiny fake source tree, against hand-written expected documents. */
class ExtractorsTest {
    @TempDir Path tmp;

    static final String LONG = "This sentence is long enough to keep the document above the near-empty threshold of the builder.";

    @Test void javaSourcesFromSrcZipDropLicenceHeaderAndFilterModules() throws IOException {
        Path jdk = tmp.resolve("jdk");
        Files.createDirectories(jdk.resolve("lib"));
        try (ZipOutputStream zip = new ZipOutputStream(Files.newOutputStream(jdk.resolve("lib/src.zip")))) {
            put(zip, "java.base/java/lang/Foo.java", "/*\n * Copyright (c) 2020, Oracle.\n */\npackage java.lang;\n\n// " + LONG + "\nclass Foo {}\n");
            put(zip, "java.base/java/lang/Notes.txt", "not java " + LONG);
            put(zip, "java.desktop/java/awt/Bar.java", "package java.awt;\n// " + LONG + "\nclass Bar {}\n");
            put(zip, "java.base/java/lang/Tiny.java", "class Tiny {}\n");
        }
        Files.writeString(jdk.resolve("release"), "IMPLEMENTOR=\"Test Vendor\"\nJAVA_VERSION=\"25.0.9\"\n");
        Sources s = new Sources(tmp, jdk, tmp);
        List<Document> base = Extractors.javaModules(m -> m.equals("java.base")).extract(s, Extractors.Tick.NONE);
        assertEquals(List.of(new Document("java.base/java/lang/Foo.java", "package java.lang;\n\n// " + LONG + "\nclass Foo {}\n")), base);
        List<Document> desktop = Extractors.javaModules(m -> m.equals("java.desktop")).extract(s, Extractors.Tick.NONE);
        assertEquals(List.of("java.desktop/java/awt/Bar.java"), desktop.stream().map(Document::id).toList());
        assertEquals("Test Vendor JDK 25.0.9 (lib/src.zip)", s.jdkDescription());
    }

    private static void put(ZipOutputStream zip, String name, String text) throws IOException {
        zip.putNextEntry(new ZipEntry(name));
        zip.write(text.getBytes(StandardCharsets.UTF_8));
        zip.closeEntry();
    }

    @Test void gzippedManPagesOfTheSectionOnly() throws IOException {
        FakeSources f = new FakeSources(tmp).pkg("manpages-dev", "6.03-2").pkg("manpages", "6.03-2");
        f.file("manpages-dev", "/usr/share/man/man2/foo.2.gz", FakeSources.gzip(".TH FOO 2\n.SH NAME\nfoo \\- " + LONG + "\n"));
        f.file("manpages-dev", "/usr/share/man/man2/alias.2.gz", FakeSources.gzip(".so man2/foo.2\n"));
        f.file("manpages-dev", "/usr/share/man/man3/bar.3.gz", FakeSources.gzip(".TH BAR 3\n.SH NAME\nbar \\- " + LONG + "\n"));
        f.file("manpages-dev", "/usr/share/man/fr/man2/foo.2.gz", FakeSources.gzip(".TH FOO 2\n.SH NOM\nfoo \\- " + LONG + "\n"));
        Sources s = f.sources(tmp, tmp);
        List<Document> docs = Catalog.select(List.of("man2")).get(0).extractor().extract(s, Extractors.Tick.NONE);
        assertEquals(List.of(new Document("man2/foo.2", "FOO(2)\n\nNAME\nfoo - " + LONG + "\n")), docs);
    }

    @Test void dictdEntriesGroupedInOffsetOrderWithoutMetadata() throws IOException {
        String meta = "00-database-info\n   about this file\n\n";
        String alpha = "alpha\n\n   <first> " + LONG + "\n\n";
        String beta = "beta\n\n   <second> " + LONG + "\n\n";
        String dict = meta + alpha + beta;
        int a = meta.length(), b = a + alpha.length();
        // index lines: headword, base-64 offset, base-64 length (alphabet A-Za-z0-9+/, most significant first)
        String index = "00-database-info\tA\t" + b64(meta.length()) + "\n"
                + "beta\t" + b64(b) + "\t" + b64(beta.length()) + "\n"
                + "alpha\t" + b64(a) + "\t" + b64(alpha.length()) + "\n"
                + "alias-of-alpha\t" + b64(a) + "\t" + b64(alpha.length()) + "\n";
        FakeSources f = new FakeSources(tmp).pkg("dict-foldoc", "1");
        f.file("dict-foldoc", "/usr/share/dictd/foldoc.index", index);
        f.file("dict-foldoc", "/usr/share/dictd/foldoc.dict.dz", FakeSources.gzip(dict));
        List<Document> docs = Extractors.dictd("dict-foldoc", "foldoc").extract(f.sources(tmp, tmp), Extractors.Tick.NONE);
        assertEquals(List.of(new Document("alpha@" + a, "alpha\n\n   <first> " + LONG + "\n\nbeta\n\n   <second> " + LONG + "\n")), docs);
    }

    /** hand-rolled dictd base 64 for small numbers */
    private static String b64(int v) {
        String digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        if (v < 64) return String.valueOf(digits.charAt(v));
        return String.valueOf(digits.charAt(v / 64)) + digits.charAt(v % 64);
    }

    @Test void dictdBase64() throws IOException {
        assertEquals(0, Extractors.base64("A", tmp, 1));
        assertEquals(64 * 10 + 63, Extractors.base64("K/", tmp, 1));
        assertThrows(IOException.class, () -> Extractors.base64("A-", tmp, 1));
    }

    @Test void bibleChaptersFromTheBibleProgramSplitByBooks() throws IOException {
        StringBuilder dump = new StringBuilder();
        for (int book = 0; book < Extractors.BOOKS.size(); book++) {
            dump.append("\n").append(Extractors.BOOKS.get(book)).append(" 1\n\n")
                    .append("  1 Verse one of ").append(Extractors.BOOKS.get(book)).append(", ").append(LONG).append("\n")
                    .append("  2 Verse two.\n");
        }
        FakeSources f = new FakeSources(tmp).pkg("bible-kjv", "4.38").pkg("bible-kjv-text", "4.38");
        f.file("bible-kjv-text", "/usr/lib/bible.data", "fake");
        f.file("bible-kjv-text", "/usr/lib/kjv-dump.txt", dump.toString());
        // a fake `bible` program: checks its arguments like the real one is called, prints the dump
        f.file("bible-kjv", "/usr/bin/bible", "#!/bin/sh\n[ \"$1\" = -l0 ] && [ \"$2\" = -p ] && [ \"$4\" = gen1:1-rev22:21 ] || exit 3\ncat \"$3/kjv-dump.txt\"\n");
        Files.setPosixFilePermissions(tmp.resolve("usr/bin/bible"), PosixFilePermissions.fromString("rwxr-xr-x"));
        Sources s = f.sources(tmp, tmp);
        List<Document> nt = Catalog.select(List.of("bible-nt")).get(0).extractor().extract(s, Extractors.Tick.NONE);
        assertEquals(27, nt.size());
        assertEquals(new Document("Matthew 1", "Matthew 1\n\n1 Verse one of Matthew, " + LONG + "\n2 Verse two.\n"), nt.get(0));
        assertEquals("Revelation 1", nt.get(26).id());
        List<Document> history = Catalog.select(List.of("bible-ot-history")).get(0).extractor().extract(s, Extractors.Tick.NONE);
        assertEquals(List.of("Genesis 1", "Esther 1"), List.of(history.get(0).id(), history.get(history.size() - 1).id()));
        assertEquals(17, history.size());
    }

    @Test void fortunesGroupedIntoDocumentsOfAboutTwoKilobytes() throws IOException {
        StringBuilder file = new StringBuilder();
        for (int i = 0; i < 30; i++) file.append(i == 0 ? "" : "%\n").append("Cookie ").append(i).append(": ").append(LONG).append("\n");
        FakeSources f = new FakeSources(tmp).pkg("fortunes", "1").pkg("fortunes-min", "1");
        f.file("fortunes", "/usr/share/games/fortunes/computers", file.toString());
        f.file("fortunes", "/usr/share/games/fortunes/computers.dat", "binary index");
        f.file("fortunes", "/usr/share/games/fortunes/art", "pictures " + LONG);
        f.file("fortunes-min", "/usr/share/games/fortunes/riddles", "Q: " + LONG + "\n%\nA: " + LONG + "\n");
        Sources s = f.sources(tmp, tmp);
        List<Document> computers = Catalog.select(List.of("fortunes-computers")).get(0).extractor().extract(s, Extractors.Tick.NONE);
        // each cookie is 11 + 98 bytes (+1 for the blank line between): 2048 bytes are reached after 19 cookies
        assertEquals(List.of("computers#1", "computers#2"), computers.stream().map(Document::id).toList());
        assertTrue(computers.get(0).text().startsWith("Cookie 0: " + LONG + "\n\nCookie 1: "));
        assertTrue(computers.get(1).text().startsWith("Cookie 19: "));
        List<Document> general = Catalog.select(List.of("fortunes-general")).get(0).extractor().extract(s, Extractors.Tick.NONE);
        assertEquals(List.of(new Document("riddles#1", "Q: " + LONG + "\n\nA: " + LONG + "\n")), general);
    }

    @Test void spdxLicencesSplitByOsiApproval() throws IOException {
        Path npm = tmp.resolve("npm");
        Path pkg = npm.resolve("node_modules/spdx-license-list");
        Files.createDirectories(pkg);
        Files.writeString(pkg.resolve("package.json"), "{\"name\": \"spdx-license-list\", \"version\": \"6.12.0\"}");
        Files.writeString(pkg.resolve("spdx-full.json"), "{\"MIT\": {\"name\": \"MIT\", \"osiApproved\": true, \"licenseText\": \"MIT License " + LONG + "\"},"
                + " \"Beerware\": {\"name\": \"Beerware\", \"osiApproved\": false, \"licenseText\": \"Beer " + LONG + "\"}}");
        Sources s = new Sources(tmp, tmp, npm);
        assertEquals(List.of(new Document("MIT", "MIT License " + LONG + "\n")), Extractors.spdx(true).extract(s, Extractors.Tick.NONE));
        assertEquals(List.of(new Document("Beerware", "Beer " + LONG + "\n")), Extractors.spdx(false).extract(s, Extractors.Tick.NONE));
        assertEquals("npm spdx-license-list@6.12.0", Catalog.select(List.of("spdx-osi")).get(0).source(s));
    }

    @Test void missingSourcesNameThePathAndThePackage() throws IOException {
        FakeSources f = new FakeSources(tmp).pkg("manpages", "6.03-2");
        Sources s = f.sources(tmp.resolve("no-jdk"), tmp.resolve("no-npm"));
        MissingSourceException notInstalled = assertThrows(MissingSourceException.class,
                () -> Catalog.select(List.of("man2")).get(0).source(s));
        assertTrue(notInstalled.getMessage().contains("manpages-dev") && notInstalled.getMessage().contains("apt-get install manpages-dev"), notInstalled.getMessage());
        MissingSourceException removed = assertThrows(MissingSourceException.class, () -> s.packageVersion("removed-pkg"));
        assertTrue(removed.getMessage().contains("removed-pkg is not installed"), removed.getMessage());
        MissingSourceException noFile = assertThrows(MissingSourceException.class,
                () -> Extractors.dictd("manpages", "foldoc").extract(s, Extractors.Tick.NONE));
        assertTrue(noFile.getMessage().contains(tmp.resolve("usr/share/dictd/foldoc.index").toString()) && noFile.getMessage().contains("manpages"), noFile.getMessage());
        MissingSourceException noZip = assertThrows(MissingSourceException.class, s::jdkSourceZip);
        assertTrue(noZip.getMessage().contains(tmp.resolve("no-jdk/lib/src.zip").toString()), noZip.getMessage());
        MissingSourceException noNpm = assertThrows(MissingSourceException.class, s::spdxDir);
        assertTrue(noNpm.getMessage().contains("spdx-license-list") && noNpm.getMessage().contains("npm install --prefix"), noNpm.getMessage());
        assertTrue(noNpm.getMessage().contains("install-corpus-sources.sh"));
    }
}
