package dive.serve;

import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * A submitted request as it runs in a {@link BatchEngine}: its text arrives as {@link Delta}s ({@link #deltas}, one
 * consumer) and its end as a {@link Result} ({@link #result}). Thread-safe: any thread may cancel it or wait for it.
 */
public final class Completion {
    /**
     * A piece of the completion. {@code text} is what the completion's text grew by (it may be empty while a character
     * spans several tokens or a stop string may be forming; the final delta before the end carries what was held back).
     * {@code tokens} are the new token ids since the previous delta.
     */
    public record Delta(String text, int[] tokens) {}

    /**
     * The whole completion: its text (stop string excluded), the generated ids, why it ended, the token counts
     * (OpenAI's usage), and the time from submission to the first token (null when none was made).
     */
    public record Result(String text, int[] tokens, FinishReason finishReason, int promptTokens, int completionTokens,
                         java.time.Duration timeToFirstToken) {}

    private static final Object END = new Object();

    private final long id;
    private final CompletionRequest request;
    private final long submittedNanos;
    private final CompletableFuture<Result> result = new CompletableFuture<>();
    private final LinkedBlockingQueue<Object> deltas = new LinkedBlockingQueue<>();
    private volatile boolean cancelled;
    private boolean iterated;

    Completion(long id, CompletionRequest request) {
        this.id = id;
        this.request = request;
        this.submittedNanos = System.nanoTime();
    }

    /** the engine's number for this request (unique per engine) */
    public long id() { return id; }

    public CompletionRequest request() { return request; }

    long submittedNanos() { return submittedNanos; }

    /** completes when the request ends (normally: any {@link FinishReason}; exceptionally: the engine failed or closed) */
    public CompletableFuture<Result> result() { return result; }

    /** waits for the end: the result, or the engine's error rethrown as an unchecked exception */
    public Result join() {
        try {
            return result.join();
        } catch (java.util.concurrent.CompletionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            throw e;
        }
    }

    /**
     * stops the request at the engine's next step: it ends with {@link FinishReason#CANCELLED}, keeping what was made;
     * its KV cache is freed then. Cancelling an ended request does nothing.
     */
    public void cancel() { cancelled = true; }

    public boolean isCancelled() { return cancelled; }

    /**
     * The deltas as they are made, blocking for the next; ends after the last delta (when the request ends, whatever
     * the reason: see {@link #result} for it). Only one consumer may iterate.
     */
    public synchronized Iterator<Delta> deltas() {
        if (iterated) throw new IllegalStateException("the deltas of completion " + id + " are already being read");
        iterated = true;
        return new Iterator<>() {
            private Object next;

            @Override public boolean hasNext() {
                if (next == null) {
                    try {
                        next = deltas.take();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException("interrupted while waiting for completion " + id, e);
                    }
                }
                if (next == END) {
                    deltas.offer(END);  // stays ended
                    return false;
                }
                return true;
            }

            @Override public Delta next() {
                if (!hasNext()) throw new NoSuchElementException();
                Delta d = (Delta) next;
                next = null;
                return d;
            }
        };
    }

    // ---------------------------------------------------------------- the engine's side

    void emit(Delta d) { deltas.offer(d); }

    void finish(Result r) {
        deltas.offer(END);
        result.complete(r);
    }

    void fail(Throwable t) {
        deltas.offer(END);
        result.completeExceptionally(t);
    }
}
