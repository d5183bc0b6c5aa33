package dive.convert;

/**
 * The ablation "DIVE without affinity mining" (DIVE-METHOD.md section 6): DIVE's experts built from groups formed at
 * random. It runs as a whole DIVE conversion of its own in {@code OUT/dive_random_groups/} (recipe grouping: random, no
 * other methods), so that folder reads like any DIVE run (convert.json, groups.json, report.json, report.md).
 */
public final class DiveRandomGroupsMethod implements Method {
    public static final String NAME = "dive_random_groups";

    @Override public String name() { return NAME; }

    @Override public Family family() { return Family.MOE; }

    @Override public String grouping(ConvertRecipe recipe) { return "random"; }

    @Override public String buildFolder() { return "experts"; }

    @Override public String variant(Context c) { return "DIVE with grouping: random (no affinity mining)"; }

    @Override public ConvertRecipe ownConversion(ConvertRecipe recipe) { return recipe.withRandomGroupingOnly(); }

    @Override public void build(BuildContext c) throws Exception { new DiveMethod().build(c); }
}
