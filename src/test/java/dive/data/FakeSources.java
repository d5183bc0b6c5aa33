package dive.data;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPOutputStream;

/** A tiny fake machine for the extractors: a dpkg database and package files under a temp root. */
final class FakeSources {
    final Path root;
    private final Map<String, List<String>> packages = new LinkedHashMap<>();
    private final Map<String, String> versions = new LinkedHashMap<>();

    FakeSources(Path root) { this.root = root; }

    /** declares a package as installed (even with no files) */
    FakeSources pkg(String name, String version) {
        packages.computeIfAbsent(name, k -> new ArrayList<>());
        versions.put(name, version);
        return this;
    }

    /** adds a file (absolute Debian path) owned by {@code pkg} */
    FakeSources file(String pkg, String absolutePath, byte[] content) throws IOException {
        Path p = root.resolve(absolutePath.substring(1));
        Files.createDirectories(p.getParent());
        Files.write(p, content);
        packages.computeIfAbsent(pkg, k -> new ArrayList<>()).add(absolutePath);
        return this;
    }

    FakeSources file(String pkg, String absolutePath, String content) throws IOException {
        return file(pkg, absolutePath, content.getBytes(StandardCharsets.UTF_8));
    }

    static byte[] gzip(String text) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(bytes)) { gz.write(text.getBytes(StandardCharsets.UTF_8)); }
        return bytes.toByteArray();
    }

    /** writes var/lib/dpkg/status and the info/*.list files; returns Sources over this root */
    Sources sources(Path jdkHome, Path npmDir) throws IOException {
        Path info = root.resolve("var/lib/dpkg/info");
        Files.createDirectories(info);
        StringBuilder status = new StringBuilder();
        for (Map.Entry<String, List<String>> e : packages.entrySet()) {
            status.append("Package: ").append(e.getKey()).append('\n')
                    .append("Status: install ok installed\n")
                    .append("Version: ").append(versions.getOrDefault(e.getKey(), "1.0-1")).append("\n\n");
            List<String> lines = new ArrayList<>(List.of("/.", "/usr"));
            lines.addAll(e.getValue());
            Files.write(info.resolve(e.getKey() + ".list"), lines);
        }
        // a package known to dpkg but removed: must count as missing
        status.append("Package: removed-pkg\nStatus: deinstall ok config-files\nVersion: 9\n\n");
        Files.writeString(root.resolve("var/lib/dpkg/status"), status.toString());
        return new Sources(root, jdkHome, npmDir);
    }
}
