package dive.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/** The extractors: each reads one kind of source and returns its documents, in a deterministic (source) order. */
public final class Extractors {
    private Extractors() {}

    /** reads a dataset's documents from the sources; {@code progress} is told the number of source items, then each one done */
    @FunctionalInterface
    public interface Extractor {
        List<Document> extract(Sources sources, Tick progress) throws IOException;
    }

    /** progress callbacks of an extractor */
    public interface Tick {
        void total(long items);
        void step();
        Tick NONE = new Tick() { public void total(long items) {} public void step() {} };
    }

    /** turns one source file (id relative to its root, decoded text) into zero or more documents */
    @FunctionalInterface
    public interface FileHandler {
        void handle(String id, String text, List<Document> out);
    }

    // ---------------------------------------------------------------- Java (the JDK's lib/src.zip)

    /** every {@code .java} file of the JDK modules accepted by {@code module}; id = zip entry name, licence header removed */
    public static Extractor javaModules(Predicate<String> module) {
        return (sources, progress) -> {
            Path zip = sources.jdkSourceZip();
            List<Document> docs = new ArrayList<>();
            try (ZipFile zf = new ZipFile(zip.toFile())) {
                TreeMap<String, ZipEntry> entries = new TreeMap<>();
                for (Iterator<? extends ZipEntry> it = zf.entries().asIterator(); it.hasNext(); ) {
                    ZipEntry e = it.next();
                    String name = e.getName();
                    int slash = name.indexOf('/');
                    if (e.isDirectory() || !name.endsWith(".java") || slash < 0) continue;
                    if (module.test(name.substring(0, slash))) entries.put(name, e);
                }
                progress.total(entries.size());
                for (Map.Entry<String, ZipEntry> e : entries.entrySet()) {
                    try (InputStream in = zf.getInputStream(e.getValue())) {
                        Text.addDocument(docs, e.getKey(), stripLicenseHeader(Text.decode(in.readAllBytes())));
                    }
                    progress.step();
                }
            } catch (java.util.zip.ZipException e) {
                throw new IOException(zip + ": not a readable zip file (" + e.getMessage() + ")", e);
            }
            return docs;
        };
    }

    /** drops a leading block comment that is a copyright/licence notice (the same ~25 lines open every JDK file) */
    static String stripLicenseHeader(String source) {
        String s = source.stripLeading();
        if (s.startsWith("/*")) {
            int end = s.indexOf("*/");
            if (end > 0 && s.substring(0, end).toLowerCase(java.util.Locale.ROOT).contains("copyright")) return s.substring(end + 2);
        }
        return source;
    }

    // ---------------------------------------------------------------- files of Debian packages

    /**
     * Every file of the given Debian packages under {@code dir} (an absolute path) accepted by {@code accept} (given
     * the path relative to {@code dir}), gunzipped if needed, handed to {@code handler} with that relative path as id.
     */
    public static Extractor packageFiles(List<String> packages, String dir, Predicate<String> accept, FileHandler handler) {
        return (sources, progress) -> {
            Path base = sources.resolve(dir);
            TreeMap<String, Path> files = new TreeMap<>();
            for (String pkg : packages) {
                for (Path p : sources.packageFiles(pkg)) {
                    if (!p.startsWith(base)) continue;
                    String rel = base.relativize(p).toString().replace('\\', '/');
                    if (accept.test(rel)) files.put(rel, p);
                }
            }
            if (files.isEmpty()) throw new MissingSourceException("no matching files under " + base + " from Debian package(s) " + String.join(", ", packages));
            progress.total(files.size());
            List<Document> docs = new ArrayList<>();
            for (Map.Entry<String, Path> f : files.entrySet()) {
                handler.handle(f.getKey(), Text.decode(Sources.readMaybeGzipped(f.getValue())), docs);
                progress.step();
            }
            return docs;
        };
    }

    /** the file as one document (split into parts when long) */
    public static final FileHandler WHOLE_FILE = (id, text, out) -> Text.addDocument(out, id, text);

    /** a man page: groff source to text; the id drops {@code .gz} */
    public static final FileHandler MAN_PAGE = (id, text, out) -> Text.addDocument(out, id.replaceFirst("\\.gz$", ""), ManPage.toText(text));

    /** fortune cookie files: cookies separated by {@code %} lines, grouped into documents of about 2 KiB */
    public static final FileHandler FORTUNES = (id, text, out) -> {
        List<String> cookies = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (String line : text.replace("\r\n", "\n").split("\n", -1)) {
            if (line.equals("%")) { cookies.add(cur.toString()); cur.setLength(0); }
            else cur.append(line).append('\n');
        }
        cookies.add(cur.toString());
        group(out, id, cookies, 2048);
    };

