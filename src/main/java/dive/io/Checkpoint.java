package dive.io;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import dive.tensor.Tensor;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The weights of a model directory, found as transformers finds them: {@code model.safetensors};
 * else the shards listed by {@code model.safetensors.index.json} ({@code "weight_map": {tensor
 * name: shard file}}); else the directory's only {@code *.safetensors} file. All files stay mapped
 * until {@link #close()}. With an index, the tensors are exactly those of its weight_map (each must be
 * in the shard it names; extra tensors in a shard are not exposed), and {@code metadata.total_size}
 * is informational only, as in transformers.
 */
public final class Checkpoint implements AutoCloseable {
    private final Path dir;
    private final List<SafetensorsFile> files;
    private final Map<String, SafetensorsFile> fileOfTensor; // in checkpoint order

    private Checkpoint(Path dir, List<SafetensorsFile> files, Map<String, SafetensorsFile> fileOfTensor) {
        this.dir = dir;
        this.files = files;
        this.fileOfTensor = fileOfTensor;
    }

    public static Checkpoint open(Path dir) throws IOException {
        if (!Files.exists(dir)) throw new SafetensorsException(dir + ": checkpoint directory does not exist");
        if (!Files.isDirectory(dir)) throw new SafetensorsException(dir + ": is not a directory (a checkpoint is a model directory)");
        Path single = dir.resolve(SafetensorsWriter.SINGLE_FILE);
        Path index = dir.resolve(SafetensorsWriter.INDEX_FILE);
        if (Files.isRegularFile(single)) return ofSingleFile(dir, single);
        if (Files.isRegularFile(index)) return ofIndex(dir, index);
        List<Path> candidates = new ArrayList<>();
        try (DirectoryStream<Path> stream = Files.newDirectoryStream(dir, "*.safetensors")) {
            for (Path p : stream) if (Files.isRegularFile(p)) candidates.add(p.getFileName());
        }
        Collections.sort(candidates);
        if (candidates.size() == 1) return ofSingleFile(dir, dir.resolve(candidates.getFirst()));
        if (candidates.isEmpty())
            throw new SafetensorsException(dir + ": no " + SafetensorsWriter.SINGLE_FILE + ", " + SafetensorsWriter.INDEX_FILE
                    + " or other *.safetensors file in the directory");
        throw new SafetensorsException(dir + ": several *.safetensors files " + candidates + " but no "
                + SafetensorsWriter.INDEX_FILE + " to say which tensors live where");
    }

    private static Checkpoint ofSingleFile(Path dir, Path file) throws IOException {
        SafetensorsFile f = SafetensorsFile.open(file);
        Map<String, SafetensorsFile> map = new LinkedHashMap<>();
        for (String name : f.names()) map.put(name, f);
        return new Checkpoint(dir, List.of(f), Collections.unmodifiableMap(map));
    }

    private static Checkpoint ofIndex(Path dir, Path index) throws IOException {
        JsonNode root;
        try {
            root = SafetensorsFile.JSON.readTree(Files.readString(index));
        } catch (JacksonException e) {
            throw SafetensorsException.of(index, "not valid JSON: " + e.getOriginalMessage());
        } catch (java.nio.charset.MalformedInputException e) {
            throw SafetensorsException.of(index, "not valid UTF-8");
        }
        if (root == null || !root.isObject()) throw SafetensorsException.of(index, "must be a JSON object");
        JsonNode weightMap = root.get("weight_map");
        if (weightMap == null || !weightMap.isObject())
            throw SafetensorsException.of(index, "\"weight_map\" is missing or not an object of tensor name to shard file");

        Map<String, SafetensorsFile> shards = new LinkedHashMap<>();
        Map<String, SafetensorsFile> fileOfTensor = new LinkedHashMap<>();
        try {
            for (Map.Entry<String, JsonNode> kv : weightMap.properties()) {
                String name = kv.getKey();
                JsonNode shardNode = kv.getValue();
                if (!shardNode.isTextual())
                    throw SafetensorsException.of(index, name, "weight_map value must be a shard file name, found " + shardNode);
                String shardName = shardNode.textValue();
                if (shardName.isEmpty() || shardName.contains("/") || shardName.contains("\\") || shardName.equals(".") || shardName.equals(".."))
                    throw SafetensorsException.of(index, name, "shard '" + shardName + "' must be a plain file name in the checkpoint directory");
                SafetensorsFile shard = shards.get(shardName);
                if (shard == null) {
                    Path shardPath = dir.resolve(shardName);
                    if (!Files.isRegularFile(shardPath))
                        throw SafetensorsException.of(index, name, "shard file '" + shardName + "' does not exist");
                    shard = SafetensorsFile.open(shardPath);
                    shards.put(shardName, shard);
                }
                if (!shard.has(name))
                    throw SafetensorsException.of(index, name, "weight_map puts it in '" + shardName + "' but that shard does not hold it");
                fileOfTensor.put(name, shard);
            }
        } catch (IOException | RuntimeException e) {
            for (SafetensorsFile f : shards.values()) f.close();
            throw e;
        }
        return new Checkpoint(dir, List.copyOf(shards.values()), Collections.unmodifiableMap(fileOfTensor));
    }

    public Path dir() { return dir; }

    /** tensor names: file order for one file, weight_map order for a sharded checkpoint */
    public List<String> names() { return List.copyOf(fileOfTensor.keySet()); }

    public boolean has(String name) { return fileOfTensor.containsKey(name); }

    /** a zero-copy view of the named tensor; valid until {@link #close()} */
    public Tensor tensor(String name) {
        SafetensorsFile f = fileOfTensor.get(name);
        if (f == null) throw new IllegalArgumentException(dir + ": no tensor '" + name + "' in this checkpoint");
        return f.tensor(name);
    }

    /** the safetensors file that holds the named tensor */
    public Path fileOf(String name) {
        SafetensorsFile f = fileOfTensor.get(name);
        if (f == null) throw new IllegalArgumentException(dir + ": no tensor '" + name + "' in this checkpoint");
        return f.path();
    }

    /** the safetensors files of this checkpoint, in shard order */
    public List<Path> files() { return files.stream().map(SafetensorsFile::path).toList(); }

    @Override public void close() {
        for (SafetensorsFile f : files) f.close();
    }

    @Override public String toString() { return "Checkpoint[" + dir + ", " + fileOfTensor.size() + " tensors in " + files.size() + " files]"; }
}
