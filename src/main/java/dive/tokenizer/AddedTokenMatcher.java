package dive.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Splits text on added tokens, leftmost-longest as HF's AddedVocabulary does (with its single_word, lstrip and
 * rstrip options), into token segments and the text between them.
 */
final class AddedTokenMatcher {
    /** A piece of text ({@code tokenId} -1) or an added token; {@code start} is its offset in the split text. */
    record Segment(int tokenId, String text, int start) {}

    private final Map<Character, List<Tokenizer.AddedToken>> byFirstChar = new HashMap<>();

    AddedTokenMatcher(List<Tokenizer.AddedToken> tokens) {
        for (Tokenizer.AddedToken t : tokens) {
            if (t.content().isEmpty()) continue;
            byFirstChar.computeIfAbsent(t.content().charAt(0), c -> new ArrayList<>()).add(t);
        }
        for (List<Tokenizer.AddedToken> list : byFirstChar.values()) {
            list.sort(Comparator.comparingInt((Tokenizer.AddedToken t) -> t.content().length()).reversed());
        }
    }

    List<Segment> split(String text) {
        List<Segment> segments = new ArrayList<>();
        if (byFirstChar.isEmpty()) {
            segments.add(new Segment(-1, text, 0));
            return segments;
        }
        int textStart = 0; // start of the text not yet emitted
        int i = 0;
        while (i < text.length()) {
            Tokenizer.AddedToken match = longestAt(text, i);
            if (match == null) {
                i++;
                continue;
            }
            int start = i, stop = i + match.content().length();
            i = stop;
            if (match.singleWord() && (isWordCharBefore(text, start) || isWordCharAt(text, stop))) continue;
            if (match.lstrip()) {
                while (start > textStart && Utf8.isWhitespace(text.codePointBefore(start))) {
                    start -= Character.charCount(text.codePointBefore(start));
                }
            }
            if (match.rstrip()) {
                while (stop < text.length() && Utf8.isWhitespace(text.codePointAt(stop))) {
                    stop += Character.charCount(text.codePointAt(stop));
                }
                i = stop;
            }
            if (start > textStart) segments.add(new Segment(-1, text.substring(textStart, start), textStart));
            segments.add(new Segment(match.id(), match.content(), start));
            textStart = stop;
        }
        if (textStart < text.length()) segments.add(new Segment(-1, text.substring(textStart), textStart));
        return segments;
    }

    private Tokenizer.AddedToken longestAt(String text, int i) {
        List<Tokenizer.AddedToken> candidates = byFirstChar.get(text.charAt(i));
        if (candidates == null) return null;
        for (Tokenizer.AddedToken t : candidates) {
            if (text.startsWith(t.content(), i)) return t;
        }
        return null;
    }

    private static boolean isWordCharBefore(String text, int i) {
        return i > 0 && isWordChar(text.codePointBefore(i));
    }

    private static boolean isWordCharAt(String text, int i) {
        return i < text.length() && isWordChar(text.codePointAt(i));
    }

    private static boolean isWordChar(int cp) {
        return Character.isLetterOrDigit(cp) || cp == '_';
    }
}
