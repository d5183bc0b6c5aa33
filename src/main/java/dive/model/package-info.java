/**
 * Dense Llama inference: what the CLI and services call.
 *
 * <pre>
 * LlamaModel model = LlamaModel.load(dir, Backends.select());        // config.json + safetensors, shapes checked
 * float[] logits = model.logits(ids);                                 // (T, vocab) for one fresh sequence
 * KVCache cache = model.newCache(maxPositions);                       // per request
 * float[] next = model.forwardLast(promptIds, cache);                 // prefill, then one id at a time
 * int[] newIds = Generator.generate(model, promptIds, GenerateOptions.greedy(20));
 * Perplexity.Result r = Perplexity.compute(model, ids, window);      // r.perplexity(), r.predictedTokens()
 * </pre>
 *
 * A {@link dive.model.LlamaModel} is immutable and may be shared by many threads; a {@link dive.model.KVCache} and a
 * {@link dive.model.Sampler} belong to one request. All arithmetic goes through {@link dive.backend.Backend}.
 */
package dive.model;
