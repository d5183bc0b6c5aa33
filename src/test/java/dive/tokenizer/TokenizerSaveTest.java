package dive.tokenizer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Saving a tokenizer (the BPE trainer's output): atomic, read back equal, and an I/O error names the file. */
class TokenizerSaveTest {
    @TempDir Path tmp;

    @Test
    void savesAtomicallyAndReadsBackTheSameIds() throws Exception {
        Tokenizer t = Tokenizer.load(Path.of("src/main/resources/dive/default/tokenizer.json"));
        Path out = tmp.resolve("sub/tokenizer.json");
        t.save(out);
        Tokenizer back = Tokenizer.load(out);
        String text = "public static void main(String[] args) { return Ünïcödé; }";
        assertArrayEquals(t.encode(text), back.encode(text));
        try (var files = Files.list(out.getParent())) {
            assertEquals(1, files.count(), "no temp file left beside it");
        }
    }

    @Test
    void anIoErrorNamesTheFile() throws Exception {
        Tokenizer t = Tokenizer.load(Path.of("src/main/resources/dive/default/tokenizer.json"));
        Path folder = Files.createDirectories(tmp.resolve("tokenizer.json"));  // a folder where the file should go
        IOException e = assertThrows(IOException.class, () -> t.save(folder));
        assertTrue(e.getMessage().startsWith("writing " + folder) && e.getMessage().contains("Is a directory"), e.getMessage());
        Path blocked = Files.writeString(tmp.resolve("file"), "x").resolve("tokenizer.json");  // a file where a folder should be
        IOException f = assertThrows(IOException.class, () -> t.save(blocked));
        assertTrue(f.getMessage().contains(blocked.toString()), f.getMessage());
    }
}
