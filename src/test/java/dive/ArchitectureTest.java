package dive;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.AssertionFailedError;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Architecture rule: the Foreign Function &amp; Memory API ({@code java.lang.foreign}) and the Vector API
 * ({@code jdk.incubator.vector}) are used only in the packages that own off-heap memory and native code:
 * {@code dive.backend}, {@code dive.cuda}, {@code dive.tensor}, {@code dive.io} and {@code dive.bindings} (and their
 * subpackages). Everything else goes through {@code dive.tensor} ({@code Tensor}, {@code TensorArena}).
 *
 * <p>The check reads the sources of {@code src/main/java}: an import or a fully qualified name of either API in code
 * (comments and string literals do not count) in a file whose package is outside the allowed set is a violation,
 * reported with its file, line and statement. Uses that name no type of the API (a method chain over
 * {@code Tensor.data()}, a {@code var}) are not seen.
 */
class ArchitectureTest {
    /** the packages that may use the FFM and Vector APIs */
    static final Set<String> FFM_PACKAGES = Set.of("dive.backend", "dive.cuda", "dive.tensor", "dive.io", "dive.bindings");

    private static final Pattern RESTRICTED = Pattern.compile(
            "\\b(?:java\\s*\\.\\s*lang\\s*\\.\\s*foreign|jdk\\s*\\.\\s*incubator\\s*\\.\\s*vector)\\b");
    private static final Pattern PACKAGE = Pattern.compile("\\bpackage\\s+([\\w\\s.]+?)\\s*;");

    /** one use of a restricted API outside the allowed packages: the file, its package, the line and its statement */
    record Violation(String file, String packageName, int line, String statement) {
        @Override public String toString() {
            return file + ":" + line + " (package " + (packageName.isEmpty() ? "<default>" : packageName) + "): " + statement;
        }
    }

    // ------------------------------------------------------------------ the rule on this project

    @Test
    void ffmAndVectorApiAreUsedOnlyInTheirPackages() {
        assertNoViolations(Path.of("src", "main", "java"), FFM_PACKAGES);
    }

    /** the scan is not vacuous: with no package allowed it finds the uses the allowed packages do have */
    @Test
    void theScanSeesTheUsesOfTheAllowedPackages() {
        List<Violation> all = scan(Path.of("src", "main", "java"), Set.of());
        Set<String> packages = all.stream().map(Violation::packageName).collect(Collectors.toSet());
        assertTrue(packages.contains("dive.tensor") && packages.contains("dive.backend") && packages.contains("dive.io"),
                "expected FFM/Vector API uses in dive.tensor, dive.backend and dive.io, found them in " + packages);
        assertTrue(all.stream().anyMatch(v -> v.file().endsWith("dive/tensor/Tensor.java")
                && v.statement().equals("import java.lang.foreign.MemorySegment;")), all::toString);
    }

    // ------------------------------------------------------------------ the scanner itself

    @Test
    void importsAndQualifiedNamesOutsideTheAllowedPackagesAreViolations() {
        String source = """
                package dive.convert;

                import dive.tensor.Tensor;
                import java.lang.foreign.Arena;
                import static jdk.incubator.vector.FloatVector.SPECIES_256;

                class Example {
                    java.lang.foreign.MemorySegment segment;
                    void f() { var s = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED; }
                }
                """;
        List<Violation> found = violations("dive/convert/Example.java", source, FFM_PACKAGES);
        assertEquals(List.of(
                new Violation("dive/convert/Example.java", "dive.convert", 4, "import java.lang.foreign.Arena;"),
                new Violation("dive/convert/Example.java", "dive.convert", 5, "import static jdk.incubator.vector.FloatVector.SPECIES_256;"),
                new Violation("dive/convert/Example.java", "dive.convert", 8, "java.lang.foreign.MemorySegment segment;"),
                new Violation("dive/convert/Example.java", "dive.convert", 9, "void f() { var s = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED; }")),
                found);
    }

    @Test
    void theAllowedPackagesAndTheirSubpackagesMayUseThem() {
        for (String pkg : List.of("dive.tensor", "dive.backend", "dive.cuda", "dive.io", "dive.bindings", "dive.cuda.internal")) {
            String source = "package " + pkg + ";\nimport java.lang.foreign.Arena;\nimport jdk.incubator.vector.FloatVector;\nclass A {}\n";
            assertEquals(List.of(), violations("A.java", source, FFM_PACKAGES), pkg);
        }
        // a package whose name only starts like an allowed one is not allowed, nor is the default package
        assertEquals(1, violations("A.java", "package dive.tensorflow;\nimport java.lang.foreign.Arena;\n", FFM_PACKAGES).size());
        assertEquals(1, violations("A.java", "import java.lang.foreign.Arena;\nclass A {}\n", FFM_PACKAGES).size());
    }

    @Test
    void commentsAndStringLiteralsDoNotCount() {
        String source = String.join("\n",
                "package dive.convert;",
                "// import java.lang.foreign.Arena;",
                "/* java.lang.foreign.MemorySegment",
                "   jdk.incubator.vector.FloatVector */",
                "/** see {@code java.lang.foreign.Arena} */",
                "class Example {",
                "    String a = \"java.lang.foreign.Arena\", b = \"quote \\\" java.lang.foreign.Arena\";",
                "    char c = '\"';",
                "    String d = \"\"\"",
                "        jdk.incubator.vector.FloatVector \\\"\"\" still text",
                "        \"\"\";",
                "    java.util.List<String> e;",
                "    java.lang.foreign.Arena realUse;",
                "}");
        List<Violation> found = violations("Example.java", source, FFM_PACKAGES);
        assertEquals(1, found.size(), found::toString);
        assertEquals(13, found.getFirst().line());
        assertEquals("java.lang.foreign.Arena realUse;", found.getFirst().statement());
    }

