package dive.train;

import dive.backend.Backend;

/** test access to a parameter's gradient on its backend: writes go through the backend's counted transfers */
final class GradAccess {
    private GradAccess() {}

    /** grad[0 .. values.length) ← values */
    static void set(Parameter p, Backend backend, float... values) { backend.write(p.grad(backend), 0, values, values.length); }

    /** grad[i] ← v */
    static void setAt(Parameter p, Backend backend, int i, float v) { backend.write(p.grad(backend), i, new float[] {v}, 1); }
}
