package dive.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** A failed read or write reaches the user as one line naming the command, what was being done and the path; never a stack trace. */
class IoErrorsCliTest {
    static final String MODEL = CliTest.MODEL.toString();
    @TempDir Path tmp;

    static void assertOneLine(CliTest.Run r, String expected) {
        assertEquals(1, r.code(), r.out());
        assertEquals(expected, r.err().strip());
    }

    @Test
    void logitsIntoADirectory() throws Exception {
        Path out = Files.createDirectories(tmp.resolve("logits.npy"));
        assertOneLine(CliTest.run("logits", MODEL, "--ids", "1,2", "--out", out.toString(), "-q"),
                "dive logits: writing " + out + ": Is a directory");
    }

    @Test
    void logitsIntoAReadOnlyFolder() {
        // /sys refuses new files even to root (a read-only folder made with chmod does not stop root)
        Path ro = Path.of("/sys");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isDirectory(ro) && !Files.exists(ro.resolve("dive-logits.npy")));
        Path out = ro.resolve("dive-logits.npy");
        CliTest.Run r = CliTest.run("logits", MODEL, "--ids", "1,2", "--out", out.toString(), "-q");
        org.junit.jupiter.api.Assumptions.assumeFalse(r.code() == 0, "/sys is writable here");
        assertTrue(r.err().strip().startsWith("dive logits: writing " + out + ": "), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
    }

    @Test
    void pplOfADirectory() {
        assertOneLine(CliTest.run("ppl", MODEL, "--text", tmp.toString(), "-q"), "dive ppl: reading " + tmp + ": Is a directory");
    }

    @Test
    void tokenizeOfADirectory() {
        assertOneLine(CliTest.run("tokenize", MODEL, "--text", tmp.toString()), "dive tokenize: reading " + tmp + ": Is a directory");
    }

    @Test
    void trainRecipeThatIsADirectory() {
        Path recipe = tmp.resolve("r.yaml");
        assertDoesNotThrow(() -> Files.createDirectories(recipe));
        assertOneLine(CliTest.run("train", "--recipe", recipe.toString(), "--out", tmp.resolve("run").toString(), "-q"),
                "dive train: reading " + recipe + ": Is a directory");
    }

    @Test
    void convertRecipeThatIsADirectory() {
        Path recipe = tmp.resolve("c.yaml");
        assertDoesNotThrow(() -> Files.createDirectories(recipe));
        assertOneLine(CliTest.run("convert", MODEL, "--experts", "2", "--top-k", "1", "--ratio", "0.5", "--out", tmp.resolve("o").toString(),
                "--recipe", recipe.toString(), "-q"), "dive convert: reading " + recipe + ": Is a directory");
    }

    @Test
    void aFileSystemErrorWithoutWordsIsDescribed() {
        assertEquals("runs/x: Permission denied", Main.describe(new java.nio.file.AccessDeniedException("runs/x")));
        assertEquals("runs/x: Not a directory", Main.describe(new java.nio.file.NotDirectoryException("runs/x")));
        assertEquals("runs/x: File exists", Main.describe(new java.nio.file.FileAlreadyExistsException("runs/x")));
    }
}
