package dive.train;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Which parameters train, by name patterns. A pattern is a glob unless written {@code re:REGEX}:
 * in a glob {@code *} matches any run of characters (dots included) and {@code ?} one character; everything
 * else is literal. A pattern must match the WHOLE name. Examples: {@code model.layers.*.self_attn.*},
 * {@code *.lora_*}, {@code re:model\.layers\.[0-3]\..*}.
 * <p>Rule: if {@code train} patterns are given, exactly the parameters matching one of them train; then every
 * parameter matching a {@code freeze} pattern is frozen. A pattern that matches no parameter is an error
 * (it is almost always a typo).
 */
public final class ParameterPatterns {
    private ParameterPatterns() {}

    public static Pattern compile(String pattern, String key) {
        if (pattern.startsWith("re:")) {
            try { return Pattern.compile(pattern.substring(3)); }
            catch (PatternSyntaxException e) { throw new IllegalArgumentException(key + ": bad regular expression '" + pattern + "': " + e.getDescription()); }
        }
        StringBuilder regex = new StringBuilder();
        for (char c : pattern.toCharArray()) {
            if (c == '*') regex.append(".*");
            else if (c == '?') regex.append('.');
            else regex.append(Pattern.quote(String.valueOf(c)));
        }
        return Pattern.compile(regex.toString());
    }

    /** applies the rule above to {@code parameters}; returns the number of trainable parameters (tensors) */
    public static int apply(List<Parameter> parameters, List<String> trainPatterns, List<String> freezePatterns) {
        List<Pattern> train = new ArrayList<>(), freeze = new ArrayList<>();
        for (String s : trainPatterns) train.add(compile(s, "train"));
        for (String s : freezePatterns) freeze.add(compile(s, "freeze"));
        boolean[] used = new boolean[train.size() + freeze.size()];
        for (Parameter p : parameters) {
            boolean trainable = train.isEmpty();
            for (int i = 0; i < train.size(); i++) if (train.get(i).matcher(p.name()).matches()) { trainable = true; used[i] = true; }
            for (int i = 0; i < freeze.size(); i++) if (freeze.get(i).matcher(p.name()).matches()) { trainable = false; used[train.size() + i] = true; }
            p.setTrainable(trainable);
        }
        for (int i = 0; i < used.length; i++) {
            if (!used[i]) {
                String key = i < train.size() ? "train" : "freeze";
                String pattern = i < train.size() ? trainPatterns.get(i) : freezePatterns.get(i - train.size());
                throw new IllegalArgumentException(key + " pattern '" + pattern + "' matches no parameter (names look like '"
                        + (parameters.isEmpty() ? "" : parameters.getFirst().name()) + "')");
            }
        }
        int count = 0;
        for (Parameter p : parameters) if (p.trainable()) count++;
        if (count == 0) throw new IllegalArgumentException("train/freeze patterns leave no trainable parameter");
        return count;
    }
}
