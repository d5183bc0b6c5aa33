package dive.data;

import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code manifest.json} of a corpus directory:
 * {@code {"version": 1, "datasets": [{"name", "domain", "source", "license", "documents": {"train": n, "calib": n,
 * "eval": n}, "bytes": {...}, "sha256": {...}}]}}. {@code bytes} and {@code sha256} describe the {@code .jsonl} files
 * exactly as stored.
 */
public record Manifest(int version, List<Entry> datasets) {
    public static final int VERSION = 1;
    public static final String FILE_NAME = "manifest.json";

    public record Entry(String name, String domain, String source, String license,
                        Map<Split, Long> documents, Map<Split, Long> bytes, Map<Split, String> sha256) {}

    public Entry entry(String name) {
        for (Entry e : datasets) if (e.name().equals(name)) return e;
        throw new IllegalArgumentException("no dataset '" + name + "' in the corpus: it has "
                + String.join(", ", datasets.stream().map(Entry::name).toList()));
    }

    /** pretty JSON with {@code \n} line ends, keys in a fixed order: the same manifest always gives the same bytes */
    public String toJson() throws IOException {
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("version", version);
        List<Object> list = new ArrayList<>();
        for (Entry e : datasets) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", e.name());
            m.put("domain", e.domain());
            m.put("source", e.source());
            m.put("license", e.license());
            m.put("documents", bySplit(e.documents()));
            m.put("bytes", bySplit(e.bytes()));
            m.put("sha256", bySplit(e.sha256()));
            list.add(m);
        }
        root.put("datasets", list);
        DefaultPrettyPrinter pp = new DefaultPrettyPrinter().withObjectIndenter(new DefaultIndenter("  ", "\n"))
                .withArrayIndenter(new DefaultIndenter("  ", "\n"));
        return new ObjectMapper().writer(pp).writeValueAsString(root) + "\n";
    }

    private static Map<String, Object> bySplit(Map<Split, ?> values) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (Split s : Split.values()) m.put(s.fileStem(), values.get(s));
        return m;
    }

    /** parses a manifest; {@code where} names it in errors */
    public static Manifest read(InputStream in, String where) throws IOException {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(in);
        } catch (IOException e) {
            throw new IOException(where + ": not valid JSON (" + e.getMessage() + ")", e);
        }
        if (root == null || !root.isObject()) throw new IOException(where + ": expected a JSON object");
        int version = root.path("version").asInt(-1);
        if (version != VERSION) throw new IOException(where + ": \"version\" is " + root.path("version") + ", expected " + VERSION);
        JsonNode ds = root.get("datasets");
        if (ds == null || !ds.isArray()) throw new IOException(where + ": \"datasets\" must be an array");
        List<Entry> entries = new ArrayList<>();
        for (JsonNode d : ds) {
            String name = text(d, "name", where);
            String at = where + " dataset " + name;
            Map<Split, Long> docs = new EnumMap<>(Split.class), bytes = new EnumMap<>(Split.class);
            Map<Split, String> sha = new EnumMap<>(Split.class);
            for (Split s : Split.values()) {
                docs.put(s, number(d.path("documents"), s, at + " documents"));
                bytes.put(s, number(d.path("bytes"), s, at + " bytes"));
                JsonNode h = d.path("sha256").get(s.fileStem());
                if (h == null || !h.isTextual() || !h.asText().matches("[0-9a-f]{64}")) throw new IOException(at + ": sha256." + s.fileStem() + " must be 64 hex digits");
                sha.put(s, h.asText());
            }
            entries.add(new Entry(name, text(d, "domain", at), text(d, "source", at), text(d, "license", at), docs, bytes, sha));
        }
        return new Manifest(version, List.copyOf(entries));
    }

    private static String text(JsonNode node, String field, String where) throws IOException {
        JsonNode v = node.get(field);
        if (v == null || !v.isTextual() || v.asText().isEmpty()) throw new IOException(where + ": field \"" + field + "\" must be a non-empty string");
        return v.asText();
    }

    private static long number(JsonNode node, Split s, String where) throws IOException {
        JsonNode v = node.get(s.fileStem());
        if (v == null || !v.canConvertToLong() || v.asLong() < 0) throw new IOException(where + "." + s.fileStem() + " must be a count ≥ 0");
        return v.asLong();
    }
}
