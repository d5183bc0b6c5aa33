package dive.convert;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/** The conversion methods a recipe may name (recipe key {@code methods}), each mapped to its {@link Method} class. */
public final class Methods {
    private Methods() {}

    private static final Map<String, Supplier<Method>> BY_NAME = new LinkedHashMap<>();
    static {
        BY_NAME.put(DiveMethod.NAME, DiveMethod::new);
        BY_NAME.put(FlapMethod.NAME, FlapMethod::new);
        BY_NAME.put(LlmPrunerMethod.NAME, LlmPrunerMethod::new);
        BY_NAME.put("llama_moe_random", LlamaMoeMethod::random);
        BY_NAME.put("llama_moe_kmeans", LlamaMoeMethod::kmeans);
        BY_NAME.put(DiveRandomGroupsMethod.NAME, DiveRandomGroupsMethod::new);
        BY_NAME.put(DiveSharedMethod.NAME, DiveSharedMethod::new);
        BY_NAME.put(CmoeMethod.NAME, CmoeMethod::new);
    }

    /** every known name, dive first */
    public static final List<String> NAMES = List.copyOf(BY_NAME.keySet());

    /** the baselines that run beside DIVE (every name but dive) */
    public static final List<String> BASELINES = NAMES.subList(1, NAMES.size());

    /**
     * the method named {@code name}; an unknown name is refused naming {@code field} (the recipe field, e.g.
     * "recipe.yaml: methods") and the known names
     */
    public static Method byName(String name, String field) {
        Supplier<Method> m = BY_NAME.get(name);
        if (m == null) throw new IllegalArgumentException(field + ": unknown method '" + name + "' (expected dive or one of " + BASELINES + ")");
        return m.get();
    }

    /** the methods of {@code recipe}, in its order */
    public static List<Method> of(ConvertRecipe recipe) {
        List<Method> methods = new ArrayList<>();
        for (String name : recipe.methods()) methods.add(byName(name, "recipe methods"));
        return methods;
    }
}
