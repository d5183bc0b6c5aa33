package dive;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The library takes its settings (the backend above all) as parameters: no code under src/main/java outside the
 * command line ({@code dive/cli/}, which holds {@code Main}) reads a {@code dive.*} system property. A plain source scan.
 */
class LibraryReadsNoSettingsTest {
    static final Path MAIN = Path.of("src/main/java");
    static final String READ = "System.getProperty(\"dive.";
    @Test
    void noLibraryCodeReadsADiveProperty() throws IOException {
        List<String> found = new ArrayList<>();
        try (Stream<Path> files = Files.walk(MAIN)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".java")).sorted().toList()) {
                String rel = MAIN.relativize(f).toString().replace('\\', '/');
                if (rel.startsWith("dive/cli/")) continue;
                List<String> lines = Files.readAllLines(f);
                for (int i = 0; i < lines.size(); i++) {
                    int at = lines.get(i).indexOf(READ);
                    if (at < 0) continue;
                    found.add(rel + ":" + (i + 1) + ": " + lines.get(i).strip());
                }
            }
        }
        assertEquals(List.of(), found, "library code reads dive.* system properties; pass the setting as a parameter instead");
    }
}
