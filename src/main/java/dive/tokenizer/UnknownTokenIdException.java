package dive.tokenizer;

/** An id given to decode that has no token in the tokenizer: outside the vocabulary, or in a gap of its ids. */
public final class UnknownTokenIdException extends IllegalArgumentException {
    private final int id;

    public UnknownTokenIdException(int id, String message) {
        super(message);
        this.id = id;
    }

    /** the id that has no token */
    public int id() { return id; }
}
