package dive.serve;

/** A request the {@link BatchEngine} did not take, and why (a service maps the reason to its status code). */
public final class RejectedException extends RuntimeException {
    public enum Reason {
        /** the queue of waiting requests is full: try again later (HTTP 429) */
        QUEUE_FULL,
        /** prompt plus max_tokens pass the model's context or the engine's whole KV-cache budget (HTTP 413 / 400) */
        TOO_LONG,
        /** the engine is closing or closed (HTTP 503) */
        CLOSED
    }

    private final Reason reason;

    public RejectedException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }

    public Reason reason() { return reason; }
}
