package dive.data;

import dive.data.Extractors.Extractor;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.Predicate;

/**
 * The datasets the corpus builder knows: 23 datasets in 10 domains, several near relatives per domain (JDK modules,
 * man-page sections, Python library vs core vs docs, Old vs New Testament, OSI vs other licences, ...), so that
 * affinity mining has structure to find. Every source is a Debian package, the npm package spdx-license-list or the
 * JDK's own {@code lib/src.zip}.
 */
public final class Catalog {
    private Catalog() {}

    /** where a dataset's text comes from, for the manifest and SOURCES.md */
    public enum SourceKind { DEBIAN, JDK, NPM }

    /**
     * @param name     dataset name (directory name in the corpus)
     * @param domain   domain label (datasets of one domain are near relatives)
     * @param kind     kind of source
     * @param packages Debian packages read (for {@link SourceKind#DEBIAN}), in the order named in the manifest
     * @param license  licence of the text, as the package's copyright file states it
     * @param upstream where the text comes from upstream
     */
    public record Dataset(String name, String domain, SourceKind kind, List<String> packages, String license, String upstream,
                          Extractor extractor) {
        /** e.g. {@code "manpages-dev 6.03-2, manpages 6.03-2 (Debian)"}; fails clearly when a source is missing */
        public String source(Sources sources) throws IOException {
            return switch (kind) {
                case JDK -> sources.jdkDescription();
                case NPM -> "npm " + Sources.SPDX_PACKAGE + "@" + sources.spdxVersion();
                case DEBIAN -> {
                    List<String> parts = new ArrayList<>();
                    for (String p : packages) parts.add(p + " " + sources.packageVersion(p));
                    yield String.join(", ", parts) + " (Debian)";
                }
            };
        }
    }

    private static final String PY = "/usr/lib/python3.11";
    private static final String PYDOC = "/usr/share/doc/python3.11/html/_sources";
    private static final String MAN = "/usr/share/man";
    private static final String LINUX = "/usr/share/doc/linux-doc-6.1/Documentation";
    private static final String PARI = "/usr/share/pari/doc";
    private static final String FORTUNES = "/usr/share/games/fortunes";

    private static final String JAVA_LICENSE = "GPL-2.0-only WITH Classpath-exception-2.0";
    private static final String PYTHON_LICENSE = "PSF-2.0 (Python Software Foundation License)";
    private static final String MAN_LICENSE = "Linux-man-pages-copyleft and others (GPL-2.0+, BSD variants, Expat), per page";
    private static final String LINUX_LICENSE = "GPL-2.0-only (some files GPL-2.0+, GFDL or dual-licensed, per file)";
    private static final String BIBLE_LICENSE = "Public domain (KJV text, 1611/1769); bible-kjv packaging GPL-2.0+";
    private static final String SPDX_LICENSE = "Licence texts reproduced verbatim under their own terms; spdx-license-list data CC0-1.0";
    private static final String PARI_LICENSE = "GPL-2.0-or-later";
    private static final String FOLDOC_LICENSE = "GFDL-1.1-or-later (no invariant sections)";
    private static final String GCIDE_LICENSE = "GPL-2.0-or-later";
    private static final String FORTUNES_LICENSE = "BSD-3-Clause (fortune-mod); cookie files freely redistributable per Debian copyright";

    /** fortune files of the computing kind (the rest form fortunes-general) */
    private static final Set<String> COMPUTER_FORTUNES = Set.of("computers", "linux", "linuxcookie", "perl", "debian", "knghtbrd", "startrek", "news");
    /** fortune files left out: pictures, not text, and a tiny placeholder */
    private static final Set<String> SKIPPED_FORTUNES = Set.of("art", "ascii-art", "translate-me");

    /** top directories of Documentation/ that document drivers and hardware (the rest form linux-docs-core) */
    private static final Set<String> DRIVER_DOCS = Set.of("driver-api", "hwmon", "sound", "scsi", "input", "gpu", "usb", "i2c", "fb",
            "PCI", "firmware-guide", "hid", "misc-devices", "watchdog", "leds", "spi", "w1", "fpga", "infiniband", "target",
            "devicetree", "media", "pcmcia", "iio", "mmc", "mtd", "nvdimm", "cdrom", "serial", "gpio", "pwm", "rtc", "fault-injection",
            "isdn", "netlabel", "wmi", "crypto", "cpu-freq", "thermal", "ide", "parport");

