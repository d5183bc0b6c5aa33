package dive.data;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class TextTest {
    @Test void normalizeLineEndsBlankRunsTrailingSpacesAndControls() {
        String in = "\uFEFF\n\nline one  \r\n\tindented\u0007 x\r\n\n\n\nlast\t \n\n";
        assertEquals("line one\n\tindented x\n\nlast\n", Text.normalize(in));
    }

    @Test void decodeFallsBackToLatin1ForInvalidUtf8() {
        assertEquals("caf\u00e9", Text.decode(new byte[] {'c', 'a', 'f', (byte) 0xc3, (byte) 0xa9}));
        assertEquals("caf\u00e9", Text.decode(new byte[] {'c', 'a', 'f', (byte) 0xe9})); // ISO-8859-1 é
    }

    @Test void utf8LengthCountsEncodedBytes() {
        assertEquals("aé€😀".getBytes(java.nio.charset.StandardCharsets.UTF_8).length, Text.utf8Length("aé€😀"));
    }

    @Test void splitPartsCutsAtBlankLinesThenLinesAndLosesNothing() {
        String para = "x".repeat(30) + "\n";           // 31 bytes
        String text = para + para + "\n" + para + para; // two paragraphs of 62 bytes
        List<String> parts = Text.splitParts(text, 70);
        assertEquals(List.of(para + para, para + para), parts);
        // no blank line: cut at a line end
        List<String> lines = Text.splitParts(para + para + para, 70);
        assertEquals(List.of(para + para, para), lines);
        // one long line: hard cut, every byte kept
        String longLine = "y".repeat(150);
        List<String> hard = Text.splitParts(longLine, 70);
        assertEquals(List.of("y".repeat(70), "y".repeat(70), "y".repeat(10)), hard);
    }

    @Test void addDocumentDropsNearEmptyAndNumbersParts() {
        List<Document> out = new ArrayList<>();
        Text.addDocument(out, "short", "too short");
        assertTrue(out.isEmpty());
        String para = "word ".repeat(1000).strip() + "\n"; // ~5 KB
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 8; i++) big.append(para).append('\n'); // ~40 KB, paragraphs of ~5 KB
        Text.addDocument(out, "big", big.toString());
        assertEquals(List.of("big#1", "big#2", "big#3"), out.stream().map(Document::id).toList());
        for (Document d : out) assertTrue(Text.utf8Length(d.text()) <= Text.MAX_PART_BYTES);
        assertEquals(Text.normalize(big.toString()), String.join("\n", out.stream().map(Document::text).toList()));
    }
}
