package dive.serve;

import dive.backend.VectorBackend;
import dive.model.GenerateOptions;
import dive.model.Generator;
import dive.model.LlamaModel;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Continuous batching against serial generation: the same greedy (and seeded sampled) tokens for requests that join a
 * running batch at different times, prefill in chunks and end at different steps — on the bundled dense model and on a
 * Mixtral; then stop strings, cancellation, deadlines, the bounded queue, the KV budget, closing, and a soak of 500
 * requests with random cancellations.
 */
class BatchEngineTest {
    static final Path DEFAULT = Path.of("src/main/resources/dive/default"), MIXTRAL = Path.of("src/test/resources/mixtral/k2_i40");
    static LlamaModel dense;
    static Tokenizer tokenizer;
    static BitSet decodable;
    static List<int[]> prompts = new ArrayList<>();

    @BeforeAll
    static void load() throws Exception {
        dense = LlamaModel.load(DEFAULT, new VectorBackend(2));
        tokenizer = Tokenizer.load(DEFAULT.resolve("tokenizer.json"));
        decodable = tokenizer.decodableIds();
        String text = Files.readString(DEFAULT.resolve("sample.txt"));
        Random r = new Random(3);
        for (int len : new int[] {1, 5, 17, 40, 63, 9, 100, 33}) {
            int at = r.nextInt(text.length() - 2000);
            int[] ids = tokenizer.encode(text.substring(at, at + 1500));
            prompts.add(Arrays.copyOf(ids, len));
        }
    }

    @AfterAll
    static void close() throws Exception { dense.close(); }

    static int[] serial(LlamaModel model, int[] prompt, GenerateOptions o, BitSet allowed) {
        return Generator.generate(model, prompt, o, allowed, id -> {});
    }

    static ServeOptions small() { return new ServeOptions(4, 64, 64L << 20, 24); }

