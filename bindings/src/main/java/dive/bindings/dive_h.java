package dive.bindings;

import java.lang.foreign.*;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * FFM bindings for {@code native/include/dive.h}. HAND-WRITTEN in the layout jextract produces (one
 * class per header, a {@code static final MethodHandle} per function, the C types as layout
 * constants), because jextract cannot be installed on the build machines. This command would
 * regenerate it where jextract exists:
 * <pre>
 *   jextract --target-package dive.bindings --header-class-name dive_h \
 *            --library dive --output bindings/src/main/java native/include/dive.h
 * </pre>
 * {@code DiveHeaderBindingTest} checks that every function of the header is bound here with its arity.
 *
 * <p>The library is looked up at {@code -Ddive.native.lib=PATH}, else {@code native/build/libdive.so}
 * under the working directory. When it is absent, {@link #available()} is empty and {@link #unavailableReason()} says why.
 */
public final class dive_h {
    private dive_h() {}

    public static final ValueLayout.OfInt C_INT = ValueLayout.JAVA_INT;
    public static final ValueLayout.OfLong C_LONG = ValueLayout.JAVA_LONG;
    public static final AddressLayout C_POINTER = ValueLayout.ADDRESS;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final String REASON;
    private static final SymbolLookup LOOKUP;

    static {
        Path lib = Path.of(System.getProperty("dive.native.lib", "native/build/libdive.so"));
        SymbolLookup lookup = null;
        String reason = null;
        if (!Files.isRegularFile(lib)) {
            reason = "native library " + lib + " not found (build it with 'make -C native', needs nvcc)";
        } else {
            try {
                lookup = SymbolLookup.libraryLookup(lib, Arena.global());
            } catch (IllegalArgumentException | IllegalCallerException e) {
                reason = "native library " + lib + " could not be loaded: " + e.getMessage();
            }
        }
        LOOKUP = lookup;
        REASON = reason;
    }

    /** the loaded library, if any */
    public static Optional<SymbolLookup> available() { return Optional.ofNullable(LOOKUP); }

    /** why the library is not available (null when it is) */
    public static String unavailableReason() { return REASON; }

    private static MethodHandle bind(String name, FunctionDescriptor fd) {
        if (LOOKUP == null) return null;
        return LOOKUP.find(name).map(s -> LINKER.downcallHandle(s, fd)).orElse(null);
    }

    // int dive_version(int* major, int* minor)
    public static final FunctionDescriptor dive_version$DESC = FunctionDescriptor.of(C_INT, C_POINTER, C_POINTER);
    public static final MethodHandle dive_version$MH = bind("dive_version", dive_version$DESC);

    // int dive_device_count(int* count)
    public static final FunctionDescriptor dive_device_count$DESC = FunctionDescriptor.of(C_INT, C_POINTER);
    public static final MethodHandle dive_device_count$MH = bind("dive_device_count", dive_device_count$DESC);

    // int dive_error_string(int status, char* buf, long len)
    public static final FunctionDescriptor dive_error_string$DESC = FunctionDescriptor.of(C_INT, C_INT, C_POINTER, C_LONG);
    public static final MethodHandle dive_error_string$MH = bind("dive_error_string", dive_error_string$DESC);

    private static MethodHandle require(MethodHandle mh, String name) {
        if (mh == null) throw new IllegalStateException(name + ": " + (REASON != null ? REASON : "symbol not found in the native library"));
        return mh;
    }

    public static int dive_version(MemorySegment major, MemorySegment minor) {
        try { return (int) require(dive_version$MH, "dive_version").invokeExact(major, minor); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public static int dive_device_count(MemorySegment count) {
        try { return (int) require(dive_device_count$MH, "dive_device_count").invokeExact(count); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public static int dive_error_string(int status, MemorySegment buf, long len) {
        try { return (int) require(dive_error_string$MH, "dive_error_string").invokeExact(status, buf, len); }
        catch (Throwable t) { throw rethrow(t); }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
