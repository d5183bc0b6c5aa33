package dive.backend;

import java.util.logging.Logger;

/**
 * Chooses the backend once: system property {@code dive.backend} = scalar | vector (default vector
 * when the Vector API module is present, else scalar). The choice and its reason are logged once.
 */
public final class Backends {
    private static final Logger LOG = Logger.getLogger(Backends.class.getName());
    private static volatile Backend selected;

    private Backends() {}

    public static Backend select() {
        Backend b = selected;
        if (b == null) {
            synchronized (Backends.class) {
                if (selected == null) selected = create(System.getProperty("dive.backend", "auto"));
                b = selected;
            }
        }
        return b;
    }

    /** a backend by name: scalar, vector, auto */
    public static Backend create(String name) {
        switch (name) {
            case "scalar" -> { LOG.fine("backend: scalar (requested)"); return new ScalarBackend(); }
            case "vector", "auto" -> {
                if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
                    if (name.equals("vector")) throw new IllegalStateException("dive.backend=vector needs --add-modules jdk.incubator.vector");
                    LOG.info("backend: scalar (jdk.incubator.vector not loaded; add --add-modules jdk.incubator.vector)");
                    return new ScalarBackend();
                }
                Backend v = new VectorBackend();
                LOG.fine("backend: " + v.name());
                return v;
            }
            default -> throw new IllegalArgumentException("unknown backend '" + name + "' (flag --backend / property dive.backend): expected scalar, vector or auto");
        }
    }
}
