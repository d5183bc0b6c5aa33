package dive.serve;

import dive.model.KVCache;
import dive.model.LlamaConfig;
import dive.model.LlamaModel;
import dive.model.Sampler;
import dive.tokenizer.Tokenizer;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Continuous batching over one model: requests from any number of threads join a running batch between steps, every
 * step is one batched forward ({@link LlamaModel#forwardBatch}) over all running sequences — one new token each for
 * those decoding, a chunk of the prompt for those still prefilling — and a sequence leaves the batch the step it ends.
 * Dense Llama and Mixtral models alike (the MoE layers group a step's rows by expert).
 *
 * <h2>Concurrency</h2>
 * One scheduler thread owns the batch, the KV caches and the samplers; callers only touch a bounded queue (under a lock)
 * and their {@link Completion} (its deltas queue and result future). {@link #submit} never blocks: a full queue refuses
 * the request ({@link RejectedException.Reason#QUEUE_FULL}). Cancellation and deadlines take effect at the next step.
 *
 * <h2>Memory</h2>
 * KV caches come from one budget ({@link ServeOptions#kvBudgetBytes}): a sequence is given a cache of exactly its prompt
 * plus max_tokens positions when it joins the batch (2 × layers × kv width × 4 bytes per position) and frees it when it
 * ends, so the engine never holds more than the budget; a request waits in the queue until its cache fits, and one whose
 * cache alone exceeds the budget or whose length exceeds the model's context is refused at submission
 * ({@link RejectedException.Reason#TOO_LONG}). Activations per step scale with the rows of the step (at most
 * maxBatch − 1 decode rows plus {@link ServeOptions#prefillTokens} prompt rows).
 *
 * <h2>Results</h2>
 * Each request has its own sampler seeded from its request, as {@code Generator.generate} does. Batching changes bits
 * in one place: a decode step of 4 or more rows runs a small model's matmuls (weights cached packed) as a GEMM, which
 * sums a row's products in another order than the GEMV of a lone sequence's step, so logits can differ in their last
 * bits (≤ 1e-5 measured on the default model); a large model's BF16/F16 weights stay on the GEMV path up to 15 rows,
 * each row summed as alone. Greedy and seeded tokens equal serial generation's ({@code BatchEngineTest}).
 */
public final class BatchEngine implements AutoCloseable {
    private final LlamaModel model;
    private final Tokenizer tokenizer;
    private final BitSet allowed;
    private final ServeOptions options;
    private final long bytesPerPosition;
    private final int[] eos;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition work = lock.newCondition();
    private final ArrayDeque<Sequence> queue = new ArrayDeque<>();  // guarded by lock
    private final List<Sequence> running = new ArrayList<>();        // scheduler thread only
    private final AtomicLong kvInUse = new AtomicLong(), runningCount = new AtomicLong(), ids = new AtomicLong();
    private volatile boolean closing, aborting;
    private final Thread thread;
    private final ServeMetrics metrics;

    private BatchEngine(LlamaModel model, Tokenizer tokenizer, BitSet allowed, ServeOptions options) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.allowed = allowed == null ? null : (BitSet) allowed.clone();
        this.options = options;
        LlamaConfig c = model.config();
        this.bytesPerPosition = 2L * c.numHiddenLayers() * c.kvDim() * 4;
        this.eos = c.eosTokenIds() == null ? new int[0] : c.eosTokenIds().clone();
        this.metrics = new ServeMetrics(this::queueDepth, runningCount::get, kvInUse::get);
        this.thread = Thread.ofPlatform().daemon().name("dive-batch-" + model.source()).unstarted(this::loop);
    }

    /**
     * starts an engine over {@code model}; {@code tokenizer} (may be null: then deltas carry ids only and stop strings are
     * refused) turns ids into text; {@code allowed} (may be null: every id) the ids sampling may pick, e.g. the ids the
     * tokenizer can decode
     */
    public static BatchEngine start(LlamaModel model, Tokenizer tokenizer, BitSet allowed, ServeOptions options) {
        BatchEngine e = new BatchEngine(model, tokenizer, allowed, options);
        e.thread.start();
        return e;
    }

    public ServeOptions options() { return options; }

    public ServeMetrics metrics() { return metrics; }

    public LlamaModel model() { return model; }

    /** requests waiting for a place in the batch */
    public int queueDepth() {
        lock.lock();
        try { return queue.size(); } finally { lock.unlock(); }
    }

    /** the KV-cache bytes a request of {@code positions} positions takes */
    public long kvBytes(int positions) { return bytesPerPosition * positions; }

    /**
     * queues {@code request}; its tokens and end arrive through the returned {@link Completion}
     *
     * @throws RejectedException        when the queue is full, the engine is closing, or the request can never fit
     * @throws IllegalArgumentException when a prompt id is outside the vocabulary, or stop strings come without a tokenizer
     */
    public Completion submit(CompletionRequest request) {
        LlamaConfig c = model.config();
        int vocab = c.vocabSize();
        for (int i = 0; i < request.promptLength(); i++) {
            int t = request.promptToken(i);
            if (t < 0 || t >= vocab) throw new IllegalArgumentException("prompt token id " + t + " at position " + i + " is outside the vocabulary [0, " + vocab + ")");
        }
        if (!request.stop().isEmpty() && tokenizer == null)
            throw new IllegalArgumentException("stop strings need a tokenizer, and " + model.source() + " has none");
        long positions = (long) request.promptLength() + request.maxTokens();
        if (positions > c.maxPositionEmbeddings())
            throw reject(RejectedException.Reason.TOO_LONG, "prompt of " + request.promptLength() + " tokens plus max_tokens " + request.maxTokens()
                    + " makes " + positions + " positions, more than the model's context of " + c.maxPositionEmbeddings()
                    + " (max_position_embeddings): at most " + Math.max(0, c.maxPositionEmbeddings() - request.promptLength()) + " new tokens");
        if (kvBytes((int) positions) > options.kvBudgetBytes())
            throw reject(RejectedException.Reason.TOO_LONG, "prompt plus max_tokens need a KV cache of " + kvBytes((int) positions)
                    + " bytes, more than the engine's whole KV budget of " + options.kvBudgetBytes() + " bytes");
        Completion completion = new Completion(ids.incrementAndGet(), request);
        lock.lock();
        try {
            if (closing) throw reject(RejectedException.Reason.CLOSED, "the engine is closing: no new requests");
            if (queue.size() >= options.maxQueued())
                throw reject(RejectedException.Reason.QUEUE_FULL, "the queue is full (" + options.maxQueued() + " requests waiting): try again later");
            queue.add(new Sequence(completion));
            work.signal();
        } finally {
            lock.unlock();
        }
        return completion;
    }

    private RejectedException reject(RejectedException.Reason reason, String message) {
        metrics.rejected(reason);
        return new RejectedException(reason, message);
    }

    /** waits up to a minute for every accepted request to end, then fails the rest; see {@link #close(Duration)} */
    @Override public void close() { close(Duration.ofMinutes(1)); }

    /**
     * stops taking requests; those accepted (running or queued) run to their end for up to {@code grace}, then any still
     * unfinished fail with {@link RejectedException.Reason#CLOSED}. Returns when the scheduler thread has stopped.
     */
    public void close(Duration grace) {
        lock.lock();
        try {
            closing = true;
            work.signal();
        } finally {
            lock.unlock();
        }
        try {
            if (Thread.currentThread() == thread) return;
            thread.join(Math.max(1, grace.toMillis()));
            if (thread.isAlive()) {
                aborting = true;
                lock.lock();
                try { work.signal(); } finally { lock.unlock(); }
                thread.join();
            }
        } catch (InterruptedException e) {
            aborting = true;
            Thread.currentThread().interrupt();
        }
    }

    // ---------------------------------------------------------------- the scheduler thread

    private void loop() {
        try {
            while (true) {
                if (aborting) break;
                admit();
                if (running.isEmpty()) {
                    lock.lock();
                    try {
                        if (closing && queue.isEmpty()) break;
                        if (queue.isEmpty()) work.await(50, TimeUnit.MILLISECONDS);
                    } finally {
                        lock.unlock();
                    }
                    continue;
                }
                retireStopped();
                if (!running.isEmpty()) step();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Throwable t) {  // a bug in the scheduler itself: fail everything rather than hang the callers
            failAll(t);
            throw t;
        } finally {
            failAll(new RejectedException(RejectedException.Reason.CLOSED, "the engine closed before the request finished"));
        }
    }

    /** moves queued requests into the batch while there is a place and their KV cache fits the budget (in order) */
    private void admit() {
        while (running.size() < options.maxBatch()) {
            Sequence s;
            lock.lock();
            try {
                s = queue.peek();
                if (s == null) return;
                long need = kvBytes(s.capacity);
                if (kvInUse.get() + need > options.kvBudgetBytes()) return;  // waits for running ones to end
                queue.poll();
                kvInUse.addAndGet(need);
            } finally {
                lock.unlock();
            }
            if (s.completion.isCancelled() || s.expired(System.nanoTime())) {  // never started: no cache needed
                kvInUse.addAndGet(-kvBytes(s.capacity));
                s.end(s.completion.isCancelled() ? FinishReason.CANCELLED : FinishReason.DEADLINE);
                continue;
            }
            try {
                s.cache = model.newCache(s.capacity);
            } catch (RuntimeException | OutOfMemoryError e) {
                kvInUse.addAndGet(-kvBytes(s.capacity));
                s.fail(e);
                continue;
            }
            running.add(s);
            runningCount.set(running.size());
        }
    }

    /** ends the sequences (running or still queued) cancelled or past their deadline since the last step */
    private void retireStopped() {
        long now = System.nanoTime();
        List<Sequence> dropped = new ArrayList<>();
        lock.lock();
        try {
            queue.removeIf(s -> (s.completion.isCancelled() || s.expired(now)) && dropped.add(s));
        } finally {
            lock.unlock();
        }
        for (Sequence s : dropped) s.end(s.completion.isCancelled() ? FinishReason.CANCELLED : FinishReason.DEADLINE);
        for (int i = running.size() - 1; i >= 0; i--) {
            Sequence s = running.get(i);
            if (s.completion.isCancelled()) retire(i, FinishReason.CANCELLED);
            else if (s.expired(now)) retire(i, FinishReason.DEADLINE);
        }
    }

    /** one batched forward: a token for each decoding sequence, then prompt chunks up to the prefill budget */
    private void step() {
        List<Sequence> batch = new ArrayList<>(running.size());
        List<int[]> rows = new ArrayList<>(running.size());
        for (Sequence s : running)
            if (s.prefilled == s.promptLength) { batch.add(s); rows.add(new int[] {s.last}); }
        int budget = options.prefillTokens();
        for (Sequence s : running) {
            if (s.prefilled == s.promptLength || budget == 0) continue;
            int n = Math.min(budget, s.promptLength - s.prefilled);
            int[] chunk = new int[n];
            for (int i = 0; i < n; i++) chunk[i] = s.completion.request().promptToken(s.prefilled + i);
            budget -= n;
            batch.add(s);
            rows.add(chunk);
        }
        KVCache[] caches = new KVCache[batch.size()];
        for (int b = 0; b < caches.length; b++) caches[b] = batch.get(b).cache;
        float[][] logits;
        try {
            logits = model.forwardBatch(rows.toArray(int[][]::new), caches, false);
        } catch (RuntimeException | OutOfMemoryError e) {  // the model refused or failed: these requests end with its error
            for (Sequence s : batch) retire(running.indexOf(s), e);
            return;
        }
        metrics.steps.incrementAndGet();
        metrics.batchSize.observe(batch.size());
        long now = System.nanoTime();
        int vocab = model.config().vocabSize();
        for (int b = 0; b < batch.size(); b++) {
            Sequence s = batch.get(b);
            if (s.prefilled < s.promptLength) {
                s.prefilled += rows.get(b).length;
                metrics.promptTokens.addAndGet(rows.get(b).length);
                if (s.prefilled < s.promptLength) continue;  // more of the prompt next step
            }
            FinishReason end;
            try {
                end = s.accept(s.sampler.sample(logits[b], 0, vocab, allowed), now);
            } catch (RuntimeException e) {
                retire(running.indexOf(s), e);
                continue;
            }
            if (end != null) retire(running.indexOf(s), end);
        }
    }

    private void retire(int index, FinishReason reason) {
        Sequence s = running.remove(index);
        release(s);
        s.end(reason);
    }

    private void retire(int index, Throwable error) {
        Sequence s = running.remove(index);
        release(s);
        s.fail(error);
    }

    private void release(Sequence s) {
        if (s.cache != null) s.cache.close();
        s.cache = null;
        kvInUse.addAndGet(-kvBytes(s.capacity));
        runningCount.set(running.size());
    }

    private void failAll(Throwable t) {
        for (int i = running.size() - 1; i >= 0; i--) retire(i, t);
        List<Sequence> waiting;
        lock.lock();
        try {
            waiting = new ArrayList<>(queue);
            queue.clear();
        } finally {
            lock.unlock();
        }
        for (Sequence s : waiting) s.fail(t);
    }

    /** a request in the engine: its prompt progress, KV cache, sampler and the text handed out so far */
    private final class Sequence {
        final Completion completion;
        final int promptLength, capacity;
        final Sampler sampler;
        final long deadlineNanos;
        KVCache cache;
        int prefilled, last;
        final List<Integer> produced = new ArrayList<>();
        int sinceDelta;          // ids made since the last delta
        String emitted = "";     // text handed out
        long firstTokenNanos, lastTokenNanos;

        Sequence(Completion c) {
            CompletionRequest r = c.request();
            completion = c;
            promptLength = r.promptLength();
            capacity = promptLength + r.maxTokens();
            sampler = new Sampler(r.temperature(), r.topP(), r.seed());
            deadlineNanos = r.deadline() == null ? Long.MAX_VALUE : c.submittedNanos() + r.deadline().toNanos();
        }

        boolean expired(long now) { return deadlineNanos != Long.MAX_VALUE && now - deadlineNanos > 0; }

        /** takes the sampled id → the reason the sequence ends now, or null to go on */
        FinishReason accept(int id, long now) {
            produced.add(id);
            sinceDelta++;
            last = id;
            metrics.completionTokens.incrementAndGet();
            if (firstTokenNanos == 0) {
                firstTokenNanos = now;
                metrics.timeToFirstToken.observe((now - completion.submittedNanos()) / 1e9);
            } else {
                metrics.interTokenLatency.observe((now - lastTokenNanos) / 1e9);
            }
            lastTokenNanos = now;
            boolean atEos = contains(eos, id);
            String text = text();
            List<String> stops = completion.request().stop();
            if (!stops.isEmpty()) {
                int at = firstStop(text, stops, Math.max(0, emitted.length() - CompletionRequest.MAX_STOP_LENGTH));
                if (at >= 0) {
                    emitUpTo(text.substring(0, at), true);
                    return FinishReason.STOP;
                }
            }
            if (atEos) { emitUpTo(text, true); return FinishReason.STOP; }
            if (produced.size() == completion.request().maxTokens()) { emitUpTo(text, true); return FinishReason.LENGTH; }
            emitUpTo(text.substring(0, safeLength(text, stops)), false);
            return null;
        }

        // incremental detokenization (as vLLM does it): the text of produced[0, readOffset) is settled in `settled`;
        // each step decodes only produced[prefixOffset, n) and takes what it adds to produced[prefixOffset, readOffset),
        // so a step costs a few tokens' decoding, not the whole completion's (a window starting mid-text decodes its
        // first token the same way in both, so the difference is the new tokens' text)
        private final StringBuilder settled = new StringBuilder();
        private int prefixOffset, readOffset;
        private String window = "";  // decode(produced[prefixOffset, readOffset))

        /** the completion's text so far (its last character may still be U+FFFD, a character whose bytes are not all in) */
        private String text() {
            if (tokenizer == null) return "";
            int n = produced.size();
            String grown = decode(prefixOffset, n);
            String added = grown.length() >= window.length() && grown.startsWith(window) ? grown.substring(window.length()) : null;
            if (added == null) return decode(0, n);  // the window decoded differently with more tokens: fall back to the whole
            if (!added.isEmpty() && !added.endsWith("\uFFFD")) {  // settled: move the window on
                settled.append(added);
                prefixOffset = readOffset;
                readOffset = n;
                window = decode(prefixOffset, readOffset);
                return settled.toString();
            }
            return settled + added;
        }

        private String decode(int from, int to) {
            int[] a = new int[to - from];
            for (int i = 0; i < a.length; i++) a[i] = produced.get(from + i);
            return tokenizer.decode(a, true);
        }

        /**
         * hands out the text past what was emitted with the ids made since the last delta; when not {@code last}, ids
         * whose text is not out yet wait for the next delta
         */
        private void emitUpTo(String text, boolean last) {
            String delta = text.length() > emitted.length() && text.startsWith(emitted) ? text.substring(emitted.length()) : "";
            if (delta.isEmpty() && !last) return;
            int[] ids = new int[sinceDelta];
            for (int i = 0; i < sinceDelta; i++) ids[i] = produced.get(produced.size() - sinceDelta + i);
            if (!delta.isEmpty() || ids.length > 0) completion.emit(new Completion.Delta(delta, ids));
            emitted = emitted + delta;
            sinceDelta = 0;
        }

        void end(FinishReason reason) {
            if (reason == FinishReason.CANCELLED || reason == FinishReason.DEADLINE) emitUpTo(text(), true);
            metrics.ended(reason);
            int[] ids = new int[produced.size()];
            for (int i = 0; i < ids.length; i++) ids[i] = produced.get(i);
            Duration ttft = firstTokenNanos == 0 ? null : Duration.ofNanos(firstTokenNanos - completion.submittedNanos());
            completion.finish(new Completion.Result(emitted, ids, reason, promptLength, ids.length, ttft));
        }

        void fail(Throwable t) {
            metrics.failed();
            completion.fail(t);
        }
    }

    /** the earliest index of any of {@code stops} in {@code text} at or after {@code from}, −1 when none */
    static int firstStop(String text, List<String> stops, int from) {
        int best = -1;
        for (String s : stops) {
            int at = text.indexOf(s, from);
            if (at >= 0 && (best < 0 || at < best)) best = at;
        }
        return best;
    }

    /**
     * how much of {@code text} can be handed out now: all but a trailing U+FFFD (a character whose bytes are not all
     * there yet) and but the longest suffix that starts a stop string (it may yet become one)
     */
    static int safeLength(String text, List<String> stops) {
        int n = text.length();
        while (n > 0 && text.charAt(n - 1) == '\uFFFD') n--;
        int hold = 0;
        for (String s : stops)
            for (int k = Math.min(s.length() - 1, n); k > hold; k--)
                if (text.regionMatches(n - k, s, 0, k)) { hold = k; break; }
        return n - hold;
    }

    private static boolean contains(int[] ids, int id) {
        for (int e : ids) if (e == id) return true;
        return false;
    }
}
