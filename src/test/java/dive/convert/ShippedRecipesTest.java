package dive.convert;

import dive.data.Corpus;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The recipes the README's commands use parse, and keep the promises the README makes about them. */
class ShippedRecipesTest {
    private static final List<String> ALL_METHODS = List.of("dive", "flap", "llm_pruner", "llama_moe_random", "llama_moe_kmeans", "dive_random_groups");

    @Test
    void demoRecipeIsTheComparisonPlansFirstSeedWithFewerMethods() throws Exception {
        ConvertRecipe demo = ConvertRecipe.bundled(ConvertRecipe.DEMO_RESOURCE);
        Comparison.Plan plan = Comparison.Plan.load(Path.of("src/main/recipes/comparison.yaml"));
        assertEquals(List.of("dive", "flap", "llm_pruner", "dive_random_groups"), demo.methods());
        assertTrue(plan.convert().methods().containsAll(demo.methods()));
        assertEquals(plan.seeds().get(0).longValue(), demo.seed(), "the demo is the plan's first seed");
        var a = new java.util.LinkedHashMap<>(plan.convert().toJson());
        var b = new java.util.LinkedHashMap<>(demo.toJson());
        for (var m : List.of(a, b)) { m.remove("methods"); m.remove("seed"); }
        assertEquals(a, b, "every other setting equal to the comparison plan's");
    }

    @Test
    void comparisonPlanHasTwoSettingsThreeSeedsAndTwoDatasetsPerExpert() throws Exception {
        Comparison.Plan p = Comparison.Plan.load(Path.of("src/main/recipes/comparison.yaml"));
        assertEquals(List.of(new Comparison.Setting(8, 1, 0.5), new Comparison.Setting(8, 2, 0.75)), p.settings());
        assertTrue(p.seeds().size() >= 3, "at least 3 seeds: " + p.seeds());
        assertEquals(ALL_METHODS, p.convert().methods());
        int datasets = Corpus.bundled().datasets().size();
        for (Comparison.Setting s : p.settings())
            assertTrue(datasets >= 2 * s.experts(), datasets + " bundled datasets for " + s.experts() + " experts: expected ≥ 2 per expert");
    }

    @Test
    void outputScalePlanIsTheComparisonsTopTwoSettingWithOnlyTheScaleAndTheMethodsChanged() throws Exception {
        Comparison.Plan full = Comparison.Plan.load(Path.of("src/main/recipes/comparison.yaml"));
        Comparison.Plan scaled = Comparison.Plan.load(Path.of("src/main/recipes/comparison-output-scale.yaml"));
        assertEquals(List.of(new Comparison.Setting(8, 2, 0.75)), scaled.settings());
        assertEquals(full.seeds(), scaled.seeds());
        assertTrue(scaled.convert().outputScale() && !full.convert().outputScale());
        assertEquals(List.of("dive", "flap", "llm_pruner", "dive_random_groups"), scaled.convert().methods());
        var a = new java.util.LinkedHashMap<>(full.convert().toJson());
        var b = new java.util.LinkedHashMap<>(scaled.convert().toJson());
        for (var m : List.of(a, b)) { m.remove("methods"); m.remove("output_scale"); }
        assertEquals(a, b, "every other setting equal to the comparison's");
    }

    /** dive_shared at top-2 with its chosen shared_share: comparison.yaml's top-2 setting, seeds and recipe otherwise */
    @Test
    void theTopTwoSharedPlanChangesOnlyMethodsAndTheShare() throws Exception {
        Comparison.Plan full = Comparison.Plan.load(Path.of("src/main/recipes/comparison.yaml"));
        Comparison.Plan p = Comparison.Plan.load(Path.of("src/main/recipes/comparison-shared-top2.yaml"));
        assertEquals(List.of(new Comparison.Setting(8, 2, 0.75)), p.settings());
        assertTrue(full.settings().containsAll(p.settings()));
        assertEquals(full.seeds(), p.seeds());
        assertEquals(List.of("dive", "dive_shared"), p.convert().methods());
        assertEquals(0.875, p.convert().sharedShare());
        var a = new java.util.LinkedHashMap<>(full.convert().toJson());
        var b = new java.util.LinkedHashMap<>(p.convert().toJson());
        for (var m : List.of(a, b)) { m.remove("methods"); m.remove("shared_share"); }
        assertEquals(a, b, "every other setting equal to the comparison's");
    }

    /** the shared-expert plans and the training-free plan change only their methods (and, training-free, the stages' tokens) */
    @Test
    void issue14PlansAreTheComparisonWithOnlyTheirMethodsChanged() throws Exception {
        Comparison.Plan full = Comparison.Plan.load(Path.of("src/main/recipes/comparison.yaml"));
        for (String name : List.of("comparison-shared", "comparison-cmoe", "comparison-training-free")) {
            Comparison.Plan p = Comparison.Plan.load(Path.of("src/main/recipes/" + name + ".yaml"));
            assertEquals(full.settings(), p.settings(), name);
            assertEquals(full.seeds(), p.seeds(), name);
            var a = new java.util.LinkedHashMap<>(full.convert().toJson());
            var b = new java.util.LinkedHashMap<>(p.convert().toJson());
            for (var m : List.of(a, b)) m.remove("methods");
            if (name.endsWith("training-free")) {
                assertEquals(full.convert().methods(), p.convert().methods());
                assertEquals(0, p.convert().stage0().tokens() + p.convert().stage1().tokens() + p.convert().stage2().tokens());
                for (var m : List.of(a, b)) { m.remove("stage0"); m.remove("stage1"); }
            }
            assertEquals(a, b, name + ": every other setting equal to the comparison's");
        }
        assertEquals(List.of("dive", "dive_shared"), Comparison.Plan.load(Path.of("src/main/recipes/comparison-shared.yaml")).convert().methods());
        assertEquals(0.5, Comparison.Plan.load(Path.of("src/main/recipes/comparison-shared.yaml")).convert().sharedShare());
        assertEquals(List.of("dive", "cmoe"), Comparison.Plan.load(Path.of("src/main/recipes/comparison-cmoe.yaml")).convert().methods());
    }
}
