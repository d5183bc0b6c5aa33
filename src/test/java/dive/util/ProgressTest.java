package dive.util;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;

import static org.junit.jupiter.api.Assertions.*;

class ProgressTest {
    @Test
    void clockFormats() {
        assertEquals("0:09", Progress.clock(9.4));
        assertEquals("2:05", Progress.clock(125));
        assertEquals("1:00:01", Progress.clock(3601));
    }

    @Test
    void nonInteractivePrintsOneLinePerDecile() {
        var buf = new ByteArrayOutputStream();
        try (var p = new Progress("calib", 100, "windows", true, new PrintStream(buf), false)) {
            for (int i = 0; i < 100; i++) p.step(1);
        }
        String[] lines = buf.toString().split("\n");
        assertEquals(11, lines.length); // 0% is not printed until the first step: deciles 0..10
        assertTrue(lines[10].contains("100%") && lines[10].contains("100/100 windows"), lines[10]);
    }

    @Test
    void disabledPrintsNothing() {
        var buf = new ByteArrayOutputStream();
        try (var p = new Progress("x", 10, "t", false, new PrintStream(buf), false)) { p.step(10); }
        assertEquals("", buf.toString());
    }
}
