package dive.util;

/** a run's memory plan does not fit this machine (the message is one line naming both figures and what to lower) */
public final class MemoryPlanException extends RuntimeException {
    public MemoryPlanException(String message) { super(message); }
}
