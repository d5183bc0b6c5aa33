package dive.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A tokenizer.json "normalizer": a text to text transform applied before pre-tokenization. */
interface Normalizer {
    String normalize(String text);

    record Sequence(List<Normalizer> normalizers) implements Normalizer {
        public String normalize(String text) {
            for (Normalizer n : normalizers) text = n.normalize(text);
            return text;
        }
    }

    /** Prepends to every non-empty piece (Llama-2 uses it with "▁"). */
    record Prepend(String prefix) implements Normalizer {
        public String normalize(String text) {
            return text.isEmpty() ? text : prefix + text;
        }
    }

    record Replace(Pattern pattern, String content) implements Normalizer {
        public String normalize(String text) {
            return pattern.matcher(text).replaceAll(Matcher.quoteReplacement(content));
        }
    }

    record Unicode(java.text.Normalizer.Form form) implements Normalizer {
        public String normalize(String text) {
            return java.text.Normalizer.normalize(text, form);
        }
    }

    record Lowercase() implements Normalizer {
        public String normalize(String text) {
            return text.toLowerCase(Locale.ROOT);
        }
    }

    record Strip(boolean left, boolean right) implements Normalizer {
        public String normalize(String text) {
            int start = 0, end = text.length();
            while (left && start < end && Utf8.isWhitespace(text.codePointAt(start))) start += Character.charCount(text.codePointAt(start));
            while (right && end > start && Utf8.isWhitespace(text.codePointBefore(end))) end -= Character.charCount(text.codePointBefore(end));
            return text.substring(start, end);
        }
    }

    /** Parses the "normalizer" field; null when the field is null. */
    static Normalizer parse(JsonNode node, String path, JsonSpec spec) throws TokenizerFormatException {
        if (node == null || node.isNull()) return null;
        String type = spec.type(node, path);
        switch (type) {
            case "Sequence": {
                JsonNode items = spec.required(node, "normalizers", path);
                List<Normalizer> list = new ArrayList<>();
                for (int i = 0; i < items.size(); i++) {
                    Normalizer n = parse(items.get(i), path + ".normalizers[" + i + "]", spec);
                    if (n != null) list.add(n);
                }
                return new Sequence(List.copyOf(list));
            }
            case "Prepend": return new Prepend(spec.text(node, "prepend", path));
            case "Replace": return new Replace(spec.pattern(node, "pattern", path), spec.text(node, "content", path));
            case "NFC": return new Unicode(java.text.Normalizer.Form.NFC);
            case "NFD": return new Unicode(java.text.Normalizer.Form.NFD);
            case "NFKC": return new Unicode(java.text.Normalizer.Form.NFKC);
            case "NFKD": return new Unicode(java.text.Normalizer.Form.NFKD);
            case "Lowercase": return new Lowercase();
            case "Strip": return new Strip(spec.bool(node, "left", path, true), spec.bool(node, "right", path, true));
            default:
                throw spec.unsupported(path + ".type", type, "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase or Strip");
        }
    }
}