    /** groups consecutive pieces (with a blank line between) into documents of at least {@code targetBytes}; ids {@code base#1, #2, …} */
    static void group(List<Document> out, String base, List<String> pieces, int targetBytes) {
        StringBuilder doc = new StringBuilder();
        int k = 0;
        for (String piece : pieces) {
            String p = Text.normalize(piece);
            if (p.isEmpty()) continue;
            if (doc.length() > 0) doc.append('\n');
            doc.append(p);
            if (Text.utf8Length(doc) >= targetBytes) {
                Text.addDocument(out, base + "#" + (++k), doc.toString());
                doc.setLength(0);
            }
        }
        if (doc.length() > 0) Text.addDocument(out, base + "#" + (++k), doc.toString());
    }

    // ---------------------------------------------------------------- dictd dictionaries (FOLDOC, GCIDE)

    /**
     * A dictd dictionary: {@code <name>.index} lines {@code headword TAB offset TAB length} (base-64 numbers) point into
     * the gunzipped {@code <name>.dict.dz}. Entries (metadata {@code 00-database-*} skipped, each entry once) are
     * taken in file order and grouped into documents of about 4 KiB, id = first headword and its offset.
     */
    public static Extractor dictd(String pkg, String name) {
        return (sources, progress) -> {
            Path index = sources.requireFile("/usr/share/dictd/" + name + ".index", pkg);
            Path dict = sources.requireFile("/usr/share/dictd/" + name + ".dict.dz", pkg);
            byte[] data = Sources.readMaybeGzipped(dict);
            TreeMap<Long, long[]> entries = new TreeMap<>(); // offset -> {length}
            TreeMap<Long, String> heads = new TreeMap<>();
            int lineNo = 0;
            for (String line : Files.readAllLines(index, StandardCharsets.UTF_8)) {
                lineNo++;
                String[] f = line.split("\t");
                if (f.length < 3) throw new IOException(index + ":" + lineNo + ": expected 'headword<TAB>offset<TAB>length'");
                if (f[0].startsWith("00-database") || f[0].startsWith("00database")) continue;
                long offset = base64(f[1], index, lineNo), length = base64(f[2], index, lineNo);
                if (offset + length > data.length) throw new IOException(index + ":" + lineNo + ": entry '" + f[0] + "' lies beyond the end of " + dict);
                entries.putIfAbsent(offset, new long[] {length});
                heads.putIfAbsent(offset, f[0]);
            }
            progress.total(entries.size());
            List<Document> docs = new ArrayList<>();
            StringBuilder doc = new StringBuilder();
            String first = null;
            long firstOffset = 0;
            for (Map.Entry<Long, long[]> e : entries.entrySet()) {
                String entry = Text.normalize(Text.decode(java.util.Arrays.copyOfRange(data, (int) (long) e.getKey(), (int) (e.getKey() + e.getValue()[0]))));
                if (first == null) { first = heads.get(e.getKey()); firstOffset = e.getKey(); }
                if (doc.length() > 0) doc.append('\n');
                doc.append(entry);
                if (Text.utf8Length(doc) >= 4096) {
                    Text.addDocument(docs, first + "@" + firstOffset, doc.toString());
                    doc.setLength(0);
                    first = null;
                }
                progress.step();
            }
            if (doc.length() > 0) Text.addDocument(docs, first + "@" + firstOffset, doc.toString());
            return docs;
        };
    }

    private static final String B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /** dictd's base-64 numbers: most significant digit first */
    static long base64(String s, Path file, int lineNo) throws IOException {
        long v = 0;
        for (int i = 0; i < s.length(); i++) {
            int d = B64.indexOf(s.charAt(i));
            if (d < 0) throw new IOException(file + ":" + lineNo + ": '" + s + "' is not a dictd base-64 number");
            v = v * 64 + d;
        }
        return v;
    }

    // ---------------------------------------------------------------- the King James Bible (bible-kjv)

    /** the books of the KJV in order, as the {@code bible} program names them in chapter headings */
    static final List<String> BOOKS = List.of("Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges",
            "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther",
            "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations", "Ezekiel",
            "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai",
            "Zechariah", "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians",
            "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy",
            "2 Timothy", "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude",
            "Revelation");

