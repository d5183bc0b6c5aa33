package dive.bindings;

import org.junit.jupiter.api.Test;

import java.lang.foreign.FunctionDescriptor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/** Keeps Java and C in step: every function declared in dive.h is bound in dive_h with the same arity, and returns int. */
class DiveHeaderBindingTest {
    private static final Pattern DECL = Pattern.compile("^\\s*int\\s+(dive_\\w+)\\s*\\(([^)]*)\\)\\s*;", Pattern.MULTILINE);

    static Map<String, Integer> headerFunctions() throws Exception {
        String header = Files.readString(Path.of("native/include/dive.h"));
        Map<String, Integer> fns = new LinkedHashMap<>();
        Matcher m = DECL.matcher(header);
        while (m.find()) {
            String params = m.group(2).trim();
            fns.put(m.group(1), params.isEmpty() || params.equals("void") ? 0 : params.split(",").length);
        }
        return fns;
    }

    @Test
    void everyHeaderFunctionIsBoundWithItsArity() throws Exception {
        Map<String, Integer> fns = headerFunctions();
        assertFalse(fns.isEmpty(), "no functions parsed from dive.h");
        for (var e : fns.entrySet()) {
            var field = dive_h.class.getField(e.getKey() + "$DESC");
            FunctionDescriptor fd = (FunctionDescriptor) field.get(null);
            assertEquals(e.getValue(), fd.argumentLayouts().size(), "arity of " + e.getKey());
            assertEquals(dive_h.C_INT, fd.returnLayout().orElseThrow(), e.getKey() + " returns int");
        }
    }

    @Test
    void probeGivesAReasonOrADevice() {
        CudaProbe.Result r = CudaProbe.probe();
        // either a GPU answered, or a one-line reason says why not (no library, no driver, no device)
        if (!r.usable()) {
            assertNotNull(r.reason());
            assertFalse(r.reason().contains("\n"));
        }
    }
}