    @Test
    void greedyBatchedTokensEqualSerialGenerationOnTheDenseModel() {
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            List<Completion> cs = new ArrayList<>();
            for (int i = 0; i < prompts.size(); i++) cs.add(engine.submit(CompletionRequest.greedy(prompts.get(i), 10 + 3 * i)));
            for (int i = 0; i < prompts.size(); i++) {
                int[] expected = serial(dense, prompts.get(i), GenerateOptions.greedy(10 + 3 * i), decodable);
                Completion.Result r = cs.get(i).join();
                assertArrayEquals(expected, r.tokens(), "prompt " + i + " (" + prompts.get(i).length + " tokens)");
                assertEquals(tokenizer.decode(expected, true), r.text());
                assertEquals(prompts.get(i).length, r.promptTokens());
                assertEquals(expected.length, r.completionTokens());
                assertEquals(expected.length == 10 + 3 * i ? FinishReason.LENGTH : FinishReason.STOP, r.finishReason());
            }
            assertTrue(engine.metrics().batchSize.count() > 0);
            assertTrue(engine.metrics().steps() < prompts.stream().mapToInt(p -> 1).sum() * 40, "steps were shared");
        }
    }

    @Test
    void sampledTokensWithASeedEqualSerialSampling() {
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            List<Completion> cs = new ArrayList<>();
            for (int i = 0; i < 4; i++)
                cs.add(engine.submit(new CompletionRequest(prompts.get(i), 16, 0.8f, 0.9f, 100 + i, List.of(), null)));
            for (int i = 0; i < 4; i++)
                assertArrayEquals(serial(dense, prompts.get(i), GenerateOptions.sampling(16, 0.8f, 0.9f, 100 + i), decodable), cs.get(i).join().tokens());
        }
    }

    @Test
    void mixtralBatchedTokensEqualSerialGeneration() throws Exception {
        try (LlamaModel moe = LlamaModel.load(MIXTRAL, new VectorBackend(2));
             BatchEngine engine = BatchEngine.start(moe, null, null, new ServeOptions(3, 16, 16L << 20, 7))) {
            Random r = new Random(5);
            List<int[]> ps = new ArrayList<>();
            List<Completion> cs = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                int[] p = new int[1 + r.nextInt(20)];
                for (int t = 0; t < p.length; t++) p[t] = r.nextInt(moe.config().vocabSize());
                ps.add(p);
                cs.add(engine.submit(CompletionRequest.greedy(p, 12)));
            }
            for (int i = 0; i < ps.size(); i++) {
                Completion.Result res = cs.get(i).join();
                assertArrayEquals(serial(moe, ps.get(i), GenerateOptions.greedy(12), null), res.tokens(), "sequence " + i);
                assertEquals("", res.text(), "no tokenizer: ids only");
            }
        }
    }

    @Test
    void deltasStreamTheTextAndAStopStringEndsItBeforeTheStop() {
        int[] full = serial(dense, prompts.get(3), GenerateOptions.greedy(40), decodable);
        String text = tokenizer.decode(full, true);
        assertTrue(text.length() > 20, text);
        String stop = text.substring(12, 15);
        int at = text.indexOf(stop);
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            Completion c = engine.submit(CompletionRequest.greedy(prompts.get(3), 40).withStop(List.of(stop, "\u0000never")));
            StringBuilder streamed = new StringBuilder();
            int ids = 0;
            for (Iterator<Completion.Delta> it = c.deltas(); it.hasNext(); ) {
                Completion.Delta d = it.next();
                streamed.append(d.text());
                ids += d.tokens().length;
            }
            Completion.Result r = c.join();
            assertEquals(FinishReason.STOP, r.finishReason());
            assertEquals(text.substring(0, at), r.text());
            assertEquals(r.text(), streamed.toString(), "the deltas add up to the text");
            assertEquals(r.tokens().length, ids, "every id is in some delta");
            assertTrue(r.tokens().length < full.length);
            assertArrayEquals(Arrays.copyOf(full, r.tokens().length), r.tokens());

            Completion whole = engine.submit(CompletionRequest.greedy(prompts.get(3), 40));
            StringBuilder all = new StringBuilder();
            whole.deltas().forEachRemaining(d -> all.append(d.text()));
            assertEquals(text, all.toString());
        }
    }

    /**
     * The text is decoded incrementally (a few tokens per step): over long, hot-sampled completions (many characters
     * split across tokens) the deltas add up to, and the result equals, the whole completion decoded at once.
     */
    @Test
    void incrementalTextEqualsTheWholeDecode() {
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            List<Completion> cs = new ArrayList<>();
            for (int i = 0; i < 4; i++) cs.add(engine.submit(new CompletionRequest(prompts.get(i), 300, 1.6f, 1f, 7 + i, List.of(), null)));
            for (Completion c : cs) {
                StringBuilder streamed = new StringBuilder();
                c.deltas().forEachRemaining(d -> streamed.append(d.text()));
                Completion.Result r = c.join();
                assertEquals(tokenizer.decode(r.tokens(), true), r.text());
                assertEquals(r.text(), streamed.toString());
            }
        }
    }

    @Test
    void aCancelledRequestEndsAtTheNextStepAndFreesItsCache() throws Exception {
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            Completion c = engine.submit(CompletionRequest.greedy(prompts.get(0), 200));
            Iterator<Completion.Delta> it = c.deltas();
            assertTrue(it.hasNext());
            it.next();
            c.cancel();
            Completion.Result r = c.result().get(30, TimeUnit.SECONDS);
            assertEquals(FinishReason.CANCELLED, r.finishReason());
            assertTrue(r.tokens().length < 200);
            int[] expected = serial(dense, prompts.get(0), GenerateOptions.greedy(r.tokens().length), decodable);
            assertArrayEquals(expected, r.tokens(), "what was made before the cancel is kept");
            waitFor(() -> engine.metrics().prometheus().contains("dive_kv_cache_bytes 0"), "KV cache freed");
            assertEquals(1, engine.metrics().requests("cancelled"));
        }
    }

    @Test
    void aRequestPastItsDeadlineEnds() throws Exception {
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            Completion c = engine.submit(CompletionRequest.greedy(prompts.get(1), 1000).withDeadline(Duration.ofMillis(30)));
            Completion.Result r = c.result().get(30, TimeUnit.SECONDS);
            assertEquals(FinishReason.DEADLINE, r.finishReason());
            assertTrue(r.tokens().length < 1000);
        }
    }

    @Test
    void theQueueIsBoundedAndTheKvBudgetMakesRequestsWait() throws Exception {
        int[] p = prompts.get(2);
        BatchEngine probe = BatchEngine.start(dense, tokenizer, decodable, small());
        long oneRequest = probe.kvBytes(p.length + 200);
        probe.close();
        // the budget holds one such request: the second waits in the queue, a third finds the queue (1 place) full
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, new ServeOptions(8, 1, oneRequest + oneRequest / 2, 64))) {
            Completion first = engine.submit(CompletionRequest.greedy(p, 200));
            waitFor(() -> engine.metrics().prometheus().contains("dive_running_sequences 1"), "the first request running");
            Completion second = engine.submit(CompletionRequest.greedy(p, 200));
            RejectedException e = assertThrows(RejectedException.class, () -> engine.submit(CompletionRequest.greedy(p, 200)));
            assertEquals(RejectedException.Reason.QUEUE_FULL, e.reason());
            assertTrue(e.getMessage().contains("queue is full"), e.getMessage());
            assertEquals(1, engine.queueDepth(), "the second waits for the budget");
            first.cancel();
            assertEquals(FinishReason.CANCELLED, first.result().get(30, TimeUnit.SECONDS).finishReason());
            second.cancel();
            assertEquals(FinishReason.CANCELLED, second.result().get(30, TimeUnit.SECONDS).finishReason());
            // a request whose cache alone passes the budget can never run
            RejectedException big = assertThrows(RejectedException.class, () -> engine.submit(CompletionRequest.greedy(p, 1000 - p.length)));
            assertEquals(RejectedException.Reason.TOO_LONG, big.reason());
            assertTrue(big.getMessage().contains("KV budget"), big.getMessage());
        }
    }

    @Test
    void aRequestLongerThanTheContextIsRefusedNamingTheNumbers() {
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small())) {
            RejectedException e = assertThrows(RejectedException.class, () -> engine.submit(CompletionRequest.greedy(prompts.get(6), 1000)));
            assertEquals(RejectedException.Reason.TOO_LONG, e.reason());
            assertTrue(e.getMessage().contains("1100 positions, more than the model's context of 1024"), e.getMessage());
            IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> engine.submit(CompletionRequest.greedy(new int[] {5, 99999}, 3)));
            assertTrue(bad.getMessage().contains("99999"), bad.getMessage());
        }
    }

    @Test
    void closingLetsRunningRequestsFinishThenRefusesAndAShortGraceFailsTheRest() throws Exception {
        BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, small());
        Completion c = engine.submit(CompletionRequest.greedy(prompts.get(2), 20));
        engine.close();
        assertTrue(c.result().isDone() && !c.result().isCompletedExceptionally(), "finished before close returned");
        assertArrayEquals(serial(dense, prompts.get(2), GenerateOptions.greedy(20), decodable), c.join().tokens());
        RejectedException e = assertThrows(RejectedException.class, () -> engine.submit(CompletionRequest.greedy(prompts.get(2), 5)));
        assertEquals(RejectedException.Reason.CLOSED, e.reason());

        BatchEngine hurried = BatchEngine.start(dense, tokenizer, decodable, new ServeOptions(1, 8, 64L << 20, 8));
        List<Completion> many = new ArrayList<>();
        for (int i = 0; i < 4; i++) many.add(hurried.submit(CompletionRequest.greedy(prompts.get(4), 150)));
        hurried.close(Duration.ofMillis(50));
        int failed = 0;
        for (Completion m : many) {
            assertTrue(m.result().isDone(), "no request left hanging");
            if (m.result().isCompletedExceptionally()) {
                failed++;
                RejectedException r = assertThrows(RejectedException.class, m::join);
                assertTrue(r.getMessage().contains("closed before the request finished"), r.getMessage());
            }
        }
        assertTrue(failed > 0, "a 50 ms grace cannot finish four 150-token requests one at a time");
    }

    /**
     * 500 requests from 32 threads, a third cancelled at a random moment: every one ends (none lost or hung), the ones
     * not cancelled equal serial greedy generation, and afterwards no KV cache is held and the backend's live memory is
     * back where it was.
     */
    @Test
    void soakOf500RequestsWithRandomCancellations() throws Exception {
        VectorBackend backend = (VectorBackend) dense.backend();
        int[][] expected = new int[prompts.size()][];
        for (int i = 0; i < prompts.size(); i++) expected[i] = serial(dense, prompts.get(i), GenerateOptions.greedy(6), decodable);
        long liveBefore = backend.liveBytes();
        ExecutorService pool = Executors.newFixedThreadPool(32);
        try (BatchEngine engine = BatchEngine.start(dense, tokenizer, decodable, new ServeOptions(32, 600, 256L << 20, 128))) {
            List<CompletableFuture<String>> outcomes = new ArrayList<>();
            for (int n = 0; n < 500; n++) {
                int i = n % prompts.size();
                boolean cancel = n % 3 == 0;
                long seed = n;
                outcomes.add(CompletableFuture.supplyAsync(() -> {
                    Completion c = engine.submit(CompletionRequest.greedy(prompts.get(i), 6));
                    if (cancel) {
                        try { Thread.sleep(new Random(seed).nextInt(20)); } catch (InterruptedException e) { throw new IllegalStateException(e); }
                        c.cancel();
                    }
                    Completion.Result r = c.join();
                    if (r.finishReason() == FinishReason.CANCELLED) {
                        assertArrayEquals(Arrays.copyOf(expected[i], r.tokens().length), r.tokens());
                        return "cancelled";
                    }
                    assertArrayEquals(expected[i], r.tokens(), "request " + seed);
                    return "done";
                }, pool));
            }
            CompletableFuture.allOf(outcomes.toArray(CompletableFuture[]::new)).get(90, TimeUnit.SECONDS);
            long done = outcomes.stream().filter(f -> f.join().equals("done")).count();
            assertTrue(done >= 500 - 167, "cancelled only those asked: " + done);
            assertEquals(500, engine.metrics().requests("stop") + engine.metrics().requests("length") + engine.metrics().requests("cancelled"));
            waitFor(() -> engine.metrics().prometheus().contains("dive_kv_cache_bytes 0"), "every KV cache freed");
        } finally {
            pool.shutdownNow();
        }
        assertEquals(liveBefore, backend.liveBytes(), "backend memory back to where it was");
    }

    static void waitFor(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > end) fail("timed out waiting for: " + what);
            Thread.sleep(5);
        }
    }
}
