package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One model's held-out evaluation as eval/dense.json, eval/before.json and eval/after.json hold it.
 *
 * @param ppl          dataset → perplexity on its final-evaluation windows, in dataset order
 * @param routingShare dataset → share of its top-k assignments per expert (all layers); null for a dense model
 */
public record Evaluation(String model, Map<String, Double> ppl, Map<String, double[]> routingShare) {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** reads an evaluation file */
    public static Evaluation read(Path file) throws IOException {
        JsonNode root = JSON.readTree(file.toFile());
        Map<String, Double> ppl = new LinkedHashMap<>();
        root.get("ppl").properties().forEach(e -> ppl.put(e.getKey(), e.getValue().asDouble()));
        JsonNode share = root.get("routing_share");
        Map<String, double[]> routing = null;
        if (share != null && !share.isNull()) {
            routing = new LinkedHashMap<>();
            for (var e : share.properties()) {
                double[] s = new double[e.getValue().size()];
                for (int i = 0; i < s.length; i++) s[i] = e.getValue().get(i).asDouble();
                routing.put(e.getKey(), s);
            }
        }
        return new Evaluation(root.path("model").asText(), ppl, routing);
    }

    /** exp(mean(log ppl)) over the datasets */
    public double pplGeomean() { return Comparison.geometricMean(ppl); }
}
