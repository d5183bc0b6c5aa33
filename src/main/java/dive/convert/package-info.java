/**
 * DIVE's conversion steps on a dense Llama model (see DIVE-METHOD.md sections 1–3).
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
 * DiveConversion         the whole pipeline, resumable step by step: groups → experts → stage 0/1/2 (TrainingRun with a
 *                        recipe written into each stage folder, a done marker at the end) → Mixtral export → report.json
 * BaselineConversion     section 6 beside DIVE (recipe methods): flap, llm_pruner (dense, pruned to the active width,
 *                        LoRA on gate/up/down), llama_moe_random, llama_moe_kmeans (data-free experts), dive_random_groups;
 *                        each in OUT/&lt;method&gt;/ with the same stage budgets, one report.json entry per method
 * </pre>
 */
package dive.convert;
