package dive.cli;

import dive.model.LoadOptions;
import picocli.CommandLine.Option;

/** The load check flags of the commands that run a model folder (generate, ppl, eval, logits, bench, affinity, convert, compare, serve). */
final class LoadFlags {
    @Option(names = "--allow-unused-tensors",
            description = "load a checkpoint holding tensors the config never reads (e.g. more layers than num_hidden_layers), "
                    + "listing them in a warning; refused by default")
    boolean allowUnusedTensors;

    LoadOptions options() { return LoadOptions.DEFAULT.withAllowUnusedTensors(allowUnusedTensors); }
}
