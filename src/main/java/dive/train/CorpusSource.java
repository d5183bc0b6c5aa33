package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A text corpus on disk or in the jar: {@code <corpus>/manifest.json} = {@code {"version":1,"datasets":[{"name","domain",…}]}}
 * and {@code <corpus>/<dataset>/{train,calib,eval}.jsonl}, one {@code {"id": "…", "text": "…"}} per line.
 * {@code bundled} names the small sample packed in the jar under {@code /dive/corpus/}.
 */
public final class CorpusSource {
    public static final String BUNDLED = "bundled";
    private static final String RESOURCE_ROOT = "/dive/corpus/";
    private static final ObjectMapper JSON = new ObjectMapper();

    public record Dataset(String name, String domain) {}

    private final String description;
    private final Path dir;                      // null for the bundled corpus
    private final Map<String, Dataset> datasets; // manifest order

    private CorpusSource(String description, Path dir, Map<String, Dataset> datasets) {
        this.description = description; this.dir = dir; this.datasets = datasets;
    }

    /** {@code bundled}, or a corpus folder */
    public static CorpusSource open(String spec, Path baseDir) throws IOException {
        if (BUNDLED.equals(spec)) {
            byte[] manifest = readResource(RESOURCE_ROOT + "manifest.json");
            if (manifest == null) throw new NoSuchFileException("the bundled corpus (" + RESOURCE_ROOT + "manifest.json in the jar)");
            return new CorpusSource("bundled corpus", null, parseManifest(manifest, "bundled corpus manifest.json"));
        }
        Path dir = baseDir == null ? Path.of(spec) : baseDir.resolve(spec);
        Path manifest = dir.resolve("manifest.json");
        if (!Files.isRegularFile(manifest)) throw new NoSuchFileException(manifest + " (corpus manifest)");
        return new CorpusSource(dir.toString(), dir, parseManifest(Files.readAllBytes(manifest), manifest.toString()));
    }

    static Map<String, Dataset> parseManifest(byte[] bytes, String source) throws IOException {
        JsonNode root;
        try { root = JSON.readTree(bytes); }
        catch (IOException e) { throw new IOException(source + ": not valid JSON: " + e.getMessage(), e); }
        if (root == null || root.path("version").asInt(-1) != 1) throw new IOException(source + ": expected \"version\": 1");
        JsonNode list = root.path("datasets");
        if (!list.isArray() || list.isEmpty()) throw new IOException(source + ": expected a non-empty \"datasets\" array");
        Map<String, Dataset> out = new LinkedHashMap<>();
        for (JsonNode d : list) {
            String name = d.path("name").asText("");
            if (name.isEmpty() || name.contains("/") || name.contains("\\") || name.startsWith(".")) {
                throw new IOException(source + ": dataset entry " + d + " has no valid \"name\"");
            }
            out.put(name, new Dataset(name, d.path("domain").asText("")));
        }
        return out;
    }

    public String description() { return description; }

    public List<Dataset> datasets() { return List.copyOf(datasets.values()); }

    public Dataset dataset(String name) {
        Dataset d = datasets.get(name);
        if (d == null) throw new IllegalArgumentException("dataset '" + name + "' is not in " + description + " (has " + datasets.keySet() + ")");
        return d;
    }

    /** where a split lives, for messages */
    public String location(String dataset, String split) {
        return dir != null ? dir.resolve(dataset).resolve(split + ".jsonl").toString() : "bundled:" + dataset + "/" + split + ".jsonl";
    }

    public boolean hasSplit(String dataset, String split) {
        dataset(dataset);
        return dir != null ? Files.isRegularFile(dir.resolve(dataset).resolve(split + ".jsonl"))
                : CorpusSource.class.getResource(RESOURCE_ROOT + dataset + "/" + split + ".jsonl") != null;
    }

    /** the raw bytes of a split's JSON-lines file */
    public byte[] readSplit(String dataset, String split) throws IOException {
        dataset(dataset);
        if (dir != null) {
            Path file = dir.resolve(dataset).resolve(split + ".jsonl");
            if (!Files.isRegularFile(file)) throw new NoSuchFileException(file + " (" + split + " split of dataset '" + dataset + "')");
            return Files.readAllBytes(file);
        }
        byte[] bytes = readResource(RESOURCE_ROOT + dataset + "/" + split + ".jsonl");
        if (bytes == null) throw new NoSuchFileException(location(dataset, split));
        return bytes;
    }

    /** the documents' texts of a split, in file order */
    public List<String> texts(String dataset, String split) throws IOException {
        return parseTexts(readSplit(dataset, split), location(dataset, split));
    }

    static List<String> parseTexts(byte[] jsonl, String source) throws IOException {
        List<String> texts = new ArrayList<>();
        String[] lines = new String(jsonl, StandardCharsets.UTF_8).split("\n");
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].strip();
            if (line.isEmpty()) continue;
            JsonNode doc;
            try { doc = JSON.readTree(line); }
            catch (IOException e) { throw new IOException(source + ":" + (i + 1) + ": not valid JSON: " + e.getMessage(), e); }
            JsonNode text = doc == null ? null : doc.get("text");
            if (text == null || !text.isTextual()) throw new IOException(source + ":" + (i + 1) + ": expected an object with a string \"text\"");
            texts.add(text.asText());
        }
        return texts;
    }

    private static byte[] readResource(String name) throws IOException {
        try (InputStream in = CorpusSource.class.getResourceAsStream(name)) {
            return in == null ? null : in.readAllBytes();
        }
    }
}
