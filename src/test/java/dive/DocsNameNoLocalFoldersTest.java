package dive;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The project's documents cite commands and placeholders (OUT, RUN_DIR), never folders that exist on one machine only:
 * run folders ({@code runs/<name>}) or absolute paths outside the system folders a command may name (the toolchain
 * under /usr, devices, /proc, /sys, /opt, /etc, /bin) — wherever a user's files live, the documents say OUT instead.
 * The server's HTTP routes (/v1/…, /health, /metrics) are URLs, not folders.
 */
class DocsNameNoLocalFoldersTest {
    static final Pattern LOCAL = Pattern.compile("(?<![\\w.>])(runs/[A-Za-z0-9][\\w.-]*|/(?!(usr|dev|proc|sys|opt|etc|bin|v1|health|metrics)\\b)[a-z]\\w*(/|\\b))");

    @Test
    void documentsNameNoLocalFolders() throws Exception {
        List<Path> docs = new ArrayList<>(List.of(Path.of("README.md"), Path.of("native/README.md")));
        try (Stream<Path> s = Files.list(Path.of("docs"))) { s.filter(p -> p.toString().endsWith(".md")).forEach(docs::add); }
        try (Stream<Path> s = Files.list(Path.of("benchmarks"))) { s.filter(p -> p.toString().endsWith(".md")).forEach(docs::add); }
        List<String> found = new ArrayList<>();
        for (Path doc : docs) {
            if (!Files.isRegularFile(doc)) continue;
            List<String> lines = Files.readAllLines(doc);
            for (int i = 0; i < lines.size(); i++) {
                Matcher m = LOCAL.matcher(lines.get(i));
                while (m.find()) found.add(doc + ":" + (i + 1) + ": " + m.group());
            }
        }
        assertEquals(List.of(), found, "machine-local folders in the documents");
    }
}
