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

    /** the message on one line ({@link dive.util.Messages#oneLine}) */
    static String oneLine(String message) { return dive.util.Messages.oneLine(message); }
}
