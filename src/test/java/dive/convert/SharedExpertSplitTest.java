package dive.convert;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SharedExpertSplitTest {

    @Test
    void widthsKeepThePlainSettingsActiveWidth() {
        // top-1, r = 0.5 on I = 1024: A = 512, half shared → 256 + 1 × 256
        assertEquals(new SharedExpertSplit.Widths(512, 256, 256), SharedExpertSplit.widths(1024, 8, 1, 0.5, 0.5));
        // top-2, r = 0.75: A = 2 × 256 = 512 → 256 + 2 × 128
        assertEquals(new SharedExpertSplit.Widths(512, 256, 128), SharedExpertSplit.widths(1024, 8, 2, 0.75, 0.5));
        // TinyLlama's FFN (5632), top-2, r = 0.75: A = 2 × 1408 = 2816, a quarter shared → 704 + 2 × 1056
        assertEquals(new SharedExpertSplit.Widths(2816, 704, 1056), SharedExpertSplit.widths(5632, 8, 2, 0.75, 0.25));
    }

    @Test
    void widthsRefuseSharesThatCannotBeHonoured() {
        IllegalArgumentException odd = assertThrows(IllegalArgumentException.class, () -> SharedExpertSplit.widths(10, 4, 2, 0.5, 0.5));
        // A = 2 × 5 = 10, S = 5: 5 routed channels cannot split into 2 equal experts
        assertTrue(odd.getMessage().contains("shared_share 0.5") && odd.getMessage().contains("top_k 2"), odd.getMessage());
        assertThrows(IllegalArgumentException.class, () -> SharedExpertSplit.widths(1024, 8, 1, 0.5, 0));
        assertThrows(IllegalArgumentException.class, () -> SharedExpertSplit.widths(1024, 8, 1, 0.5, 1));
        assertThrows(IllegalArgumentException.class, () -> SharedExpertSplit.widths(1024, 8, 1, 0.5, Double.NaN));
        // A = 4 × 768 = 3072, S = 307: the 2765 routed active channels do not split into 4 equal experts
        assertThrows(IllegalArgumentException.class, () -> SharedExpertSplit.widths(1024, 8, 4, 0.25, 0.1));
    }

    @Test
    void sharedHoldsThePooledTopAndRoutedTheGroupSpecificRest() {
        // 8 channels; pooled scores rank 5 > 2 > 7 > 0 > ...; S = 2 → shared {2, 5}
        double[] pooled = {4, 1, 7, 0.5, 2, 9, 3, 6};
        double[][] groups = {
                {9, 8, 7, 6, 5, 4, 3, 2},   // without 2 and 5: 0 (9), 1 (8) → {0, 1}
                {0, 0, 9, 1, 2, 9, 3, 3},   // without 2 and 5: 6 (3), 7 (3) tie → lower index first: 6, 7 → {6, 7}
        };
        SharedExpertSplit.Split s = SharedExpertSplit.split(pooled, groups, new SharedExpertSplit.Widths(4, 2, 2));
        assertArrayEquals(new int[] {2, 5}, s.shared());
        assertArrayEquals(new int[] {0, 1}, s.routed()[0]);
        assertArrayEquals(new int[] {6, 7}, s.routed()[1]);
    }

    @Test
    void routedExpertsNeverHoldASharedChannel() {
        java.util.Random r = new java.util.Random(3);
        int channels = 64;
        double[] pooled = r.doubles(channels).toArray();
        double[][] groups = new double[5][];
        for (int g = 0; g < groups.length; g++) groups[g] = r.doubles(channels).toArray();
        SharedExpertSplit.Split s = SharedExpertSplit.split(pooled, groups, new SharedExpertSplit.Widths(32, 16, 16));
        java.util.Set<Integer> shared = new java.util.HashSet<>();
        for (int j : s.shared()) shared.add(j);
        assertEquals(16, shared.size());
        for (int[] e : s.routed()) {
            assertEquals(16, e.length);
            for (int j : e) assertTrue(!shared.contains(j), "channel " + j + " is shared and routed");
        }
    }
}
