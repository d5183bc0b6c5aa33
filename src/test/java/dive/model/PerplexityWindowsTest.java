package dive.model;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

class PerplexityWindowsTest {
    @Test
    void windowCountByHand() {
        assertEquals(4, Perplexity.windowCount(105, 32));  // 32+32+32+9
        assertEquals(3, Perplexity.windowCount(97, 32));   // the last window of 1 token predicts nothing
        assertEquals(3, Perplexity.windowCount(96, 32));
        assertEquals(0, Perplexity.windowCount(1, 32));
    }
}
