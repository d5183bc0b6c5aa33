package dive.model;

/** A model configuration file is unreadable, incomplete or asks for something the engine does not do. */
public class ConfigException extends IllegalArgumentException {
    private final String file;
    private final String field;

    /** @param file the config file (or another source name); @param field the JSON key at fault, or null */
    public ConfigException(String file, String field, String message) {
        super(oneLine(file + (field == null ? "" : ": field '" + field + "'") + ": " + message));
        this.file = file;
        this.field = field;
    }

    public String file() { return file; }

    /** the message on one line: control characters (from a value of the file) written as escapes, very long runs cut */
    static String oneLine(String message) {
        StringBuilder out = new StringBuilder(Math.min(message.length(), 1000));
        for (int i = 0; i < message.length(); i++) {
            if (out.length() >= 1000) return out.append("…").toString();
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

    /** the JSON key at fault, or null when the whole file is */
    public String field() { return field; }
}
