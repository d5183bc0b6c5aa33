package dive.serve;

/** Why a completion ended. The first two are OpenAI's {@code finish_reason} values. */
public enum FinishReason {
    /** an end-of-sequence token or a stop string */
    STOP("stop"),
    /** max_tokens reached */
    LENGTH("length"),
    /** {@link Completion#cancel} (or the client went away) */
    CANCELLED("cancelled"),
    /** the request's deadline passed */
    DEADLINE("deadline");

    private final String openAi;

    FinishReason(String openAi) { this.openAi = openAi; }

    /** the name in OpenAI's responses */
    public String openAi() { return openAi; }
}
