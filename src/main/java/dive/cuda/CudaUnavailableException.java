package dive.cuda;

/** The CUDA backend was asked for where no usable GPU is; the message names who asked and the probe's reason. */
public class CudaUnavailableException extends IllegalStateException {
    public CudaUnavailableException(String message) { super(message); }
}
