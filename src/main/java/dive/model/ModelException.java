package dive.model;

/** A checkpoint does not match its configuration: a tensor missing, of the wrong shape or of an unsupported dtype. */
public class ModelException extends IllegalArgumentException {
    public ModelException(String message) { super(message); }
}
