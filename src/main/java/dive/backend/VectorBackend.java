package dive.backend;

/** PLACEHOLDER until the Vector API kernels land (helper branch "cpu-kernels"): delegates to the scalar code. */
public class VectorBackend extends ScalarBackend {
    @Override public String name() { return "vector(placeholder)"; }
}
