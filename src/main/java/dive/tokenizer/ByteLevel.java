package dive.tokenizer;

/**
 * GPT-2's reversible byte to character map ("bytes_to_unicode"): printable Latin-1 bytes map to themselves,
 * the other 68 bytes to U+0100 upwards, so every byte string becomes a string of visible characters.
 */
final class ByteLevel {
    static final char[] BYTE_TO_CHAR = new char[256];
    /** index: character, value: byte, or -1 where the character is not one of the 256 */
    static final int[] CHAR_TO_BYTE = new int[256 + 68];

    static {
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char) b : (char) (256 + extra++);
            BYTE_TO_CHAR[b] = c;
            CHAR_TO_BYTE[c] = b;
        }
    }

    private ByteLevel() {}

    /** UTF-8 bytes of the text, each written as its byte-level character. */
    static String encode(String text) {
        byte[] bytes = Utf8.encode(text);
        char[] chars = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) chars[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
        return new String(chars);
    }

    static int byteOf(char c) {
        return c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
    }
}
