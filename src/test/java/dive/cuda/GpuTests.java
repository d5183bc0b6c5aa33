package dive.cuda;

import org.junit.jupiter.api.Assumptions;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/** For tests tagged "gpu": skip, saying why (on stderr too, once per test class), where no GPU is usable. */
public final class GpuTests {
    private static final Set<String> SAID = ConcurrentHashMap.newKeySet();

    private GpuTests() {}

    public static void assumeGpu(Class<?> testClass) {
        Cuda.Status s = Cuda.status();
        if (!s.usable() && SAID.add(testClass.getName()))
            System.err.println(testClass.getSimpleName() + ": GPU tests skipped: " + s.reason());
        Assumptions.assumeTrue(s.usable(), () -> "no usable CUDA GPU: " + s.reason());
    }
}
