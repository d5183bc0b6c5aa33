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

    /** "file: rule" */
    static SafetensorsException of(Path file, String rule) {
        return new SafetensorsException(file + ": " + rule);
    }

    /** "file: tensor 'name': rule" */
    static SafetensorsException of(Path file, String tensorName, String rule) {
        return new SafetensorsException(file + ": tensor '" + tensorName + "': " + rule);
    }
}
