package dive.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A tokenizer.json "pre_tokenizer": splits a normalized piece of text into words for the model. */
interface PreTokenizer {
    /** GPT-2's split pattern, used by ByteLevel when use_regex is true. */
    Pattern GPT2_PATTERN = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS);

    /**
     * Appends the words of {@code text} to {@code out}. {@code atStart} says the piece begins at offset 0 of the
     * original text (Metaspace's prepend_scheme "first" prepends only there).
     */
    void split(String text, boolean atStart, List<String> out);

    enum Behavior { REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS }

    record Sequence(List<PreTokenizer> steps) implements PreTokenizer {
        public void split(String text, boolean atStart, List<String> out) {
            List<String> pieces = List.of(text);
            for (PreTokenizer step : steps) {
                List<String> next = new ArrayList<>();
                for (int i = 0; i < pieces.size(); i++) step.split(pieces.get(i), atStart && i == 0, next);
                pieces = next;
            }
            out.addAll(pieces);
        }
    }

    record ByteLevelSplit(boolean addPrefixSpace, boolean useRegex) implements PreTokenizer {
        public void split(String text, boolean atStart, List<String> out) {
            if (addPrefixSpace && !text.startsWith(" ")) text = " " + text;
            if (!useRegex) {
                out.add(ByteLevel.encode(text));
                return;
            }
            List<String> words = new ArrayList<>();
            splitByPattern(text, GPT2_PATTERN, false, Behavior.ISOLATED, words);
            for (String w : words) out.add(ByteLevel.encode(w));
        }
    }

    record Split(Pattern pattern, Behavior behavior, boolean invert) implements PreTokenizer {
        public void split(String text, boolean atStart, List<String> out) {
            splitByPattern(text, pattern, invert, behavior, out);
        }
    }

    /** SentencePiece's whitespace handling: ' ' becomes '▁', and a '▁' is prepended per prepend_scheme. */
    record Metaspace(char replacement, String prependScheme, boolean splitOnReplacement) implements PreTokenizer {
        public void split(String text, boolean atStart, List<String> out) {
            if (text.isEmpty()) return;
            text = text.replace(' ', replacement);
            boolean prepend = prependScheme.equals("always") || (prependScheme.equals("first") && atStart);
            if (prepend && text.charAt(0) != replacement) text = replacement + text;
            if (!splitOnReplacement) {
                out.add(text);
                return;
            }
            int start = 0; // each '▁' starts a new word (MergedWithNext)
            for (int i = 1; i < text.length(); i++) {
                if (text.charAt(i) == replacement) {
                    out.add(text.substring(start, i));
                    start = i;
                }
            }
            out.add(text.substring(start));
        }
    }

    /** Splits text at the matches of pattern, then groups matches and gaps as HF's SplitDelimiterBehavior. */
    static void splitByPattern(String text, Pattern pattern, boolean invert, Behavior behavior, List<String> out) {
        // spans: start, end, isMatch
        List<int[]> spans = new ArrayList<>();
        Matcher m = pattern.matcher(text);
        int last = 0;
        while (m.find()) {
            if (m.end() == m.start()) continue;
            if (m.start() > last) spans.add(new int[] {last, m.start(), invert ? 1 : 0});
            spans.add(new int[] {m.start(), m.end(), invert ? 0 : 1});
            last = m.end();
        }
        if (last < text.length()) spans.add(new int[] {last, text.length(), invert ? 1 : 0});

        List<int[]> pieces = new ArrayList<>();
        switch (behavior) {
            case ISOLATED -> pieces = spans;
            case REMOVED -> { for (int[] s : spans) if (s[2] == 0) pieces.add(s); }
            case MERGED_WITH_PREVIOUS -> {
                boolean previousMatch = false;
                for (int[] s : spans) {
                    boolean isMatch = s[2] == 1;
                    if (isMatch && !previousMatch && !pieces.isEmpty()) pieces.getLast()[1] = s[1];
                    else pieces.add(s.clone());
                    previousMatch = isMatch;
                }
            }
            case MERGED_WITH_NEXT -> {
                boolean previousMatch = false;
                for (int i = spans.size() - 1; i >= 0; i--) {
                    int[] s = spans.get(i);
                    boolean isMatch = s[2] == 1;
                    if (isMatch && !previousMatch && !pieces.isEmpty()) pieces.getLast()[0] = s[0];
                    else pieces.add(s.clone());
                    previousMatch = isMatch;
                }
                java.util.Collections.reverse(pieces);
            }
            case CONTIGUOUS -> {
                boolean previousMatch = false;
                for (int[] s : spans) {
                    boolean isMatch = s[2] == 1;
                    if (isMatch && previousMatch && !pieces.isEmpty()) pieces.getLast()[1] = s[1];
                    else pieces.add(s.clone());
                    previousMatch = isMatch;
                }
            }
        }
        for (int[] p : pieces) if (p[1] > p[0]) out.add(text.substring(p[0], p[1]));
    }

    /** Parses the "pre_tokenizer" field; null when the field is null. */
    static PreTokenizer parse(JsonNode node, String path, JsonSpec spec) throws TokenizerFormatException {
        if (node == null || node.isNull()) return null;
        String type = spec.type(node, path);
        switch (type) {
            case "Sequence": {
                JsonNode items = spec.required(node, "pretokenizers", path);
                List<PreTokenizer> steps = new ArrayList<>();
                for (int i = 0; i < items.size(); i++) {
                    PreTokenizer p = parse(items.get(i), path + ".pretokenizers[" + i + "]", spec);
                    if (p != null) steps.add(p);
                }
                return new Sequence(List.copyOf(steps));
            }
            case "ByteLevel":
                return new ByteLevelSplit(spec.bool(node, "add_prefix_space", path, true),
                        spec.bool(node, "use_regex", path, true));
            case "Split": {
                String behavior = spec.text(node, "behavior", path);
                Behavior b = switch (behavior) {
                    case "Removed" -> Behavior.REMOVED;
                    case "Isolated" -> Behavior.ISOLATED;
                    case "MergedWithPrevious" -> Behavior.MERGED_WITH_PREVIOUS;
                    case "MergedWithNext" -> Behavior.MERGED_WITH_NEXT;
                    case "Contiguous" -> Behavior.CONTIGUOUS;
                    default -> throw spec.unsupported(path + ".behavior", behavior,
                            "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
                };
                return new Split(spec.pattern(node, "pattern", path), b, spec.bool(node, "invert", path, false));
            }
            case "Metaspace": {
                String replacement = spec.text(node, "replacement", path);
                if (replacement.length() != 1) throw spec.error(path + ".replacement", "must be one character, found '" + replacement + "'");
                String scheme = spec.optionalText(node, "prepend_scheme", path);
                if (scheme == null) scheme = spec.bool(node, "add_prefix_space", path, true) ? "always" : "never";
                if (!scheme.equals("always") && !scheme.equals("first") && !scheme.equals("never")) {
                    throw spec.unsupported(path + ".prepend_scheme", scheme, "always, first or never");
                }
                return new Metaspace(replacement.charAt(0), scheme, spec.bool(node, "split", path, true));
            }
            default:
                throw spec.unsupported(path + ".type", type, "Sequence, ByteLevel, Split or Metaspace");
        }
    }
}