    private static final List<String> PY_CORE = List.of("libpython3.11-minimal");
    private static final List<String> PY_STDLIB = List.of("libpython3.11-stdlib");
    private static final List<String> PY_DOC = List.of("python3.11-doc");
    private static final List<String> MANPAGES = List.of("manpages", "manpages-dev");
    private static final List<String> LINUX_DOC = List.of("linux-doc-6.1");
    private static final List<String> PARI_DOC = List.of("pari-doc");
    private static final List<String> FORTUNE_PKGS = List.of("fortunes-min", "fortunes");

    private static Predicate<String> manSections(String... sections) {
        return rel -> {
            for (String s : sections) if (rel.startsWith("man" + s + "/") && rel.endsWith(".gz") && rel.indexOf('/') == rel.lastIndexOf('/')) return true;
            return false;
        };
    }

    private static Predicate<String> fortuneFiles(boolean computers) {
        return rel -> !rel.contains("/") && !rel.contains(".") && !SKIPPED_FORTUNES.contains(rel) && COMPUTER_FORTUNES.contains(rel) == computers;
    }

    private static Predicate<String> linuxDocs(boolean drivers) {
        return rel -> {
            if (!(rel.endsWith(".rst.gz") || rel.endsWith(".rst")) || rel.startsWith("translations/")) return false;
            int slash = rel.indexOf('/');
            String top = slash < 0 ? "" : rel.substring(0, slash);
            return DRIVER_DOCS.contains(top) == drivers;
        };
    }

    private static final Extractors.FileHandler RST = (id, text, out) -> Text.addDocument(out, id.replaceFirst("\\.gz$", ""), text);

