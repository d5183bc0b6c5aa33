package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One method's entry in report.json ({@link #toJson} writes it in the report's key order).
 *
 * @param grouping                  the DIVE methods: how the experts' datasets were grouped; null for the others
 * @param variant                   how the method built its model (the baselines; DIVE's ablation with random groups); null for DIVE
 * @param pplBefore                 held-out perplexity per dataset of the built model before any retraining
 * @param pplAfter                  the same after retraining (of the exported model)
 * @param routingShareBefore        the DIVE methods: routing share per dataset and expert before retraining
 * @param routingShare              routing share after retraining; null for a dense model
 * @param export                    the exported model's folder
 * @param exportFormat              its format, in words
 * @param expertLoadDuringTraining  per stage, the last training evaluation's expert load per dataset (from the stages'
 *                                  train-log.jsonl); null for a dense model
 */
public record MethodResult(Grouping grouping, String variant, Map<String, Double> pplBefore, Map<String, Double> pplAfter,
                           long paramsTotal, long paramsActive, long trainingTokens, Map<String, double[]> routingShareBefore,
                           Map<String, double[]> routingShare, Path export, String exportFormat, Map<String, Map<String, JsonNode>> expertLoadDuringTraining) {

    /**
     * @param grouping         affinity, random or file
     * @param groups           group g's dataset names (expert g)
     * @param outputScale      what the output scale is, when the recipe asks for one (else null)
     */
    public record Grouping(String grouping, List<List<String>> groups, boolean biasCompensation, String outputScale) {}

    /** the geometric mean over the datasets of the perplexity after retraining */
    public double pplGeomean() { return Comparison.geometricMean(pplAfter); }

    /** this entry with {@code variant} */
    public MethodResult withVariant(String v) {
        return new MethodResult(grouping, v, pplBefore, pplAfter, paramsTotal, paramsActive, trainingTokens, routingShareBefore, routingShare,
                export, exportFormat, expertLoadDuringTraining);
    }

    /**
     * the entry as report.json holds it: the DIVE methods start with their grouping, the baselines with their variant; the
     * DIVE ablation's variant comes last
     */
    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        if (grouping == null && variant != null) m.put("variant", variant);
        if (grouping != null) {
            m.put("grouping", grouping.grouping());
            m.put("groups", grouping.groups());
            m.put("bias_compensation", grouping.biasCompensation());
            if (grouping.outputScale() != null) m.put("output_scale", grouping.outputScale());
        }
        m.put("ppl_before_retraining", pplBefore);
        m.put("ppl_after_retraining", pplAfter);
        m.put("params_total", paramsTotal);
        m.put("params_active", paramsActive);
        m.put("training_tokens", trainingTokens);
        if (grouping != null) {
            m.put("routing_share_before_retraining", routingShareBefore);
            m.put("routing_share", routingShare);
        } else if (routingShare != null) m.put("routing_share", routingShare);
        m.put("export", export.toString());
        m.put("export_format", exportFormat);
        m.put("ppl_geomean", pplGeomean());
        if (routingShare != null) m.put("expert_load_during_training", expertLoadDuringTraining);
        if (grouping != null && variant != null) m.put("variant", variant);
        return m;
    }
}