    /**
     * Chapters of the books {@code BOOKS[fromBook, toBook)}: runs the {@code bible} program of package bible-kjv on the
     * data of bible-kjv-text ({@code bible -l0 -p DIR gen1:1-rev22:21}) and cuts its output at the chapter headings.
     * One document per chapter, id {@code "Genesis 1"}, text = heading then one verse per line.
     */
    public static Extractor bible(int fromBook, int toBook) {
        return (sources, progress) -> {
            Path data = sources.requireFile("/usr/lib/bible.data", "bible-kjv-text");
            Path program = sources.requireFile("/usr/bin/bible", "bible-kjv");
            String text = runBible(program, data.getParent());
            return bibleChapters(text, fromBook, toBook, progress);
        };
    }

    static String runBible(Path program, Path dataDir) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(program.toString(), "-l0", "-p", dataDir.toString(), "gen1:1-rev22:21");
        pb.environment().remove("COLUMNS");
        pb.redirectErrorStream(true);
        Process p = pb.start();
        byte[] out;
        try (InputStream in = p.getInputStream()) { out = in.readAllBytes(); }
        try {
            if (!p.waitFor(120, TimeUnit.SECONDS)) { p.destroyForcibly(); throw new IOException(program + ": no answer after 120 s"); }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(program + ": interrupted", e);
        }
        String text = Text.decode(out);
        if (p.exitValue() != 0) throw new IOException(program + " -p " + dataDir + " failed (exit " + p.exitValue() + "): " + text.strip());
        return text;
    }

    static List<Document> bibleChapters(String text, int fromBook, int toBook, Tick progress) throws IOException {
        TreeMap<Integer, String> wanted = new TreeMap<>();
        for (int b = fromBook; b < toBook; b++) wanted.put(b, BOOKS.get(b));
        List<Document> docs = new ArrayList<>();
        String heading = null;
        boolean keep = false;
        StringBuilder chapter = new StringBuilder();
        TreeSet<String> seenBooks = new TreeSet<>();
        List<String[]> chapters = new ArrayList<>();
        for (String line : text.replace("\r\n", "\n").split("\n", -1)) {
            if (line.isBlank()) continue;
            if (!line.startsWith(" ")) { // a chapter heading: "1 Samuel 3"
                if (heading != null && keep) chapters.add(new String[] {heading, chapter.toString()});
                heading = line.strip();
                chapter.setLength(0);
                int sp = heading.lastIndexOf(' ');
                String book = sp > 0 ? heading.substring(0, sp) : heading;
                int bookIndex = BOOKS.indexOf(book);
                if (bookIndex < 0) throw new IOException("bible output: unknown chapter heading '" + heading + "'");
                keep = bookIndex >= fromBook && bookIndex < toBook;
                if (keep) seenBooks.add(book);
            } else if (heading != null) {
                chapter.append(line.strip()).append('\n');
            }
        }
        if (heading != null && keep) chapters.add(new String[] {heading, chapter.toString()});
        for (String book : wanted.values()) {
            if (!seenBooks.contains(book)) throw new IOException("bible output: no chapters of " + book + " (is bible-kjv-text complete?)");
        }
        progress.total(chapters.size());
        for (String[] c : chapters) {
            Text.addDocument(docs, c[0], c[0] + "\n\n" + c[1]);
            progress.step();
        }
        return docs;
    }

    // ---------------------------------------------------------------- SPDX licence texts (npm spdx-license-list)

    /** every licence of {@code spdx-full.json} whose OSI approval equals {@code osiApproved}; id = SPDX identifier */
    public static Extractor spdx(boolean osiApproved) {
        return (sources, progress) -> {
            Path file = sources.spdxDir().resolve("spdx-full.json");
            JsonNode all = new ObjectMapper().readTree(file.toFile());
            if (!all.isObject()) throw new IOException(file + ": expected a JSON object of licences");
            TreeMap<String, JsonNode> sorted = new TreeMap<>();
            all.properties().forEach(e -> sorted.put(e.getKey(), e.getValue()));
            progress.total(sorted.size());
            List<Document> docs = new ArrayList<>();
            for (Map.Entry<String, JsonNode> e : sorted.entrySet()) {
                JsonNode text = e.getValue().get("licenseText");
                if (text == null || !text.isTextual()) throw new IOException(file + ": licence " + e.getKey() + " has no licenseText");
                if (e.getValue().path("osiApproved").asBoolean(false) == osiApproved) Text.addDocument(docs, e.getKey(), text.asText());
                progress.step();
            }
            return docs;
        };
    }
}
