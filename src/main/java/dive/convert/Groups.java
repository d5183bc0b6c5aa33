package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dive.model.LlamaModel;
import dive.util.AtomicFiles;
import dive.util.Progress;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The groups stage: which datasets' calibration windows build which expert, as groups.json in the method's folder.
 *
 * @param grouping          how they were formed: affinity (mining, DIVE-METHOD.md section 3), random or file
 * @param groupOfDataset    dataset i → its group (= expert)
 * @param perDataset        the per-dataset calibration statistics affinity mining gathered (reused by the build), or null
 *                          (read from groups.json, or another grouping)
 */
public record Groups(String grouping, List<String> datasets, int[] groupOfDataset, List<CalibrationStatistics> perDataset) {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    public static final String FILE = "groups.json";

    /** group g's dataset names, g = 0 … experts − 1 */
    public List<List<String>> names(int experts) { return groupNames(datasets, groupOfDataset, experts); }

    /**
     * the groups of {@code dir}/groups.json when a run wrote it, else made by {@code grouping} (affinity mining writes
     * {@code dir}/affinity/) and written there
     */
    static Groups readOrMake(Path dir, String grouping, LlamaModel dense, List<DatasetWindows> windows, DiveConversion.Request q,
                             List<String> names) throws IOException {
        Path file = dir.resolve(FILE);
        if (Files.isRegularFile(file)) return new Groups(grouping, names, read(file, names, q.experts()), null);
        ConvertRecipe recipe = q.recipe();
        Groups made = switch (grouping) {
            case "random" -> new Groups(grouping, names, ExpertReconstruction.randomGroups(names.size(), q.experts(), recipe.seed()), null);
            case "file" -> new Groups(grouping, names, read(recipe.groupsFile(), names, q.experts()), null);
            default -> {
                AffinityMining.Options options = new AffinityMining.Options(names, q.ratio(), recipe.score(), recipe.calibrationWindows(),
                        recipe.evalWindows(), recipe.seqlen(), recipe.seed(), recipe.linkage(), q.experts(), recipe.biasCompensation());
                AffinityMining.AffinityResult r;
                try (Progress bar = new Progress("affinity", AffinityMining.progressUnits(names.size(), options), "windows", q.progress())) {
                    r = AffinityMining.run(dense, windows, options, dir.resolve("affinity"), bar);
                }
                yield new Groups(grouping, names, r.groups(), r.statistics());
            }
        };
        write(file, grouping, names, made.groupOfDataset(), q.experts());
        return made;
    }

    /** the grouping a run's groups.json records ("affinity", "random", "file"), or null when there is none */
    static String grouping(Path groupsJson) throws IOException {
        if (!Files.isRegularFile(groupsJson)) return null;
        JsonNode g = JSON.readTree(groupsJson.toFile()).get("grouping");
        return g == null ? null : g.asText();
    }

    /** a groups file: {"groups": [["dataset", ...], ...]} (affinity.json and groups.json have this key) */
    static int[] read(Path file, List<String> names, int experts) throws IOException {
        JsonNode root;
        try { root = JSON.readTree(file.toFile()); }
        catch (com.fasterxml.jackson.core.JacksonException e) { throw new IllegalArgumentException(file + ": not valid JSON: " + e.getOriginalMessage()); }
        JsonNode list = root == null ? null : root.get("groups");
        if (list == null || !list.isArray()) throw new IllegalArgumentException(file + ": groups: expected a list of lists of dataset names");
        if (list.size() != experts) throw new IllegalArgumentException(file + ": groups: " + list.size() + " groups for --experts " + experts);
        int[] groups = new int[names.size()];
        Arrays.fill(groups, -1);
        for (int g = 0; g < list.size(); g++) {
            if (!list.get(g).isArray() || list.get(g).isEmpty()) throw new IllegalArgumentException(file + ": groups[" + g + "]: expected a non-empty list of dataset names");
            for (JsonNode n : list.get(g)) {
                int i = names.indexOf(n.asText());
                if (i < 0) throw new IllegalArgumentException(file + ": groups[" + g + "]: '" + n.asText() + "' is not one of the run's datasets " + names);
                if (groups[i] >= 0) throw new IllegalArgumentException(file + ": dataset '" + n.asText() + "' is in groups " + groups[i] + " and " + g);
                groups[i] = g;
            }
        }
        for (int i = 0; i < groups.length; i++)
            if (groups[i] < 0) throw new IllegalArgumentException(file + ": dataset '" + names.get(i) + "' is in no group");
        return groups;
    }

    static void write(Path file, String grouping, List<String> names, int[] groups, int experts) throws IOException {
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("grouping", grouping);
        json.put("datasets", names);
        json.put("groups", groupNames(names, groups, experts));
        json.put("group_of_dataset", groups);
        AtomicFiles.writeString(file, JSON.writeValueAsString(json) + "\n");
    }

    static List<List<String>> groupNames(List<String> names, int[] groups, int experts) {
        List<List<String>> out = new ArrayList<>();
        for (int g = 0; g < experts; g++) out.add(new ArrayList<>());
        for (int i = 0; i < groups.length; i++) out.get(groups[i]).add(names.get(i));
        return out;
    }
}
