/**
 * DIVE's conversion steps on a dense Llama model (see DIVE-METHOD.md sections 1–6).
 *
 * <pre>
 * DatasetWindows         per dataset: seeded calibration windows (CALIB split), affinity-evaluation windows (first half
 *                        of EVAL) and final-evaluation windows (second half of EVAL) — three disjoint sources
 * CalibrationStatistics  one dense forward per batch of windows, every layer's FFN intermediate h observed
 *                        (RoutingObserver.onDenseIntermediate) → per layer ChannelStatistics (count, mean, M2, Σh²;
 *                        Chan-mergeable across batches and datasets)
 * ChannelScore           WIFV (default), IFV, WIFN, Wanda-style; TaylorScore (LLM-Pruner, from gradients)
 * Pruning                uniform per-layer top channels (ties → lower index), narrowed DenseFfn (+ bias compensation),
 *                        pruned LlamaModel sharing the dense model's other tensors
 * WindowPerplexity       perplexity of many window groups, all batched through the same forwards
 * Affinity, Clustering   P → A (column-normalised) → Pearson of rows → agglomerative clustering on 1 − corr → E groups
 * AffinityMining         the whole of section 3 in one call; writes affinity.json and affinity.png
 * ExpertReconstruction   section 4: per group, pooled seeded windows → statistics (a merge of the per-dataset ones when
 *                        the sample is the whole pool) → pruned FFN = expert; routers normal(0, 0.02); (E, k, r) checks
 * HeldOutEvaluation      per-dataset perplexity and routing share (dataset × expert) from the same forwards
 * ConvertRecipe          the strict YAML/JSON settings of ./dive convert (windows, score, grouping, stage budgets)
 * DiveConversion         the driver: the shared stages, the same for every method and each resumable — settings claim
 *                        (convert.json) → windows → groups (groups.json, methods that use them) → build → evaluation
 *                        before retraining → stage 0/1/2 (TrainingRun with a recipe written into each stage folder, a done
 *                        marker at the end) → export → evaluation after → report entry; then report.json
 * Method                 one way to build the model to retrain (FFNs or experts + routers) and its Family (MOE: router
 *                        stage 0, LoRA stages 1/2, Mixtral export; DENSE: LoRA on gate/up/down, Llama export)
 * Methods                the recipe's method names → classes; an unknown name is refused naming the field and the names
 * DiveMethod             section 4: experts from the groups' pooled windows (DIVE, in OUT; build folder experts/)
 * DiveRandomGroupsMethod the ablation with random groups: a whole DIVE run of its own in OUT/dive_random_groups/
 * DensePruningMethod     section 6's dense baselines, pruned to the active width: FlapMethod (WIFV), LlmPrunerMethod (Taylor)
 * LlamaMoeMethod         section 6's data-free experts: llama_moe_random, llama_moe_kmeans
 * DiveSharedMethod       dive_shared (beyond the paper): per layer a shared expert of the pooled top channels and one
 *                        routed expert per group of its own top channels (SharedExpertSplit: widths and rule), at the
 *                        plain setting's active width; built and exported as a stock Qwen2-MoE (channels.json beside)
 * CmoeMethod             cmoe, the CMoE baseline at the plain setting's active width, a stock Qwen2-MoE: CmoeSettings
 *                        (widths), CmoeActivations (active-channel markers by the authors' normalised score from the FFN
 *                        input, RoutingObserver.onFfnInput), CmoeCarving (shared expert, balanced co-activation clustering by
 *                        BalancedAssignment, representatives), CmoeLayer, CmoeRouter (the analytical router; the linear
 *                        stand-in's top-k agreement)
 * Groups                 the groups stage: affinity mining, random or a file → groups.json
 * Evaluation, MethodResult, ConversionResult   typed eval/*.json, report entries and report.json (same keys and order)
 * ConversionReport       the tables, report.md and pictures of a report
 * </pre>
 */
package dive.convert;
