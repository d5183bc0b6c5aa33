package dive.train;

/** A NaN or infinite loss or gradient: the run stops, the last good checkpoint is left as it was. */
public final class TrainingDivergedException extends RuntimeException {
    public TrainingDivergedException(String message) { super(message); }
}
