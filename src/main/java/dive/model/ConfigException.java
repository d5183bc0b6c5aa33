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

    /** the message on one line ({@link dive.util.Messages#oneLine}) */
    static String oneLine(String message) { return dive.util.Messages.oneLine(message); }

    /** the JSON key at fault, or null when the whole file is */
    public String field() { return field; }
}
