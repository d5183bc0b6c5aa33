package dive.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPInputStream;

/**
 * Where the corpus sources live. Debian packages are found through dpkg's own records under {@code root}
 * ({@code var/lib/dpkg/status} for the version, {@code var/lib/dpkg/info/<pkg>.list} for the files), so only the
 * files a package installed are read; tests point {@code root} at a fake tree. The JDK sources ({@code lib/src.zip})
 * and the npm package {@code spdx-license-list} live outside dpkg and have their own paths.
 *
 * @param root    file-system root the Debian paths are resolved under ({@code /} on a real machine)
 * @param jdkHome JDK whose {@code lib/src.zip} and {@code release} give the Java datasets
 * @param npmDir  the {@code --prefix} directory {@code spdx-license-list} was installed into
 */
public final class Sources {
    private final Path root, jdkHome, npmDir;

    public Sources(Path root, Path jdkHome, Path npmDir) {
        this.root = root; this.jdkHome = jdkHome; this.npmDir = npmDir;
    }

    public Path root() { return root; }
    public Path jdkHome() { return jdkHome; }
    public Path npmDir() { return npmDir; }

    public static final String SPDX_PACKAGE = "spdx-license-list";

    /** this machine: root {@code /}, the running JDK, npm dir from {@code $DIVE_CORPUS_NPM} or {@code ~/.cache/dive/npm} */
    public static Sources system() {
        String npm = System.getenv("DIVE_CORPUS_NPM");
        Path npmDir = npm != null && !npm.isBlank() ? Path.of(npm)
                : Path.of(System.getProperty("user.home"), ".cache", "dive", "npm");
        return new Sources(Path.of("/"), Path.of(System.getProperty("java.home")), npmDir);
    }

    /** an absolute Debian path ({@code /usr/share/...}) resolved under {@link #root} */
    public Path resolve(String absolutePath) {
        return root.resolve(absolutePath.startsWith("/") ? absolutePath.substring(1) : absolutePath);
    }

    private Map<String, String> versions;

    /** installed version of a Debian package; a clear error when it is not installed */
    public String packageVersion(String pkg) throws IOException {
        Map<String, String> v = installedVersions();
        String version = v.get(pkg);
        if (version == null) {
            throw new MissingSourceException("Debian package " + pkg + " is not installed (no installed entry in "
                    + resolve("/var/lib/dpkg/status") + "); apt-get install " + pkg);
        }
        return version;
    }

    private synchronized Map<String, String> installedVersions() throws IOException {
        if (versions != null) return versions;
        Path status = resolve("/var/lib/dpkg/status");
        if (!Files.isRegularFile(status)) {
            throw new MissingSourceException("no dpkg database at " + status + ": the corpus sources are Debian packages");
        }
        Map<String, String> out = new HashMap<>();
        String pkg = null, version = null;
        boolean installed = false;
        for (String line : Files.readAllLines(status, StandardCharsets.UTF_8)) {
            if (line.isEmpty()) {
                if (pkg != null && installed && version != null) out.put(pkg, version);
                pkg = null; version = null; installed = false;
            } else if (line.startsWith("Package: ")) pkg = line.substring(9).trim();
            else if (line.startsWith("Version: ")) version = line.substring(9).trim();
            else if (line.startsWith("Status: ")) installed = line.trim().endsWith(" installed");
        }
        if (pkg != null && installed && version != null) out.put(pkg, version);
        versions = out;
        return out;
    }

    /** every regular file the package installed (from {@code var/lib/dpkg/info/<pkg>[:arch].list}), in sorted order */
    public List<Path> packageFiles(String pkg) throws IOException {
        packageVersion(pkg);
        Path info = resolve("/var/lib/dpkg/info");
        Path list = info.resolve(pkg + ".list");
        if (!Files.isRegularFile(list)) {
            list = null;
            if (Files.isDirectory(info)) {
                try (DirectoryStream<Path> ds = Files.newDirectoryStream(info, pkg + ":*.list")) {
                    for (Path p : ds) list = p;
                }
            }
            if (list == null) throw new MissingSourceException("Debian package " + pkg + ": no file list " + info.resolve(pkg + ".list"));
        }
        List<String> names = new ArrayList<>(Files.readAllLines(list, StandardCharsets.UTF_8));
        names.sort(null);
        List<Path> files = new ArrayList<>();
        for (String name : names) {
            if (name.isBlank() || name.equals("/.")) continue;
            Path p = resolve(name);
            if (Files.isRegularFile(p) && !Files.isSymbolicLink(p)) files.add(p);
        }
        return files;
    }

    /** a file that must exist, or a clear error naming it and the Debian package that provides it */
    public Path requireFile(String absolutePath, String pkg) throws IOException {
        packageVersion(pkg);
        Path p = resolve(absolutePath);
        if (!Files.isRegularFile(p)) throw new MissingSourceException("missing " + p + " (from Debian package " + pkg + ")");
        return p;
    }

    /** the JDK's {@code lib/src.zip} */
    public Path jdkSourceZip() throws IOException {
        Path zip = jdkHome.resolve("lib").resolve("src.zip");
        if (!Files.isRegularFile(zip)) {
            throw new MissingSourceException("missing " + zip + ": the Java datasets read the JDK's sources (a full JDK, e.g. Temurin 25, ships lib/src.zip)");
        }
        return zip;
    }

    /** e.g. {@code "Eclipse Adoptium JDK 25.0.3 (lib/src.zip)"}, from the JDK's {@code release} file */
    public String jdkDescription() throws IOException {
        Path release = jdkHome.resolve("release");
        String version = "unknown version", vendor = "JDK";
        if (Files.isRegularFile(release)) {
            for (String line : Files.readAllLines(release, StandardCharsets.UTF_8)) {
                if (line.startsWith("JAVA_VERSION=")) version = unquote(line.substring(13));
                if (line.startsWith("IMPLEMENTOR=")) vendor = unquote(line.substring(12));
            }
        }
        return vendor + " JDK " + version + " (lib/src.zip)";
    }

    private static String unquote(String s) {
        return s.length() >= 2 && s.startsWith("\"") && s.endsWith("\"") ? s.substring(1, s.length() - 1) : s;
    }

    /** the npm package directory of {@code spdx-license-list} */
    public Path spdxDir() throws IOException {
        Path dir = npmDir.resolve("node_modules").resolve(SPDX_PACKAGE);
        if (!Files.isRegularFile(dir.resolve("package.json")) || !Files.isRegularFile(dir.resolve("spdx-full.json"))) {
            throw new MissingSourceException("missing npm package " + SPDX_PACKAGE + " in " + dir
                    + " (npm install --prefix " + npmDir + " " + SPDX_PACKAGE + "@6.12.0; pass the directory with --npm-dir or $DIVE_CORPUS_NPM)");
        }
        return dir;
    }

    public String spdxVersion() throws IOException {
        JsonNode pkg = new ObjectMapper().readTree(spdxDir().resolve("package.json").toFile());
        return pkg.path("version").asText("unknown");
    }

    /** file bytes, gunzipped when the name ends in {@code .gz} or {@code .dz} (dictzip is gzip-compatible) */
    public static byte[] readMaybeGzipped(Path file) throws IOException {
        String name = file.getFileName().toString();
        if (name.endsWith(".gz") || name.endsWith(".dz")) {
            try (InputStream in = new GZIPInputStream(Files.newInputStream(file), 1 << 16)) {
                return in.readAllBytes();
            } catch (IOException e) {
                throw new IOException(file + ": cannot decompress (" + e.getMessage() + ")", e);
            }
        }
        return Files.readAllBytes(file);
    }
}
