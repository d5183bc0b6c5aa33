package dive.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Every command checks all its options before it prints or does anything: one line naming the flag, nothing on stdout. */
class OptionValidationTest {
    static final String MODEL = CliTest.MODEL.toString();
    @TempDir Path tmp;

    static void assertRefusedBeforeAnything(CliTest.Run r, String expected) {
        assertNotEquals(0, r.code(), r.out());
        assertEquals("", r.out(), "printed before the options were checked");
        assertTrue(r.err().contains(expected), "expected «" + expected + "» in: " + r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--temperature|NaN|--temperature NaN: expected a finite value ≥ 0",
            "--temperature|Infinity|--temperature Infinity: expected a finite value ≥ 0",
            "--temperature|-1|--temperature -1.0: expected a finite value ≥ 0",
            "--top-p|NaN|--top-p NaN: expected in (0, 1]",
            "--max-tokens|-1|--max-tokens -1: expected ≥ 0",
    })
    void generateChecksItsOptionsBeforeThePromptIsPrinted(String flag, String value, String expected) {
        assertRefusedBeforeAnything(CliTest.run("generate", MODEL, "--prompt", "hello", flag, value, "-q"), expected);
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--repeats|0|--repeats 0: expected ≥ 1",
            "--batch|0|--batch 0: expected ≥ 1",
            "--prompt-len|0|--prompt-len 0: expected ≥ 1",
            "--gen|0|--gen 0: expected ≥ 1",
    })
    void benchChecksItsOptionsBeforeLoadingTheModel(String flag, String value, String expected) {
        // a model folder that does not exist: the option is reported, not the folder
        assertRefusedBeforeAnything(CliTest.run("bench", tmp.resolve("no-model").toString(), flag, value, "-q"), expected);
    }

    @Test
    void demoChecksItsOptionsBeforePrintingTheModel() {
        Path out = tmp.resolve("demo");
        assertRefusedBeforeAnything(CliTest.run("demo", "--out", out.toString(), "--experts", "0", "-q"), "experts 0: expected ≥ 1");
        assertRefusedBeforeAnything(CliTest.run("demo", "--out", out.toString(), "--ratio", "0.0001", "-q"), "ratio 1.0E-4 removes 0 of");
        assertFalse(Files.exists(out));
    }
}
