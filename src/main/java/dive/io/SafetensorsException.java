package dive.io;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A safetensors file, index or checkpoint directory breaks a rule of the format. The message
 * names the file, the tensor when there is one, and the rule broken.
 */
public final class SafetensorsException extends IOException {
    public SafetensorsException(String message) { super(message); }
    public SafetensorsException(String message, Throwable cause) { super(message, cause); }

    /** "file: rule", on one line */
    static SafetensorsException of(Path file, String rule) {
        return new SafetensorsException(oneLine(file + ": " + rule));
    }

    /** "file: tensor 'name': rule", on one line */
    static SafetensorsException of(Path file, String tensorName, String rule) {
        return new SafetensorsException(oneLine(file + ": tensor '" + tensorName + "': " + rule));
    }

    /**
     * the message on one line: control characters (a tensor name or a JSON value of the header may hold them) written
     * as escapes; a message past 1000 characters is cut there
     */
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
}
