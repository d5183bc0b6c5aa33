package dive.convert;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.model.LlamaModel;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The CMoE carving of the gqa fixture (hidden 48, FFN 80, 2 layers) against an independent Python re-implementation
 * (src/test/python/make_cmoe_fixture.py: transformers' h, dense markers, Hungarian method on the square assignment
 * problem with repeated cost columns, L1 representatives). The activation counts, shared expert and optimal assignment
 * cost must match exactly; the integer L1 costs leave several optimal assignments, so experts (and their representatives
 * and router rows) are compared where both solvers chose the same one.
 */
class CmoePythonReferenceTest {
    static final Path MODEL = Path.of("src/test/resources/llama/gqa");
    static final Path EXPECTED = Path.of("src/test/resources/cmoe/gqa/expected.json");

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    @Test
    void carvingMatchesTheReference() throws Exception {
        JsonNode expected = new ObjectMapper().readTree(EXPECTED.toFile());
        List<int[]> windows = new ArrayList<>();
        for (JsonNode w : expected.get("windows")) windows.add(ints(w));
        try (LlamaModel dense = LlamaModel.load(MODEL, Backends.create("vector"))) {
            int k = expected.get("k_act").asInt();
            CmoeSettings settings = CmoeSettings.fromName(expected.get("setting").asText(), 80).withActiveNeurons(k);
            CmoeActivations[] acts = CmoeActivations.collect(dense, windows, k, done -> {});
            CmoeCarving.Result result = CmoeCarving.carve(dense, acts, settings);
            for (int l = 0; l < 2; l++) {
                JsonNode want = expected.get("layers").get(l);
                CmoeLayer got = result.layers()[l];
                long[] counts = acts[l].activationCounts();
                assertArrayEquals(ints(want.get("counts")), java.util.Arrays.stream(counts).mapToInt(c -> (int) c).toArray(), "layer " + l + " counts");
                assertArrayEquals(ints(want.get("shared")), got.shared(), "layer " + l + " shared");
                int[] seeds = ints(want.get("seeds"));
                // the same optimal total L1 distance to the seeds; where the optimum is not unique the experts may differ
                long cost = 0;
                for (int e = 0; e < got.numExperts(); e++)
                    for (int j : got.experts()[e])
                        for (int n = 0; n < acts[l].tokens(); n++) {
                            int[] marked = acts[l].markers(n);
                            boolean a = java.util.Arrays.binarySearch(marked, j) >= 0, b = java.util.Arrays.binarySearch(marked, seeds[e]) >= 0;
                            if (a != b) cost++;
                        }
                assertEquals(want.get("optimal_cost").asLong(), cost, "layer " + l + " assignment cost");
                int same = 0;
                for (int e = 0; e < got.numExperts(); e++) {
                    if (!java.util.Arrays.equals(ints(want.get("experts").get(e)), got.experts()[e])) continue;
                    same++;
                    assertEquals(want.get("representatives").get(e).asInt(), got.representatives()[e], "layer " + l + " representative " + e);
                    for (int i = 0; i < 48; i++) {
                        assertEquals(want.get("router_gate").get(e).get(i).asDouble(), got.routerGate()[e * 48 + i], 1e-6);
                        assertEquals(want.get("router_up").get(e).get(i).asDouble(), got.routerUp()[e * 48 + i], 1e-6);
                    }
                }
                assertTrue(same >= 1, "layer " + l + ": no expert as the reference's");  // ties between optima: some, not all
                // every representative: the member nearest (L1) to its expert's mean marker column, first minimum
                for (int e = 0; e < got.numExperts(); e++) {
                    int[] members = got.experts()[e];
                    double best = Double.MAX_VALUE;
                    int rep = -1;
                    for (int j : members) {
                        double dist = 0;
                        for (int n = 0; n < acts[l].tokens(); n++) {
                            int[] marked = acts[l].markers(n);
                            double mean = 0;
                            for (int u : members) if (java.util.Arrays.binarySearch(marked, u) >= 0) mean++;
                            dist += Math.abs((java.util.Arrays.binarySearch(marked, j) >= 0 ? 1 : 0) - mean / members.length);
                        }
                        if (dist < best - 1e-9) { best = dist; rep = j; }
                    }
                    assertEquals(rep, got.representatives()[e], "layer " + l + " representative of expert " + e);
                }
            }
        }
    }
}
