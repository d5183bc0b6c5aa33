package dive.convert;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A conversion's results: report.json ({@link #toJson} writes it in the report's key order).
 *
 * @param data        "bundled" or the corpus folder
 * @param evaluation  how the perplexities were measured, in words
 * @param methods     method name → its entry, in the recipe's order (dive first)
 */
public record ConversionResult(String model, String data, List<String> datasets, int experts, int topK, double ratio, int expertWidth,
                               String evaluation, Dense dense, Map<String, MethodResult> methods) {

    /** the dense model's entry: its held-out perplexity per dataset and its parameter counts */
    public record Dense(Map<String, Double> ppl, long paramsTotal, long paramsActive) {
        public double pplGeomean() { return Comparison.geometricMean(ppl); }
    }

    /** the geometric-mean perplexity after retraining of every method, in report order */
    public Map<String, Double> pplGeomeans() {
        Map<String, Double> g = new LinkedHashMap<>();
        methods.forEach((name, m) -> g.put(name, m.pplGeomean()));
        return g;
    }

    /** the report as report.json holds it */
    public Map<String, Object> toJson() {
        Map<String, Object> report = new LinkedHashMap<>();
        report.put("model", model);
        report.put("data", data);
        report.put("datasets", datasets);
        report.put("experts", experts);
        report.put("top_k", topK);
        report.put("ratio", ratio);
        report.put("expert_width", expertWidth);
        report.put("evaluation", evaluation);
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("ppl", dense.ppl());
        d.put("params_total", dense.paramsTotal());
        d.put("params_active", dense.paramsActive());
        d.put("ppl_geomean", dense.pplGeomean());
        report.put("dense", d);
        Map<String, Object> m = new LinkedHashMap<>();
        methods.forEach((name, entry) -> m.put(name, entry.toJson()));
        report.put("methods", m);
        return report;
    }
}
