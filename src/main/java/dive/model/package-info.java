/**
 * Llama inference, dense ({@code llama}) or sparse Mixture of Experts ({@code mixtral}, and {@code qwen2_moe} with its
 * sigmoid-gated shared expert): what the CLI and services call. One decoder with a pluggable feed-forward block
 * ({@link dive.model.FeedForward}: {@link dive.model.DenseFfn}, {@link dive.model.MoeFfn} or
 * {@link dive.model.SharedExpertMoeFfn}); {@link dive.model.RoutingObserver} sees each MoE layer's routing per call;
 * {@link dive.model.MixtralExport} writes a Hugging Face Mixtral checkpoint, {@link dive.model.Qwen2MoeExport} a Qwen2-MoE one.
 *
 * <pre>
 * Backend backend = Backends.create("auto", "auto");                  // device, CPU backend: chosen by the caller
 * LlamaModel model = LlamaModel.load(dir, backend);                   // config.json + safetensors, shapes checked
 * float[] logits = model.logits(ids);                                 // (T, vocab) for one fresh sequence
 * KVCache cache = model.newCache(maxPositions);                       // per request
 * float[] next = model.forwardLast(promptIds, cache);                 // prefill, then one id at a time
 * int[] newIds = Generator.generate(model, promptIds, GenerateOptions.greedy(20));
 * Perplexity.Result r = Perplexity.compute(model, ids, window);      // r.perplexity(), r.predictedTokens()
 * model.forward(ids, cache, (layer, n, routerLogits, expertIds, weights) -> ...);  // MoE routing per layer
 * MixtralExport.write(outDir, mixtralConfig, namedWeights, MixtralExport.Options.defaults());
 * </pre>
 *
 * A {@link dive.model.LlamaModel} is immutable and may be shared by many threads; a {@link dive.model.KVCache} and a
 * {@link dive.model.Sampler} belong to one request. All arithmetic goes through {@link dive.backend.Backend}.
 */
package dive.model;
