package dive.data;

import dive.cli.Main;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class CorpusCommandTest {
    @TempDir Path tmp;

    private record Run(int code, String out, String err) {}

    private static Run run(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true));
        System.setErr(new PrintStream(err, true));
        try {
            return new Run(Main.run(args), out.toString(), err.toString());
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    @Test void buildWithAMissingPackageExitsOneNamingIt() throws Exception {
        new FakeSources(tmp.resolve("root")).pkg("manpages", "6.03-2").sources(tmp, tmp);
        Run r = run("corpus", "build", "--out", tmp.resolve("out").toString(), "--root", tmp.resolve("root").toString(), "--datasets", "gcide", "-q");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("dataset gcide") && r.err().contains("dict-gcide is not installed"), r.err());
        assertFalse(Files.exists(tmp.resolve("out/manifest.json")));
    }

    @Test void unknownDatasetIsAnError() {
        Run r = run("corpus", "build", "--out", tmp.toString(), "--datasets", "klingon");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("unknown dataset 'klingon'"), r.err());
    }

    @Test void sampleOfTheBundledSampleReproducesItsFiles() throws Exception {
        // the bundled sample is itself a corpus: sampling it with a budget above its size returns the same files
        Path from = tmp.resolve("from");
        Corpus bundled = Corpus.bundled();
        for (Manifest.Entry e : bundled.datasets()) {
            Files.createDirectories(from.resolve(e.name()));
            for (Split s : Split.values()) Files.write(from.resolve(e.name()).resolve(s.fileName()), bundled.fileBytes(e.name(), s));
        }
        Files.writeString(from.resolve("manifest.json"), bundled.manifest().toJson());
        Run r = run("corpus", "sample", "--from", from.toString(), "--out", tmp.resolve("again").toString(), "--bytes-per-dataset", "100000000");
        assertEquals(0, r.code(), r.err());
        assertEquals(bundled.manifest(), Corpus.open(tmp.resolve("again")).manifest());
        assertTrue(r.out().contains("23 datasets"), r.out());
    }
}
