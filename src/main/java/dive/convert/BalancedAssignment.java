package dive.convert;

import java.util.Arrays;

/**
 * Minimum-cost assignment of n items to c clusters of given capacities (Σ capacity ≥ n): the balanced clustering step
 * of CMoE, which the authors solve as a square linear assignment problem (Jonker–Volgenant on an n × n matrix whose
 * columns repeat each cluster's costs {@code capacity} times). Solved here exactly without that n × n matrix, as a
 * min-cost flow by successive shortest paths: items are added one at a time; the shortest augmenting path from the new
 * item runs through clusters only, along edges
 * <pre>
 * item → cluster c          cost[i][c]
 * cluster p → cluster q     min over items j now in p of (cost[j][q] − cost[j][p])   (move j from p to q)
 * </pre>
 * (Bellman–Ford on the c cluster nodes; the residual graph of an optimal partial assignment has no negative cycle) and
 * ends at a cluster with spare capacity. Each step keeps the partial assignment optimal, so the final one minimises
 * Σ_i cost[i][cluster(i)]. Time O(n·(c³ + path·(n/c)·c)), memory O(n·c + c²) — for CMoE on TinyLlama (4928 routed
 * channels, 14 experts) under a second per layer.
 *
 * <p>Deterministic: relaxations only on strict improvement, ties → lower cluster index and lower item index. Among
 * several optimal assignments the one found may differ from the authors' solver; the total cost is the same.
 */
public final class BalancedAssignment {
    private BalancedAssignment() {}

    private static final long INFINITE = Long.MAX_VALUE / 4;

    /**
     * @param cost     (n, c): cost[i][q] of putting item i into cluster q (|cost| &lt; 2^60 / n)
     * @param capacity (c) the most items each cluster takes
     * @return cluster[i] (n)
     */
    public static int[] assign(long[][] cost, int[] capacity) {
        int n = cost.length, c = capacity.length;
        if (c == 0) throw new IllegalArgumentException("capacity: no clusters");
        long total = 0;
        for (int q = 0; q < c; q++) {
            if (capacity[q] < 0) throw new IllegalArgumentException("capacity[" + q + "] = " + capacity[q] + " (expected ≥ 0)");
            total += capacity[q];
        }
        if (total < n) throw new IllegalArgumentException("capacity: " + total + " places for " + n + " items");
        for (int i = 0; i < n; i++)
            if (cost[i].length != c) throw new IllegalArgumentException("cost[" + i + "] has " + cost[i].length + " clusters (expected " + c + ")");

        int[] cluster = new int[n];
        Arrays.fill(cluster, -1);
        int[][] members = new int[c][];      // items per cluster, ascending
        int[] load = new int[c];
        for (int q = 0; q < c; q++) members[q] = new int[Math.max(capacity[q], 0)];
        long[][] edge = new long[c][c];      // cheapest move p → q
        int[][] edgeItem = new int[c][c];    // the item it moves
        for (long[] row : edge) Arrays.fill(row, INFINITE);
        long[] dist = new long[c];
        int[] prev = new int[c];

        for (int i = 0; i < n; i++) {
            for (int q = 0; q < c; q++) { dist[q] = cost[i][q]; prev[q] = -1; }
            for (int round = 0; round < c; round++) {
                boolean changed = false;
                for (int p = 0; p < c; p++) {
                    if (load[p] == 0 || dist[p] >= INFINITE) continue;
                    for (int q = 0; q < c; q++) {
                        if (q == p || edge[p][q] >= INFINITE) continue;
                        long d = dist[p] + edge[p][q];
                        if (d < dist[q]) { dist[q] = d; prev[q] = p; changed = true; }
                    }
                }
                if (!changed) break;
            }
            int target = -1;
            for (int q = 0; q < c; q++)
                if (load[q] < capacity[q] && (target < 0 || dist[q] < dist[target])) target = q;
            // walk back along the path, moving one item per edge; read every move before making any
            int[] path = new int[c + 1];
            int len = 0;
            for (int q = target; q >= 0; q = prev[q]) {
                if (len > c) throw new IllegalStateException("balanced assignment: cycle in the shortest-path tree");
                path[len++] = q;
            }
            int[] moved = new int[len - 1];
            for (int s = 0; s + 1 < len; s++) moved[s] = edgeItem[path[s + 1]][path[s]];
            for (int s = 0; s + 1 < len; s++) {
                remove(members, load, path[s + 1], moved[s]);
                insert(members, load, path[s], moved[s]);
                cluster[moved[s]] = path[s];
            }
            insert(members, load, path[len - 1], i);
            cluster[i] = path[len - 1];
            for (int s = 0; s < len; s++) refreshEdges(path[s], members, load, cost, edge, edgeItem);
        }
        return cluster;
    }

    /** the cheapest move out of cluster p into every other cluster (ties → lower item index) */
    private static void refreshEdges(int p, int[][] members, int[] load, long[][] cost, long[][] edge, int[][] edgeItem) {
        int c = edge.length;
        Arrays.fill(edge[p], INFINITE);
        for (int m = 0; m < load[p]; m++) {
            int j = members[p][m];
            long here = cost[j][p];
            for (int q = 0; q < c; q++) {
                if (q == p) continue;
                long d = cost[j][q] - here;
                if (d < edge[p][q]) { edge[p][q] = d; edgeItem[p][q] = j; }
            }
        }
    }

    private static void insert(int[][] members, int[] load, int q, int item) {
        int[] m = members[q];
        int pos = load[q]++;
        while (pos > 0 && m[pos - 1] > item) { m[pos] = m[pos - 1]; pos--; }
        m[pos] = item;
    }

    private static void remove(int[][] members, int[] load, int q, int item) {
        int[] m = members[q];
        int pos = 0;
        while (m[pos] != item) pos++;
        System.arraycopy(m, pos + 1, m, pos, load[q] - pos - 1);
        load[q]--;
    }
}
