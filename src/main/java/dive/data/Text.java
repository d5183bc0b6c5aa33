package dive.data;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** Text clean-up shared by every extractor: decoding, whitespace normalisation, splitting long documents into parts. */
public final class Text {
    private Text() {}

    /** documents shorter than this (in chars, after normalisation) are dropped as near-empty */
    public static final int MIN_DOCUMENT_CHARS = 100;
    /** longer documents are split into parts of at most this many UTF-8 bytes, at paragraph or line boundaries */
    public static final int MAX_PART_BYTES = 16 * 1024;
    /** at most this many parts are kept from one source document, so one file cannot dominate a dataset */
    public static final int MAX_PARTS = 64;

    /** strict UTF-8; bytes that are not valid UTF-8 are read as ISO-8859-1 (older fortune and man files) */
    public static String decode(byte[] bytes) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            return new String(bytes, StandardCharsets.ISO_8859_1);
        }
    }

    /**
     * Normalises line ends to {@code \n}, drops a byte-order mark and control characters other than tab and newline,
     * strips trailing spaces of every line, collapses runs of blank lines to one blank line and trims blank lines at
     * both ends. Leading indentation is kept (it matters in code).
     */
    public static String normalize(String text) {
        String s = text.replace("\r\n", "\n").replace('\r', '\n');
        StringBuilder out = new StringBuilder(s.length());
        int blankRun = 0;
        for (String line : s.split("\n", -1)) {
            StringBuilder clean = new StringBuilder(line.length());
            for (int i = 0; i < line.length(); i++) {
                char c = line.charAt(i);
                if (c == '\t' || (c >= 0x20 && c != 0x7f && c != 0xfeff && !(c >= 0x80 && c < 0xa0))) clean.append(c);
            }
            int end = clean.length();
            while (end > 0 && Character.isWhitespace(clean.charAt(end - 1))) end--;
            clean.setLength(end);
            if (end == 0) {
                blankRun++;
                continue;
            }
            if (out.length() > 0 && blankRun > 0) out.append('\n');
            blankRun = 0;
            out.append(clean).append('\n');
        }
        return out.toString();
    }

    static int utf8Length(CharSequence s) {
        int n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < 0x80) n += 1;
            else if (c < 0x800) n += 2;
            else if (Character.isHighSurrogate(c)) { n += 4; i++; }
            else n += 3;
        }
        return n;
    }

    /**
     * Cleans {@code text} and adds it to {@code out} as one document {@code id}, or as parts {@code id#1}, {@code id#2}, …
     * of at most {@link #MAX_PART_BYTES} when it is longer; near-empty documents (and parts) are dropped.
     */
    public static void addDocument(List<Document> out, String id, String text) {
        String clean = normalize(text);
        if (clean.length() < MIN_DOCUMENT_CHARS) return;
        List<String> parts = splitParts(clean, MAX_PART_BYTES);
        if (parts.size() == 1) {
            out.add(new Document(id, parts.get(0)));
            return;
        }
        for (int p = 0; p < parts.size() && p < MAX_PARTS; p++) {
            if (parts.get(p).length() >= MIN_DOCUMENT_CHARS) out.add(new Document(id + "#" + (p + 1), parts.get(p)));
        }
    }

    /**
     * Splits normalised text into consecutive pieces of at most {@code maxBytes} UTF-8 bytes: at a blank line where
     * possible, else at a line end, else (one enormous line) at a character boundary. Concatenating the pieces with
     * the blank lines or newlines they were cut at gives the text back.
     */
    static List<String> splitParts(String text, int maxBytes) {
        List<String> parts = new ArrayList<>();
        if (utf8Length(text) <= maxBytes) {
            parts.add(text);
            return parts;
        }
        int start = 0;
        while (start < text.length()) {
            // find the longest prefix from start that fits
            int limit = start, bytes = 0;
            while (limit < text.length()) {
                char c = text.charAt(limit);
                int w = c < 0x80 ? 1 : c < 0x800 ? 2 : Character.isHighSurrogate(c) ? 4 : 3;
                if (bytes + w > maxBytes) break;
                bytes += w;
                limit += Character.isHighSurrogate(c) ? 2 : 1;
            }
            if (limit >= text.length()) {
                parts.add(text.substring(start));
                break;
            }
            int cut = text.lastIndexOf("\n\n", limit - 1);
            int next;
            if (cut > start) { next = cut + 2; cut = cut + 1; }
            else {
                cut = text.lastIndexOf('\n', limit - 1);
                if (cut > start) next = cut + 1;
                else { cut = limit; next = limit; }
                if (cut == next - 1) cut = cut + 1; // keep the newline at the end of the part
            }
            parts.add(text.substring(start, cut));
            start = next;
        }
        return parts;
    }
}
