package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.io.SafetensorsFile;
import dive.io.SafetensorsWriter;
import dive.tensor.DType;
import dive.tensor.Tensor;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Training checkpoints in {@code RUN_DIR/checkpoints/}: one folder {@code step-00000100/} per checkpoint with
 * <ul>
 *   <li>{@code parameters.safetensors}: the trainable parameters' values (F32; frozen ones are rebuilt from the recipe),</li>
 *   <li>{@code optimizer.safetensors}: AdamW moments {@code <name>.exp_avg}, {@code <name>.exp_avg_sq},</li>
 *   <li>{@code state.json}: step, tokens seen, optimizer step count, data-loader state, recipe hash.</li>
 * </ul>
 * A folder is written under a temp name and renamed into place; the pointer file {@code latest} (holding the
 * folder name) is written last, atomically. So a crash at any point leaves the previous checkpoint intact.
 */
public final class TrainState {
    public static final String DIR = "checkpoints", LATEST = "latest";
    private static final ObjectMapper JSON = new ObjectMapper();

    /** what state.json records */
    public record Info(long step, long tokensSeen, long optimizerSteps, DataLoader.State loader, String recipeSha256) {}

    private TrainState() {}

    public static String folderName(long step) { return String.format("step-%08d", step); }

    /** writes the checkpoint of {@code step}; then keeps only the newest {@code keep} checkpoints (keep ≤ 0: all) */
    public static Path save(Path runDir, List<Parameter> parameters, AdamW optimizer, Info info, int keep) throws IOException {
        Path root = runDir.resolve(DIR);
        Files.createDirectories(root);
        String name = folderName(info.step());
        Path finalDir = root.resolve(name);
        Path temp = root.resolve("." + name + ".tmp");
        deleteTree(temp);
        Files.createDirectories(temp);

        List<Tensor> values = new ArrayList<>(), moments = new ArrayList<>();
        Map<String, AdamW.Moments> state = optimizer.state(parameters);
        for (Parameter p : parameters) {
            if (!p.trainable()) continue;
            optimizer.backend().readBack(p.writableData());  // the trained values, where the backend keeps them
            values.add(new Tensor(p.name(), DType.F32, p.value().shape(), p.writableData().data()));
            AdamW.Moments mv = state.get(p.name());
            if (mv != null) {
                moments.add(Tensor.ofFloats(p.name() + ".exp_avg", mv.m(), p.value().shape()));
                moments.add(Tensor.ofFloats(p.name() + ".exp_avg_sq", mv.v(), p.value().shape()));
            }
        }
        SafetensorsWriter.write(temp.resolve("parameters.safetensors"), values, Map.of("step", Long.toString(info.step())));
        SafetensorsWriter.write(temp.resolve("optimizer.safetensors"), moments, Map.of("step", Long.toString(info.step())));
        ObjectNode json = JSON.createObjectNode();
        json.put("version", 1);
        json.put("step", info.step());
        json.put("tokens_seen", info.tokensSeen());
        json.put("optimizer_steps", info.optimizerSteps());
        json.put("loader_rng_state", info.loader().rngState());
        json.put("loader_batches_drawn", info.loader().batchesDrawn());
        json.put("recipe_sha256", info.recipeSha256());
        AtomicFiles.writeString(temp.resolve("state.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(json) + "\n");

        deleteTree(finalDir); // only a leftover of an earlier, abandoned run past this step can be here
        Files.move(temp, finalDir, StandardCopyOption.ATOMIC_MOVE);
        AtomicFiles.writeString(root.resolve(LATEST), name + "\n");

        if (keep > 0) {
            List<Path> old;
            try (Stream<Path> s = Files.list(root)) {
                old = s.filter(p -> p.getFileName().toString().matches("step-\\d{8}") && !p.equals(finalDir))
                        .sorted(Comparator.comparing((Path p) -> p.getFileName().toString()).reversed()).toList();
            }
            for (int i = keep - 1; i < old.size(); i++) deleteTree(old.get(i));
        }
        return finalDir;
    }

    /** the folder {@code latest} points to, or null when the run has no checkpoint */
    public static Path latest(Path runDir) throws IOException {
        Path pointer = runDir.resolve(DIR).resolve(LATEST);
        if (!Files.isRegularFile(pointer)) return null;
        String name = Files.readString(pointer).strip();
        if (!name.matches("step-\\d{8}")) throw new IOException(pointer + ": expected a checkpoint folder name like step-00000100, found '" + name + "'");
        Path dir = runDir.resolve(DIR).resolve(name);
        if (!Files.isDirectory(dir)) throw new NoSuchFileException(dir + " (named by " + pointer + ")");
        return dir;
    }

    /** reads state.json of a checkpoint folder */
    public static Info readInfo(Path checkpointDir) throws IOException {
        Path file = checkpointDir.resolve("state.json");
        JsonNode j;
        try { j = JSON.readTree(file.toFile()); }
        catch (IOException e) { throw new IOException(file + ": corrupt checkpoint state (" + e.getMessage() + ")", e); }
        if (j == null || j.path("version").asInt() != 1) throw new IOException(file + ": corrupt checkpoint state: expected \"version\": 1");
        for (String key : List.of("step", "tokens_seen", "optimizer_steps", "loader_rng_state", "loader_batches_drawn", "recipe_sha256")) {
            if (!j.has(key)) throw new IOException(file + ": corrupt checkpoint state: missing \"" + key + "\"");
        }
        return new Info(j.get("step").asLong(), j.get("tokens_seen").asLong(), j.get("optimizer_steps").asLong(),
                new DataLoader.State(j.get("loader_rng_state").asLong(), j.get("loader_batches_drawn").asLong()),
                j.get("recipe_sha256").asText());
    }

    /**
     * Checks the checkpoint against the model (every trainable parameter present with its shape, F32) and only
     * then copies the values into the parameters and the moments into {@code optimizer}. Nothing is changed
     * when a check fails.
     */
    public static void restore(Path checkpointDir, Info info, List<Parameter> parameters, AdamW optimizer) throws IOException {
        Path valuesFile = checkpointDir.resolve("parameters.safetensors"), momentsFile = checkpointDir.resolve("optimizer.safetensors");
        try (SafetensorsFile values = SafetensorsFile.open(valuesFile); SafetensorsFile moments = SafetensorsFile.open(momentsFile)) {
            int trainable = 0;
            for (Parameter p : parameters) {
                if (!p.trainable()) continue;
                trainable++;
                check(values, p.name(), p, valuesFile);
                if (info.optimizerSteps() > 0) {
                    check(moments, p.name() + ".exp_avg", p, momentsFile);
                    check(moments, p.name() + ".exp_avg_sq", p, momentsFile);
                }
            }
            if (values.names().size() != trainable) {
                List<String> extra = new ArrayList<>(values.names());
                for (Parameter p : parameters) if (p.trainable()) extra.remove(p.name());
                throw new IOException(valuesFile + ": holds parameters this run does not train: " + extra
                        + " (a checkpoint of another model or other train/freeze patterns)");
            }
            Map<String, AdamW.Moments> state = new LinkedHashMap<>();
            for (Parameter p : parameters) {
                if (!p.trainable()) continue;
                p.writableData().copyFrom(values.tensor(p.name()));
                optimizer.backend().weightChanged(p.value());
                if (info.optimizerSteps() > 0) {
                    state.put(p.name(), new AdamW.Moments(moments.tensor(p.name() + ".exp_avg").toFloatArray(),
                            moments.tensor(p.name() + ".exp_avg_sq").toFloatArray()));
                }
            }
            optimizer.restore(info.optimizerSteps(), state);
        }
    }

    private static void check(SafetensorsFile file, String name, Parameter p, Path path) throws IOException {
        if (!file.has(name)) throw new IOException(path + ": tensor '" + name + "' is missing (a checkpoint of another model?)");
        Tensor t = file.tensor(name);
        if (t.dtype() != DType.F32 || !java.util.Arrays.equals(t.shape(), p.value().shape())) {
            throw new IOException(path + ": tensor '" + name + "' is " + t.dtype() + java.util.Arrays.toString(t.shape())
                    + ", the model's parameter is F32" + java.util.Arrays.toString(p.value().shape()) + " (a checkpoint of another model?)");
        }
    }

    static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) return;
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
        }
    }
}
