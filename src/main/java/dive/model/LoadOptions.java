package dive.model;

/**
 * How {@link LlamaModel#load(java.nio.file.Path, dive.backend.Backend, LoadOptions)} checks a checkpoint against its
 * config. By default a tensor the config does not read (a config with fewer layers than the checkpoint, a stray
 * tensor) is refused, naming the first few and their file; and every weight is scanned once for NaN and ±Infinity,
 * the first one refused, naming its tensor, index and value.
 *
 * @param allowUnusedTensors load anyway when the checkpoint holds tensors the model never reads, with a warning
 *                           listing them (the command line's {@code --allow-unused-tensors})
 * @param checkFinite        scan the weights for NaN / ±Infinity at load (default true)
 */
public record LoadOptions(boolean allowUnusedTensors, boolean checkFinite) {
    /** unused tensors refused, weights checked finite */
    public static final LoadOptions DEFAULT = new LoadOptions(false, true);

    public LoadOptions withAllowUnusedTensors(boolean allow) { return new LoadOptions(allow, checkFinite); }

    public LoadOptions withCheckFinite(boolean check) { return new LoadOptions(allowUnusedTensors, check); }
}
