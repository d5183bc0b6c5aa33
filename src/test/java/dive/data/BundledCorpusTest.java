package dive.data;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/** The sample bundled under /dive/corpus/ (read from the classpath, as from the jar). */
class BundledCorpusTest {
    @Test void manifestMatchesFilesAndEverySplitHasDocuments() throws IOException {
        Corpus c = Corpus.bundled();
        assertTrue(c.location().startsWith("classpath:"));
        CorpusBuilderTest.checkManifestAgainstFiles(c);
        Set<String> domains = new HashSet<>();
        long total = 0;
        for (Manifest.Entry e : c.datasets()) {
            domains.add(e.domain());
            for (Split s : Split.values()) {
                assertFalse(c.documents(e.name(), s).isEmpty(), e.name() + " " + s + " is empty");
                total += e.bytes().get(s);
            }
        }
        assertTrue(c.datasets().size() >= 16, "datasets: " + c.datasets().size());
        assertTrue(domains.size() >= 6, "domains: " + domains);
        assertTrue(total <= 4L << 20, "bundled sample is " + total + " bytes");
        assertEquals(Catalog.all().stream().map(Catalog.Dataset::name).toList(), c.datasets().stream().map(Manifest.Entry::name).toList());
    }

    @Test void sourcesFileNamesEveryDatasetAndLicence() throws IOException {
        try (InputStream in = Corpus.class.getResourceAsStream(Corpus.BUNDLED_RESOURCE_DIR + "SOURCES.md")) {
            assertNotNull(in, "SOURCES.md missing");
            String text = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            for (Manifest.Entry e : Corpus.bundled().datasets()) {
                assertTrue(text.contains("| " + e.name() + " | " + e.domain() + " | " + e.source()), e.name());
                assertTrue(text.contains(e.license()), e.name());
            }
        }
    }

    @Test void unknownDatasetIsAClearError() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Corpus.bundled().documents("nope", Split.TRAIN));
        assertTrue(e.getMessage().contains("'nope'") && e.getMessage().contains("man2"));
    }
}
