package dive.tokenizer;

import java.nio.charset.StandardCharsets;

/** UTF-8 helpers that behave like Rust's {@code String::from_utf8_lossy} and Python's {@code errors='replace'}. */
final class Utf8 {
    static final char REPLACEMENT = '\uFFFD';

    private Utf8() {}

    /**
     * Decodes UTF-8, replacing each maximal ill-formed subsequence (Unicode "substitution of maximal subparts")
     * by one U+FFFD, exactly as Rust's from_utf8_lossy and Python's bytes.decode(errors='replace') do.
     */
    static String decodeLossy(byte[] bytes, int length) {
        StringBuilder out = new StringBuilder(length);
        int i = 0;
        while (i < length) {
            int lead = bytes[i] & 0xFF;
            if (lead < 0x80) {
                out.append((char) lead);
                i++;
                continue;
            }
            int continuationCount;
            int secondLow = 0x80, secondHigh = 0xBF; // allowed range of the first continuation byte
            if (lead >= 0xC2 && lead <= 0xDF) {
                continuationCount = 1;
            } else if (lead == 0xE0) {
                continuationCount = 2; secondLow = 0xA0;          // no overlong 3-byte forms
            } else if (lead == 0xED) {
                continuationCount = 2; secondHigh = 0x9F;         // no UTF-16 surrogates
            } else if (lead >= 0xE1 && lead <= 0xEF) {
                continuationCount = 2;
            } else if (lead == 0xF0) {
                continuationCount = 3; secondLow = 0x90;          // no overlong 4-byte forms
            } else if (lead >= 0xF1 && lead <= 0xF3) {
                continuationCount = 3;
            } else if (lead == 0xF4) {
                continuationCount = 3; secondHigh = 0x8F;         // nothing above U+10FFFF
            } else {
                out.append(REPLACEMENT);
                i++;
                continue;
            }
            int codePoint = lead & (continuationCount == 1 ? 0x1F : continuationCount == 2 ? 0x0F : 0x07);
            int next = i + 1;
            int seen = 0;
            while (seen < continuationCount && next < length) {
                int b = bytes[next] & 0xFF;
                boolean valid = seen == 0 ? (b >= secondLow && b <= secondHigh) : (b >= 0x80 && b <= 0xBF);
                if (!valid) break;
                codePoint = (codePoint << 6) | (b & 0x3F);
                next++;
                seen++;
            }
            if (seen == continuationCount) {
                out.appendCodePoint(codePoint);
            } else {
                out.append(REPLACEMENT); // the lead byte and the valid continuation bytes seen so far
            }
            i = next;
        }
        return out.toString();
    }

    static String decodeLossy(byte[] bytes) {
        return decodeLossy(bytes, bytes.length);
    }

    /** Java strings may hold unpaired surrogates, which have no UTF-8 form: each becomes U+FFFD. */
    static String replaceLoneSurrogates(String text) {
        StringBuilder out = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            boolean paired = Character.isHighSurrogate(c) && i + 1 < text.length()
                    && Character.isLowSurrogate(text.charAt(i + 1));
            if (paired) {
                if (out != null) out.append(c).append(text.charAt(i + 1));
                i++;
            } else if (Character.isSurrogate(c)) {
                if (out == null) out = new StringBuilder(text.length()).append(text, 0, i);
                out.append(REPLACEMENT);
            } else if (out != null) {
                out.append(c);
            }
        }
        return out == null ? text : out.toString();
    }

    static byte[] encode(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    /** Unicode White_Space, as Rust's char::is_whitespace. */
    static boolean isWhitespace(int c) {
        return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
                || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F
                || c == 0x3000;
    }
}
