package dive.util;

/** Error messages a user reads: always one line. */
public final class Messages {
    private Messages() {}

    /** the most characters of a message kept; the rest is cut (a value from a file may be huge) */
    public static final int MAX_CHARS = 1000;

    /**
     * the message on one line: control characters (a value of the file being read may hold them) written as escapes,
     * a message past {@value #MAX_CHARS} characters cut there with "…"
     */
    public static String oneLine(String message) {
        StringBuilder out = new StringBuilder(Math.min(message.length(), MAX_CHARS));
        for (int i = 0; i < message.length(); i++) {
            if (out.length() >= MAX_CHARS) return out.append("…").toString();
            char c = message.charAt(i);
            switch (c) {
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (Character.isISOControl(c) || c == '\u2028' || c == '\u2029') out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
                }
            }
        }
        return out.toString();
    }
}
