package dive;

import dive.backend.Backend;
import dive.backend.Transfers;
import dive.backend.VectorBackend;
import dive.convert.CalibrationStatistics;
import dive.model.KVCache;
import dive.model.LlamaModel;
import dive.model.RoutingObserver;
import dive.train.AdamW;
import dive.train.Gradients;
import dive.train.TrainableLlama;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Host↔device transfers per step, counted by the backend ({@link Backend#transfers()}): a decode step, a prefill, a
 * batched prefill, a training step (dense, MoE, LoRA with dropout, optimizer and clipping) and a calibration pass move
 * only their edges — token ids and positions (and targets) in; logits, the loss, the gradient norm and statistics out —
 * whatever the model's size. The CPU backend counts what a GPU would copy; every number below is derived by hand
 * from the step's edges, not read off a run.
 */
class TransferCountTest {
    static final Path DENSE = Path.of("src/test/resources/llama/gqa");        // 2 layers, vocab from its config
    static final Path MOE = Path.of("src/test/resources/mixtral/k2_i40");     // 2 MoE layers, 4 experts, top-2

    final Backend backend = new VectorBackend(2);

    Transfers.Snapshot since(Transfers.Snapshot before) { return backend.transfers().snapshot().since(before); }

    static void assertTransfers(long toDevice, long bytesToDevice, long toHost, long bytesToHost, Transfers.Snapshot got) {
        assertEquals(new Transfers.Snapshot(toDevice, toHost, bytesToDevice, bytesToHost), got, "transfers of the step");
    }

    @Test
    void decodeAndPrefillMoveOnlyIdsPositionsAndLogits() throws Exception {
        for (Path dir : List.of(DENSE, MOE)) {
            try (LlamaModel model = LlamaModel.load(dir, backend)) {
                int vocab = model.config().vocabSize();
                KVCache cache = model.newCache(32);
                var before = backend.transfers().snapshot();
                model.forwardLast(new int[] {1, 5, 9, 13, 17, 21, 25}, cache);         // prefill of 7 tokens, last logits
                // in: 7 ids + 7 positions (4 bytes each); out: one row of logits
                assertTransfers(2, 2 * 7 * 4, 1, 4L * vocab, since(before));
                before = backend.transfers().snapshot();
                model.forwardLast(new int[] {3}, cache);                                // one decode step
                assertTransfers(2, 2 * 4, 1, 4L * vocab, since(before));
                before = backend.transfers().snapshot();
                model.forward(new int[] {4, 6}, cache);                                  // every position's logits
                assertTransfers(2, 2 * 2 * 4, 1, 2L * 4 * vocab, since(before));
                before = backend.transfers().snapshot();
                model.forwardBatch(new int[][] {{1, 2, 3}, {4, 5}, {6}},
                        new KVCache[] {model.newCache(8), model.newCache(8), model.newCache(8)}, false);
                // one upload of the 6 ids and one of their positions for the whole batch; one logits row per sequence
                assertTransfers(2, 2 * 6 * 4, 3, 3L * 4 * vocab, since(before));
            }
        }
    }

    @Test
    void anObserverThatReadsArraysIsCounted() throws Exception {
        // the counter sees in-layer transfers: the array form of a routing observer downloads logits, ids and weights
        try (LlamaModel model = LlamaModel.load(MOE, backend)) {
            int layers = model.config().numHiddenLayers();
            RoutingObserver onHost = (layer, tokens, logits, ids, weights) -> {};
            var before = backend.transfers().snapshot();
            model.forward(new int[] {1, 2, 3}, model.newCache(4), onHost);
            assertEquals(2, since(before).toDevice());
            assertEquals(1 + 3L * layers, since(before).toHost(), "logits + (router logits, ids, weights) per MoE layer");
        }
    }

    @Test
    void calibrationPassMovesIdsInAndStatisticsOutOnce() throws Exception {
        try (LlamaModel model = LlamaModel.load(DENSE, backend)) {
            List<int[]> windows = new ArrayList<>();
            for (int w = 0; w < 5; w++) windows.add(new int[] {1 + w, 7, 11 + w, 13, 2, 40 + w});
            int batches = 1;  // 30 tokens, under TOKENS_PER_BATCH: one batched forward
            int layers = model.config().numHiddenLayers(), width = model.config().intermediateSize();
            var before = backend.transfers().snapshot();
            CalibrationStatistics stats = CalibrationStatistics.collect(model, windows);
            // per batch: ids and positions in; at the end per layer mean, M2 and Σh² (F64) out; no logits at all
            assertTransfers(2L * batches, 2L * batches * 30 * 4, 3L * layers, 3L * layers * width * 8, since(before));
            assertEquals(30, stats.tokens());
        }
    }

    @Test
    void denseTrainingStepMovesIdsInAndLossAndNormOut() throws Exception {
        try (TrainableLlama model = TrainableLlama.fromCheckpoint(DENSE, backend)) {
            step(model, false);
        }
    }

    @Test
    void moeTrainingStepAddsOnlyTheExpertLoad() throws Exception {
        try (TrainableLlama model = TrainableLlama.fromCheckpoint(MOE, backend)) {
            step(model, true);
        }
    }

    @Test
    void loraStepsWithDropoutTransferNoMore() throws Exception {
        try (TrainableLlama dense = TrainableLlama.fromCheckpoint(DENSE, backend)) {
            dense.addLora(new TrainableLlama.LoraConfig(4, 8, 0.1, Set.of("q_proj", "v_proj", "down_proj"), 3));
            step(dense, false);
        }
        try (TrainableLlama moe = TrainableLlama.fromCheckpoint(MOE, backend)) {
            moe.prepareStage1(4, 8, 0.1, 3);  // LoRA on every expert's w1/w2/w3 with dropout, routers and norms
            step(moe, true);
        }
    }

    /** one optimizer step of B = 2 sequences of T = 5: forward + backward, global norm with clipping, AdamW */
    private void step(TrainableLlama model, boolean moe) {
        int[][] batch = {{1, 4, 9, 16, 25, 36}, {2, 3, 5, 7, 11, 13}};
        int n = 2 * 5;
        AdamW adam = new AdamW(new AdamW.Options(0.9, 0.999, 1e-8, 0.01, false), backend);
        for (int s = 0; s < 2; s++) {  // the second step has optimizer moments from the first
            var before = backend.transfers().snapshot();
            Gradients.zero(model.parameters());
            model.lossAndGradients(batch, 1f);
            Gradients.clipByGlobalNorm(model.parameters(), 1.0, backend);
            adam.step(model.parameters(), 1e-3);
            // in: inputs, targets, positions (N ints each); out: the loss (8 bytes), the norm (8), and for MoE the
            // top-k load of every layer (layers × E ints)
            long loadBytes = moe ? 4L * model.config().numHiddenLayers() * model.config().moe().numLocalExperts() : 0;
            assertTransfers(3, 3L * n * 4, moe ? 3 : 2, 16 + loadBytes, since(before));
        }
    }
}