    /** the check fails on a source tree that breaks the rule, naming the file and the import */
    @Test
    void theCheckFailsNamingTheFileAndTheImport(@TempDir Path root) throws IOException {
        Path ok = root.resolve("dive/tensor/Fine.java"), bad = root.resolve("dive/train/Bad.java");
        Files.createDirectories(ok.getParent());
        Files.createDirectories(bad.getParent());
        Files.writeString(ok, "package dive.tensor;\nimport java.lang.foreign.Arena;\nclass Fine {}\n");
        Files.writeString(bad, "package dive.train;\n\nimport java.lang.foreign.MemorySegment;\nclass Bad {}\n");
        assertNoViolations(root.resolve("dive/tensor"), FFM_PACKAGES);  // the allowed file alone passes

        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> assertNoViolations(root, FFM_PACKAGES));
        assertTrue(e.getMessage().contains("dive/train/Bad.java:3 (package dive.train): import java.lang.foreign.MemorySegment;"), e.getMessage());
        assertFalse(e.getMessage().contains("Fine.java"), e.getMessage());
    }

    @Test
    void aMissingSourceFolderFailsInsteadOfPassing(@TempDir Path root) {
        assertThrows(AssertionFailedError.class, () -> assertNoViolations(root.resolve("absent"), FFM_PACKAGES));
    }

    // ------------------------------------------------------------------ the scanner

    /** fails listing every violation under {@code root} (a source folder, e.g. src/main/java) */
    static void assertNoViolations(Path root, Set<String> allowed) {
        assertTrue(Files.isDirectory(root), "no source folder " + root.toAbsolutePath());
        List<Violation> found = scan(root, allowed);
        if (!found.isEmpty())
            fail("the FFM API (java.lang.foreign) and the Vector API (jdk.incubator.vector) belong in " + allowed.stream().sorted().toList()
                    + "; other packages use dive.tensor (Tensor, TensorArena). " + found.size() + " use(s) outside:\n  "
                    + found.stream().map(Violation::toString).collect(Collectors.joining("\n  ")));
    }

    /** the violations of every .java file under {@code root}, files in path order; file names relative to {@code root} with '/' */
    static List<Violation> scan(Path root, Set<String> allowed) {
        try (Stream<Path> files = Files.walk(root)) {
            List<Violation> out = new ArrayList<>();
            for (Path f : files.filter(p -> p.toString().endsWith(".java") && Files.isRegularFile(p)).sorted().toList())
                out.addAll(violations(root.relativize(f).toString().replace('\\', '/'), Files.readString(f), allowed));
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** the violations of one source file: restricted names in its code when its package is not allowed, one per line */
    static List<Violation> violations(String file, String source, Set<String> allowed) {
        String code = codeOnly(source);
        Matcher pm = PACKAGE.matcher(code);
        String pkg = pm.find() ? pm.group(1).replaceAll("\\s+", "") : "";
        if (allowed.stream().anyMatch(a -> pkg.equals(a) || pkg.startsWith(a + "."))) return List.of();
        String[] codeLines = code.split("\n", -1), sourceLines = source.split("\n", -1);
        List<Violation> out = new ArrayList<>();
        for (int i = 0; i < codeLines.length; i++)
            if (RESTRICTED.matcher(codeLines[i]).find()) out.add(new Violation(file, pkg, i + 1, sourceLines[i].strip()));
        return out;
    }

    /** {@code source} with comments and string, text-block and char literals blanked (line breaks kept, so lines stay aligned) */
    static String codeOnly(String source) {
        StringBuilder out = new StringBuilder(source.length());
        int n = source.length(), i = 0;
        while (i < n) {
            char c = source.charAt(i);
            int end;  // the index after the comment or literal that starts at i, or -1 in plain code
            if (source.startsWith("//", i)) {
                end = source.indexOf('\n', i);
                if (end < 0) end = n;
            } else if (source.startsWith("/*", i)) {
                end = source.indexOf("*/", i + 2);
                end = end < 0 ? n : end + 2;
            } else if (source.startsWith("\"\"\"", i)) {
                end = literalEnd(source, i + 3, "\"\"\"");
            } else if (c == '"') {
                end = literalEnd(source, i + 1, "\"");
            } else if (c == '\'') {
                end = literalEnd(source, i + 1, "'");
            } else {
                end = -1;
            }
            if (end < 0) {
                out.append(c);
                i++;
            } else {
                for (; i < end; i++) out.append(source.charAt(i) == '\n' ? '\n' : ' ');
            }
        }
        return out.toString();
    }

    /** the index after the {@code close} that ends a literal whose content starts at {@code from} (backslash escapes skipped) */
    private static int literalEnd(String source, int from, String close) {
        for (int i = from; i < source.length(); i++) {
            if (source.charAt(i) == '\\') i++;
            else if (source.startsWith(close, i)) return i + close.length();
        }
        return source.length();
    }
}