    private static final List<Dataset> ALL = List.of(
            new Dataset("java-base", "code-java", SourceKind.JDK, List.of(), JAVA_LICENSE, "https://openjdk.org (module java.base)",
                    Extractors.javaModules(m -> m.equals("java.base"))),
            new Dataset("java-desktop", "code-java", SourceKind.JDK, List.of(), JAVA_LICENSE, "https://openjdk.org (module java.desktop)",
                    Extractors.javaModules(m -> m.equals("java.desktop"))),
            new Dataset("java-other", "code-java", SourceKind.JDK, List.of(), JAVA_LICENSE, "https://openjdk.org (all other modules)",
                    Extractors.javaModules(m -> !m.equals("java.base") && !m.equals("java.desktop"))),
            new Dataset("python-core", "code-python", SourceKind.DEBIAN, PY_CORE, PYTHON_LICENSE, "https://www.python.org (minimal standard library, codec tables left out)",
                    Extractors.packageFiles(PY_CORE, PY, rel -> rel.endsWith(".py") && !rel.startsWith("encodings/"), Extractors.WHOLE_FILE)),
            new Dataset("python-stdlib", "code-python", SourceKind.DEBIAN, PY_STDLIB, PYTHON_LICENSE, "https://www.python.org (standard library)",
                    Extractors.packageFiles(PY_STDLIB, PY, rel -> rel.endsWith(".py"), Extractors.WHOLE_FILE)),
            new Dataset("python-docs-library", "docs-python", SourceKind.DEBIAN, PY_DOC, PYTHON_LICENSE, "https://docs.python.org/3.11 (library reference, reStructuredText)",
                    Extractors.packageFiles(PY_DOC, PYDOC, rel -> rel.startsWith("library/") && rel.endsWith(".rst.txt"), Extractors.WHOLE_FILE)),
            new Dataset("python-docs-guides", "docs-python", SourceKind.DEBIAN, PY_DOC, PYTHON_LICENSE, "https://docs.python.org/3.11 (tutorial, reference, howto, C API, what's new)",
                    Extractors.packageFiles(PY_DOC, PYDOC, rel -> !rel.startsWith("library/") && rel.endsWith(".rst.txt"), Extractors.WHOLE_FILE)),
            new Dataset("man2", "manpages", SourceKind.DEBIAN, MANPAGES, MAN_LICENSE, "https://www.kernel.org/doc/man-pages/ (section 2, system calls)",
                    Extractors.packageFiles(MANPAGES, MAN, manSections("2"), Extractors.MAN_PAGE)),
            new Dataset("man3", "manpages", SourceKind.DEBIAN, MANPAGES, MAN_LICENSE, "https://www.kernel.org/doc/man-pages/ (section 3, library functions)",
                    Extractors.packageFiles(MANPAGES, MAN, manSections("3"), Extractors.MAN_PAGE)),
            new Dataset("man-misc", "manpages", SourceKind.DEBIAN, MANPAGES, MAN_LICENSE, "https://www.kernel.org/doc/man-pages/ (sections 1, 4, 5, 6, 7, 8)",
                    Extractors.packageFiles(MANPAGES, MAN, manSections("1", "4", "5", "6", "7", "8"), Extractors.MAN_PAGE)),
            new Dataset("bible-ot-history", "scripture", SourceKind.DEBIAN, List.of("bible-kjv-text", "bible-kjv"), BIBLE_LICENSE, "King James Version (Genesis to Esther)",
                    Extractors.bible(0, 17)),
            new Dataset("bible-ot-prophets", "scripture", SourceKind.DEBIAN, List.of("bible-kjv-text", "bible-kjv"), BIBLE_LICENSE, "King James Version (Job to Malachi: poetry and prophets)",
                    Extractors.bible(17, 39)),
            new Dataset("bible-nt", "scripture", SourceKind.DEBIAN, List.of("bible-kjv-text", "bible-kjv"), BIBLE_LICENSE, "King James Version (New Testament)",
                    Extractors.bible(39, 66)),
            new Dataset("spdx-osi", "legal", SourceKind.NPM, List.of(), SPDX_LICENSE, "https://spdx.org/licenses/ (OSI-approved licences)",
                    Extractors.spdx(true)),
            new Dataset("spdx-other", "legal", SourceKind.NPM, List.of(), SPDX_LICENSE, "https://spdx.org/licenses/ (licences not OSI-approved)",
                    Extractors.spdx(false)),
            new Dataset("pari-manual", "math-tex", SourceKind.DEBIAN, PARI_DOC, PARI_LICENSE, "https://pari.math.u-bordeaux.fr (User's Guide, TeX)",
                    Extractors.packageFiles(PARI_DOC, PARI, rel -> rel.matches("usersch[0-9]+\\.tex"), Extractors.WHOLE_FILE)),
            new Dataset("pari-tutorial", "math-tex", SourceKind.DEBIAN, PARI_DOC, PARI_LICENSE, "https://pari.math.u-bordeaux.fr (tutorials, developer guide, refcard, TeX)",
                    Extractors.packageFiles(PARI_DOC, PARI, rel -> rel.matches("(tutorial|tutorial-mf|develop|refcard|appb|appd)\\.tex"), Extractors.WHOLE_FILE)),
            new Dataset("foldoc", "dictionary", SourceKind.DEBIAN, List.of("dict-foldoc"), FOLDOC_LICENSE, "https://foldoc.org (Free On-line Dictionary of Computing)",
                    Extractors.dictd("dict-foldoc", "foldoc")),
            new Dataset("gcide", "dictionary", SourceKind.DEBIAN, List.of("dict-gcide"), GCIDE_LICENSE, "https://gcide.gnu.org.ua (Collaborative International Dictionary of English)",
                    Extractors.dictd("dict-gcide", "gcide")),
            new Dataset("fortunes-computers", "humor", SourceKind.DEBIAN, FORTUNE_PKGS, FORTUNES_LICENSE, "fortune-mod cookie files (computers, linux, perl, debian, ...)",
                    Extractors.packageFiles(FORTUNE_PKGS, FORTUNES, fortuneFiles(true), Extractors.FORTUNES)),
            new Dataset("fortunes-general", "humor", SourceKind.DEBIAN, FORTUNE_PKGS, FORTUNES_LICENSE, "fortune-mod cookie files (all other topics)",
                    Extractors.packageFiles(FORTUNE_PKGS, FORTUNES, fortuneFiles(false), Extractors.FORTUNES)),
            new Dataset("linux-docs-core", "kernel-docs", SourceKind.DEBIAN, LINUX_DOC, LINUX_LICENSE, "https://www.kernel.org/doc/html/v6.1/ (admin guide, networking, filesystems, core API, ...)",
                    Extractors.packageFiles(LINUX_DOC, LINUX, linuxDocs(false), RST)),
            new Dataset("linux-docs-drivers", "kernel-docs", SourceKind.DEBIAN, LINUX_DOC, LINUX_LICENSE, "https://www.kernel.org/doc/html/v6.1/ (driver and hardware documentation)",
                    Extractors.packageFiles(LINUX_DOC, LINUX, linuxDocs(true), RST)));

    /** every dataset, in catalogue order */
    public static List<Dataset> all() { return ALL; }

    /** the named datasets (comma list) in catalogue order; unknown names are an error listing the known ones */
    public static List<Dataset> select(List<String> names) {
        if (names == null || names.isEmpty()) return ALL;
        for (String n : names) {
            if (ALL.stream().noneMatch(d -> d.name().equals(n))) {
                throw new IllegalArgumentException("unknown dataset '" + n + "': known are " + String.join(", ", ALL.stream().map(Dataset::name).toList()));
            }
        }
        return ALL.stream().filter(d -> names.contains(d.name())).toList();
    }
}
