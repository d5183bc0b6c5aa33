package dive;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.io.SafetensorsException;
import dive.io.SafetensorsFile;
import dive.model.ConfigException;
import dive.model.LlamaConfig;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.tokenizer.Tokenizer;
import dive.tokenizer.TokenizerFormatException;
import dive.tokenizer.UnknownTokenIdException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A seeded fuzz target for the three file formats read from a model folder: tokenizer.json, config.json and the
 * safetensors header. Each case takes a valid fixture, applies one to four mutations — a value replaced by an
 * extreme (0, -1, 2^31 - 1, 2^31, 2^53, 2^64, 1e999, "NaN", null, a string, an array, an object), a field deleted
 * or written twice, a value retyped — and sometimes a byte-level one (truncation, flipped or inserted bytes, a
 * wrong header length), writes the file and loads it. Loading must succeed, or fail with the format's own exception
 * (TokenizerFormatException, ConfigException, SafetensorsException) whose message is one line starting with the
 * file; anything else (OutOfMemoryError, an index or null-pointer error, a class-cast, ...) fails the test with the
 * case's seed and mutations. A file that loads is used too: the tokenizer encodes and decodes (where decode may
 * refuse an id with UnknownTokenIdException), the safetensors tensors are read.
 *
 * <p>Bounded for the normal test run: {@value #DEFAULT_CASES} cases per format, stopping early after
 * {@value #DEFAULT_MILLIS} ms. Longer runs: {@code -Ddive.fuzz.cases=100000 -Ddive.fuzz.millis=600000}, another
 * sequence: {@code -Ddive.fuzz.seed=N}; one case again: {@code -Ddive.fuzz.case=K} (with the seed printed). A failing
 * input is also written to {@code target/fuzz-failures/} to be added to the corpus of {@link FuzzCorpusTest}.
 */
class FuzzTest {
    static final int DEFAULT_CASES = 2000;
    static final long DEFAULT_MILLIS = 3000;
    static final long SEED = Long.getLong("dive.fuzz.seed", 0x5EED_D1BEL);
    static final int CASES = Integer.getInteger("dive.fuzz.cases", DEFAULT_CASES);
    static final long MILLIS = Long.getLong("dive.fuzz.millis", DEFAULT_MILLIS);
    static final Integer ONLY_CASE = Integer.getInteger("dive.fuzz.case");

    static final ObjectMapper JSON = new ObjectMapper();
    static final Path RESOURCES = Path.of("src/test/resources");

    /** values that replace a JSON value, as JSON text (some of them not JSON at all) */
    static final List<String> EXTREMES = List.of(
            "0", "-1", "1", "2", "3", "7", "255", "256", "65535", "65536", "16777215", "16777216", "2000000000",
            "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
            "9007199254740992", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "18446744073709551615", "18446744073709551616", "1" + "0".repeat(40),
            "0.5", "-0.0", "1.0", "2.5e9", "1e308", "1e999", "-1e999", "NaN", "Infinity",
            "\"NaN\"", "\"Infinity\"", "\"-1\"", "\"2147483647\"", "\"\"", "\" \"", "\"\\u0000\"", "\"\\ud800\"",
            "\"a b\"", "\"<0xFF>\"", "\"(\"", "\"\\\\\"",
            "null", "true", "false", "[]", "{}", "[2147483647]", "[-1, -1]", "[0, 2147483647]", "[0, 0]",
            "[9223372036854775807, 9223372036854775807]", "[[]]", "{\"type\": \"Sequence\"}", "[1, 2, 3]");

    @TempDir Path dir;

    /** a fixture and the way to load one variant of it */
    interface Target {
        /** loads the file; returns normally, or throws */
        void load(Path file) throws Exception;

        /** whether {@code t} is the format's own refusal */
        boolean isRefusal(Throwable t);
    }

    static final Target TOKENIZER = new Target() {
        public void load(Path file) throws Exception {
            Tokenizer tok = Tokenizer.load(file);
            String text = "Hello wörld 😀 <|endoftext|> <s>\n\t  12345 ▁x <0x0A>";
            int[] ids = tok.encode(text);
            tok.decode(ids);
            tok.decode(ids, true);
            tok.encode(new byte[] {(byte) 0xFF, 'a', (byte) 0xE2, (byte) 0x82}, false);
            tok.bosId();
            tok.eosId();
            for (int id : new int[] {0, 1, tok.vocabSize() / 2, tok.vocabSize() - 1, tok.vocabSize(), -1, Integer.MAX_VALUE}) {
                try {
                    tok.decode(new int[] {id}, id % 2 == 0);
                } catch (UnknownTokenIdException e) {
                    assertEquals(id, e.id());
                    assertOneLine(file, e);
                }
            }
        }

        public boolean isRefusal(Throwable t) {
            return t instanceof TokenizerFormatException;
        }
    };

    static final Target CONFIG = new Target() {
        public void load(Path file) {
            try {
                LlamaConfig c = LlamaConfig.load(file);
                // what was accepted stays within the documented bounds: nothing derived from it can overflow
                String where = file + " accepted as " + c;
                assertTrue(c.numHiddenLayers() >= 1 && c.numHiddenLayers() <= LlamaConfig.MAX_LAYERS, where);
                assertTrue(c.hiddenSize() >= 1 && c.hiddenSize() <= LlamaConfig.MAX_HIDDEN_SIZE, where);
                assertTrue(c.intermediateSize() >= 1 && c.intermediateSize() <= LlamaConfig.MAX_INTERMEDIATE_SIZE, where);
                assertTrue(c.numAttentionHeads() >= 1 && c.numAttentionHeads() <= LlamaConfig.MAX_HEADS, where);
                assertTrue(c.numKeyValueHeads() >= 1 && c.numKeyValueHeads() <= c.numAttentionHeads(), where);
                assertTrue(c.headDim() >= 1 && c.headDim() <= LlamaConfig.MAX_HEAD_DIM, where);
                assertTrue(c.vocabSize() >= 1 && c.vocabSize() <= LlamaConfig.MAX_VOCAB_SIZE, where);
                assertTrue(c.maxPositionEmbeddings() >= 1 && c.maxPositionEmbeddings() <= LlamaConfig.MAX_POSITIONS, where);
                assertTrue(c.rope().originalMaxPositionEmbeddings() >= 1
                        && c.rope().originalMaxPositionEmbeddings() <= LlamaConfig.MAX_POSITIONS, where);
                long m = LlamaConfig.MAX_MATRIX_ELEMENTS;
                assertTrue((long) c.vocabSize() * c.hiddenSize() <= m, where);
                assertTrue((long) c.intermediateSize() * c.hiddenSize() <= m, where);
                assertTrue((long) c.queryDim() * c.hiddenSize() <= m, where);
                if (c.moe() != null) {
                    assertTrue(c.moe().numLocalExperts() >= 1 && c.moe().numLocalExperts() <= LlamaConfig.MAX_EXPERTS, where);
                    assertTrue(c.moe().numExpertsPerTok() >= 1 && c.moe().numExpertsPerTok() <= c.moe().numLocalExperts(), where);
                }
            } catch (IOException e) {
                throw new AssertionError("config.json: an IOException that is not a ConfigException", e);
            }
        }

        public boolean isRefusal(Throwable t) {
            return t instanceof ConfigException;
        }
    };

    static final Target SAFETENSORS = new Target() {
        public void load(Path file) throws Exception {
            try (SafetensorsFile f = SafetensorsFile.open(file)) {
                f.metadata();
                for (String name : f.names()) {
                    Tensor t = f.tensor(name);
                    long n = t.numel();
                    if (n > 0 && readable(t.dtype())) {
                        t.getFloat(0);
                        t.getFloat(n - 1);
                    }
                }
            }
        }

        public boolean isRefusal(Throwable t) {
            return t instanceof SafetensorsException;
        }
    };

    static boolean readable(DType d) {
        return d == DType.F32 || d == DType.BF16 || d == DType.F16 || d == DType.I32 || d == DType.I64;
    }

    @Test
    void tokenizerJson() throws Exception {
        List<Path> seeds = new ArrayList<>();
        for (String kind : List.of("gpt2", "llama2", "llama3", "metaspace", "trainer"))
            seeds.add(RESOURCES.resolve("tokenizer").resolve(kind).resolve("tokenizer.json"));
        seeds.add(RESOURCES.resolve("llama/tiny_bpe/tokenizer.json"));
        runJson("tokenizer", "tokenizer.json", seeds, TOKENIZER);
    }

    @Test
    void configJson() throws Exception {
        List<Path> seeds = new ArrayList<>();
        try (Stream<Path> s = Stream.of("llama", "mixtral").flatMap(d -> list(RESOURCES.resolve(d)))) {
            s.map(d -> d.resolve("config.json")).filter(Files::isRegularFile).sorted().forEach(seeds::add);
        }
        assertTrue(seeds.size() >= 5, "config fixtures: " + seeds);
        runJson("config", "config.json", seeds, CONFIG);
    }

    @Test
    void safetensorsHeader() throws Exception {
        List<Path> seeds = List.of(RESOURCES.resolve("safetensors/golden.safetensors"),
                RESOURCES.resolve("safetensors/golden_metadata.safetensors"));
        List<byte[]> files = new ArrayList<>();
        for (Path p : seeds) files.add(Files.readAllBytes(p));
        Fuzz f = new Fuzz("safetensors");
        for (int c = 0; f.next(c); c++) {
            SplittableRandom rnd = f.random(c);
            int which = rnd.nextInt(files.size());
            byte[] original = files.get(which);
            long headerBytes = ByteBuffer.wrap(original, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            String header = new String(original, 8, (int) headerBytes, StandardCharsets.UTF_8);
            byte[] data = Arrays.copyOfRange(original, 8 + (int) headerBytes, original.length);
            List<String> log = new ArrayList<>();
            log.add("seed file " + seeds.get(which).getFileName());
            byte[] newHeader = rnd.nextInt(10) == 0 ? header.getBytes(StandardCharsets.UTF_8)
                    : mutateJson(JSON.readTree(header), rnd, log).getBytes(StandardCharsets.UTF_8);
            long declared = newHeader.length;
            if (rnd.nextInt(6) == 0) {
                long[] lengths = {0, 1, 7, declared - 1, declared + 1, declared + data.length, declared + data.length + 1,
                        SafetensorsFile.MAX_HEADER_BYTES, SafetensorsFile.MAX_HEADER_BYTES + 1, Integer.MAX_VALUE,
                        1L << 31, 1L << 32, Long.MAX_VALUE, -1, Long.MIN_VALUE};
                declared = lengths[rnd.nextInt(lengths.length)];
                log.add("header length " + Long.toUnsignedString(declared));
            }
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            out.writeBytes(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(declared).array());
            out.writeBytes(newHeader);
            out.writeBytes(data);
            byte[] bytes = out.toByteArray();
            if (rnd.nextInt(5) == 0) bytes = mutateBytes(bytes, rnd, log);
            Path file = dir.resolve("case-" + c + ".safetensors");
            Files.write(file, bytes);
            f.check(c, file, SAFETENSORS, log);
            Files.delete(file);
        }
        f.done();
    }

    private void runJson(String name, String fileName, List<Path> seeds, Target target) throws Exception {
        List<JsonNode> trees = new ArrayList<>();
        for (Path p : seeds) trees.add(JSON.readTree(p.toFile()));
        Fuzz f = new Fuzz(name);
        Path caseDir = dir.resolve(name);
        Files.createDirectories(caseDir);
        Path file = caseDir.resolve(fileName);
        for (int c = 0; f.next(c); c++) {
            SplittableRandom rnd = f.random(c);
            int which = rnd.nextInt(trees.size());
            List<String> log = new ArrayList<>();
            log.add("seed file " + RESOURCES.relativize(seeds.get(which)));
            byte[] bytes = mutateJson(trees.get(which), rnd, log).getBytes(StandardCharsets.UTF_8);
            if (rnd.nextInt(8) == 0) bytes = mutateBytes(bytes, rnd, log);
            Files.write(file, bytes);
            f.check(c, file, target, log);
        }
        f.done();
    }

    /** the case loop of one format: case seeds, the time budget, the check of one case */
    static final class Fuzz {
        final String name;
        final long start = System.nanoTime();
        int ran, loaded, refused;
        final List<String> failures = new ArrayList<>();

        Fuzz(String name) { this.name = name; }

        boolean next(int c) {
            if (ONLY_CASE != null) return c <= ONLY_CASE;
            return c < CASES && (System.nanoTime() - start) / 1_000_000 < MILLIS;
        }

        SplittableRandom random(int c) {
            return new SplittableRandom(new SplittableRandom(SEED ^ name.hashCode()).split().nextLong() + 0x9E3779B97F4A7C15L * c);
        }

        void check(int c, Path file, Target target, List<String> log) throws IOException {
            if (ONLY_CASE != null && c != ONLY_CASE) return;
            ran++;
            Throwable thrown = null;
            try {
                target.load(file);
                loaded++;
            } catch (Throwable t) {
                thrown = t;
            }
            if (thrown == null) return;
            if (target.isRefusal(thrown) && oneLineNamingTheFile(file, thrown)) {
                refused++;
                return;
            }
            Path kept = Path.of("target/fuzz-failures").resolve(name + "-seed" + SEED + "-case" + c + "-" + file.getFileName());
            Files.createDirectories(kept.getParent());
            Files.copy(file, kept, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            StringWriter trace = new StringWriter();
            thrown.printStackTrace(new PrintWriter(trace));
            failures.add(name + " fuzz case " + c + " (-Ddive.fuzz.seed=" + SEED + " -Ddive.fuzz.case=" + c + "), input kept as " + kept
                    + "\nmutations: " + log + "\n" + (target.isRefusal(thrown) ? "refusal not one line naming the file: " : "escaped: ")
                    + trace.toString().lines().limit(12).reduce("", (a, b) -> a + "\n  " + b));
            System.out.println(failures.getLast());
        }

        void done() {
            long ms = (System.nanoTime() - start) / 1_000_000;
            System.out.println("fuzz " + name + ": " + ran + " cases (seed " + SEED + ") in " + ms + " ms: " + loaded + " loaded, "
                    + refused + " refused with the format's exception");
            assertTrue(ran > 0, name + ": no case ran");
            if (!failures.isEmpty())
                fail(failures.size() + " of " + ran + " " + name + " cases let another exception escape; the first:\n" + failures.getFirst());
        }
    }

    static boolean oneLineNamingTheFile(Path file, Throwable t) {
        String m = t.getMessage();
        return m != null && !m.contains("\n") && m.startsWith(file.toString() + ": ");
    }

    static void assertOneLine(Path file, Throwable t) {
        assertTrue(oneLineNamingTheFile(file, t), "one line naming " + file + ": " + t.getMessage());
    }

    // ---- mutations ----

    /** the tree written as JSON text with one to four edits: values replaced, members deleted or written twice */
    static String mutateJson(JsonNode root, SplittableRandom rnd, List<String> log) {
        List<Site> sites = new ArrayList<>();
        collect(root, "$", 0, sites);
        List<Site> numbers = sites.stream().filter(s -> s.node.isNumber()).toList();
        List<Site> shallow = sites.stream().filter(s -> s.depth <= 3).toList();
        Edits edits = new Edits();
        int count = 1 + (rnd.nextInt(4) == 0 ? rnd.nextInt(4) : 0);
        for (int i = 0; i < count; i++) {
            List<Site> pool = switch (rnd.nextInt(3)) {
                case 0 -> numbers.isEmpty() ? sites : numbers;
                case 1 -> shallow;
                default -> sites;
            };
            Site s = pool.get(rnd.nextInt(pool.size()));
            switch (rnd.nextInt(11)) {
                case 0, 1, 2, 3, 4 -> {
                    String v = EXTREMES.get(rnd.nextInt(EXTREMES.size()));
                    edits.replace.put(s.node, v);
                    log.add(s.path + " = " + v);
                }
                case 5 -> {
                    if (s.depth > 0) {
                        edits.delete.put(s.node, Boolean.TRUE);
                        log.add("delete " + s.path);
                    }
                }
                case 6 -> {
                    if (s.node.isContainerNode() && s.node.size() > 0) {
                        edits.duplicate.put(s.node, rnd.nextInt(s.node.size()));
                        log.add("write a member of " + s.path + " twice");
                    }
                }
                case 7 -> { // retype: the value as a string, in an array, or inside an object
                    String text = s.node.toString();
                    String v = switch (rnd.nextInt(3)) {
                        case 0 -> JSON.getNodeFactory().textNode(text).toString();
                        case 1 -> "[" + text + "]";
                        default -> "{\"value\": " + text + "}";
                    };
                    edits.replace.put(s.node, v);
                    log.add("retype " + s.path + " as " + v.charAt(0));
                }
                case 8 -> { // a number moved a little: off-by-one and sign
                    if (s.node.isIntegralNumber()) {
                        long v = s.node.asLong();
                        long[] near = {v + 1, v - 1, -v, v * 2, v * 1000, v + (1L << 31), v + (1L << 32)};
                        String t = Long.toString(near[rnd.nextInt(near.length)]);
                        edits.replace.put(s.node, t);
                        log.add(s.path + " = " + t);
                    }
                }
                case 9 -> { // a member renamed: to nothing, a control character, the metadata key, a long name
                    if (s.depth > 0) {
                        String[] names = {"", "\n", "a\nb", "\u0000", "__metadata__", "type", "id", "x".repeat(5000), "\ud800"};
                        String name = names[rnd.nextInt(names.length)];
                        edits.rename.put(s.node, name);
                        log.add("rename " + s.path + " to " + JSON.getNodeFactory().textNode(name).toString().substring(0, Math.min(20, name.length() + 2)));
                    }
                }
                default -> { // a long array: a list of many numbers or strings
                    String item = rnd.nextBoolean() ? "2147483647" : "\"x\"";
                    String v = "[" + String.join(",", java.util.Collections.nCopies(1 + rnd.nextInt(5000), item)) + "]";
                    edits.replace.put(s.node, v);
                    log.add(s.path + " = [" + item + " ...]");
                }
            }
        }
        StringBuilder out = new StringBuilder();
        write(root, edits, out);
        return out.toString();
    }

    record Site(JsonNode node, String path, int depth) {}

    static void collect(JsonNode node, String path, int depth, List<Site> out) {
        out.add(new Site(node, path, depth));
        if (node.isObject()) {
            for (Map.Entry<String, JsonNode> e : node.properties()) {
                collect(e.getValue(), path + "." + e.getKey(), depth + 1, out);
            }
        } else if (node.isArray()) {
            for (int i = 0; i < node.size(); i++) collect(node.get(i), path + "[" + i + "]", depth + 1, out);
        }
    }

    /** edits by node identity (equal values elsewhere in the tree are not touched) */
    static final class Edits {
        final Map<JsonNode, String> replace = new IdentityHashMap<>();
        final Map<JsonNode, Boolean> delete = new IdentityHashMap<>();
        final Map<JsonNode, Integer> duplicate = new IdentityHashMap<>();
        final Map<JsonNode, String> rename = new IdentityHashMap<>(); // by the member's value
    }

    static void write(JsonNode node, Edits edits, StringBuilder out) {
        String raw = edits.replace.get(node);
        if (raw != null) {
            out.append(raw);
        } else if (node.isObject()) {
            out.append('{');
            boolean first = true;
            Integer twice = edits.duplicate.get(node);
            int i = 0;
            for (Map.Entry<String, JsonNode> e : node.properties()) {
                if (edits.delete.containsKey(e.getValue())) { i++; continue; }
                int times = twice != null && twice == i ? 2 : 1;
                for (int k = 0; k < times; k++) {
                    if (!first) out.append(',');
                    first = false;
                    out.append(JSON.getNodeFactory().textNode(edits.rename.getOrDefault(e.getValue(), e.getKey()))).append(':');
                    write(e.getValue(), edits, out);
                }
                i++;
            }
            out.append('}');
        } else if (node.isArray()) {
            out.append('[');
            boolean first = true;
            Integer twice = edits.duplicate.get(node);
            for (int i = 0; i < node.size(); i++) {
                if (edits.delete.containsKey(node.get(i))) continue;
                int times = twice != null && twice == i ? 2 : 1;
                for (int k = 0; k < times; k++) {
                    if (!first) out.append(',');
                    first = false;
                    write(node.get(i), edits, out);
                }
            }
            out.append(']');
        } else {
            out.append(node.toString());
        }
    }

    /** truncation, flipped bytes, inserted or deleted ranges */
    static byte[] mutateBytes(byte[] bytes, SplittableRandom rnd, List<String> log) {
        if (bytes.length == 0) return bytes;
        switch (rnd.nextInt(4)) {
            case 0 -> {
                int at = rnd.nextInt(bytes.length);
                log.add("truncate at " + at);
                return Arrays.copyOf(bytes, at);
            }
            case 1 -> {
                byte[] b = bytes.clone();
                int n = 1 + rnd.nextInt(8);
                for (int i = 0; i < n; i++) b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
                log.add(n + " random bytes set");
                return b;
            }
            case 2 -> {
                int at = rnd.nextInt(bytes.length + 1), n = 1 + rnd.nextInt(16);
                byte[] noise = new byte[n];
                new Random(rnd.nextLong()).nextBytes(noise);
                log.add(n + " random bytes inserted at " + at);
                ByteArrayOutputStream out = new ByteArrayOutputStream();
                out.write(bytes, 0, at);
                out.writeBytes(noise);
                out.write(bytes, at, bytes.length - at);
                return out.toByteArray();
            }
            default -> {
                int at = rnd.nextInt(bytes.length), n = 1 + rnd.nextInt(Math.min(64, bytes.length - at));
                log.add(n + " bytes deleted at " + at);
                ByteArrayOutputStream out = new ByteArrayOutputStream();
                out.write(bytes, 0, at);
                out.write(bytes, at + n, bytes.length - at - n);
                return out.toByteArray();
            }
        }
    }

    static Stream<Path> list(Path d) {
        try {
            return Files.list(d).filter(Files::isDirectory);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
