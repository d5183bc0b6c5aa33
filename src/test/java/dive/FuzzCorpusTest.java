package dive;

import dive.io.SafetensorsException;
import dive.io.SafetensorsFile;
import dive.model.ConfigException;
import dive.model.LlamaConfig;
import dive.tokenizer.Tokenizer;
import dive.tokenizer.TokenizerFormatException;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The regression corpus of {@link FuzzTest}: inputs that once crashed the loader (an OutOfMemoryError, an index error,
 * a message over several lines) or were accepted though out of range, kept under {@code src/test/resources/fuzz/}
 * ({@code tokenizer/}, {@code config/}, {@code safetensors/}). Each must now be refused with the format's own exception
 * and exactly the one-line message that {@code expected.txt} of its folder gives for it (one line per input:
 * the file name, a tab, the message after "PATH: "). A new input without a line fails, printing the message it gets.
 */
class FuzzCorpusTest {
    static final Path CORPUS = Path.of("src/test/resources/fuzz");

    interface Loader {
        void load(Path file) throws Exception;
    }

    @TestFactory
    Stream<DynamicTest> tokenizer() throws IOException {
        return cases("tokenizer", TokenizerFormatException.class, Tokenizer::load);
    }

    @TestFactory
    Stream<DynamicTest> config() throws IOException {
        return cases("config", ConfigException.class, LlamaConfig::load);
    }

    @TestFactory
    Stream<DynamicTest> safetensors() throws IOException {
        return cases("safetensors", SafetensorsException.class, f -> SafetensorsFile.open(f).close());
    }

    private static Stream<DynamicTest> cases(String format, Class<? extends Exception> refusal, Loader loader) throws IOException {
        Path folder = CORPUS.resolve(format);
        Map<String, String> expected = new LinkedHashMap<>();
        for (String line : Files.readAllLines(folder.resolve("expected.txt"), StandardCharsets.UTF_8)) {
            if (line.isBlank()) continue;
            int tab = line.indexOf('\t');
            assertTrue(tab > 0, "expected.txt line without a tab: " + line);
            expected.put(line.substring(0, tab), line.substring(tab + 1));
        }
        List<Path> inputs = new ArrayList<>();
        try (Stream<Path> s = Files.list(folder)) {
            s.filter(p -> !p.getFileName().toString().equals("expected.txt")).sorted().forEach(inputs::add);
        }
        assertFalse(inputs.isEmpty(), "no corpus in " + folder);
        for (String name : expected.keySet())
            assertTrue(Files.exists(folder.resolve(name)), folder + "/expected.txt names a missing input " + name);
        return inputs.stream().map(file -> DynamicTest.dynamicTest(format + "/" + file.getFileName(), () -> {
            Throwable thrown = null;
            try {
                loader.load(file);
            } catch (Throwable t) {
                thrown = t;
            }
            assertNotNull(thrown, file + " was accepted");
            Throwable caught = thrown;
            assertInstanceOf(refusal, caught, () -> file + ": " + caught);
            String message = caught.getMessage();
            String prefix = file + ": ";
            assertTrue(message.startsWith(prefix), "names the file: " + message);
            assertFalse(message.contains("\n") || message.contains("\r"), "one line: " + message);
            String want = expected.get(file.getFileName().toString());
            assertNotNull(want, "no line in " + folder + "/expected.txt for " + file.getFileName() + "; it gets: "
                    + file.getFileName() + "\t" + message.substring(prefix.length()));
            assertEquals(want, message.substring(prefix.length()));
        }));
    }
}
