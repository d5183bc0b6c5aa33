package dive.convert;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** The exact capacitated assignment behind CMoE's balanced clustering. */
class CmoeBalancedAssignmentTest {

    static long total(long[][] cost, int[] cluster) {
        long t = 0;
        for (int i = 0; i < cluster.length; i++) t += cost[i][cluster[i]];
        return t;
    }

    static long bruteForce(long[][] cost, int[] capacity, int[] load, int next) {
        if (next == cost.length) return 0;
        long best = Long.MAX_VALUE;
        for (int q = 0; q < capacity.length; q++) {
            if (load[q] == capacity[q]) continue;
            load[q]++;
            long rest = bruteForce(cost, capacity, load, next + 1);
            if (rest != Long.MAX_VALUE) best = Math.min(best, cost[next][q] + rest);
            load[q]--;
        }
        return best;
    }

    @Test
    void optimalAgainstBruteForceOnSmallInstances() {
        Random random = new Random(11);
        for (int trial = 0; trial < 200; trial++) {
            int c = 2 + random.nextInt(3);
            int[] capacity = new int[c];
            int places = 0;
            for (int q = 0; q < c; q++) { capacity[q] = random.nextInt(4); places += capacity[q]; }
            if (places == 0) continue;
            int n = places - random.nextInt(Math.min(places, 2));  // sometimes spare places
            long[][] cost = new long[n][c];
            for (long[] row : cost) for (int q = 0; q < c; q++) row[q] = random.nextInt(trial % 2 == 0 ? 5 : 1000) - 2;  // ties and negatives too
            int[] cluster = BalancedAssignment.assign(cost, capacity);
            int[] load = new int[c];
            for (int q : cluster) load[q]++;
            for (int q = 0; q < c; q++) assertTrue(load[q] <= capacity[q], "trial " + trial);
            assertEquals(bruteForce(cost, capacity, new int[c], 0), total(cost, cluster), "trial " + trial);
            assertArrayEquals(cluster, BalancedAssignment.assign(cost, capacity), "deterministic");
        }
    }

    @Test
    void largeInstanceHasEqualSizesAndNoImprovingSwap() {
        int n = 700, c = 14, m = n / c;
        Random random = new Random(5);
        long[][] cost = new long[n][c];
        for (long[] row : cost) for (int q = 0; q < c; q++) row[q] = random.nextInt(500);
        int[] capacity = new int[c];
        java.util.Arrays.fill(capacity, m);
        int[] cluster = BalancedAssignment.assign(cost, capacity);
        int[] load = new int[c];
        for (int q : cluster) load[q]++;
        for (int q = 0; q < c; q++) assertEquals(m, load[q]);
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                assertTrue(cost[i][cluster[j]] + cost[j][cluster[i]] >= cost[i][cluster[i]] + cost[j][cluster[j]], "swapping " + i + " and " + j + " improves");
    }

    @Test
    void refusesTooFewPlaces() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> BalancedAssignment.assign(new long[3][2], new int[] {1, 1}));
        assertTrue(e.getMessage().contains("capacity"));
    }
}
