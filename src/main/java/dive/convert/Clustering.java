package dive.convert;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Agglomerative (hierarchical) clustering of n items from a symmetric distance matrix, SciPy's conventions: leaves
 * are clusters 0..n−1, the cluster made by merge m is n + m, and cluster distances are updated with the
 * Lance–Williams formula of the linkage. Each step merges the closest pair of current clusters; ties go to the pair
 * that comes first in (smaller cluster id, larger cluster id) order, so the result is deterministic.
 */
public final class Clustering {
    private Clustering() {}

    public enum Linkage {
        /** UPGMA: mean distance over all cross pairs, d(k, i∪j) = (n_i d_ki + n_j d_kj) / (n_i + n_j) */
        AVERAGE,
        /** farthest pair: d(k, i∪j) = max(d_ki, d_kj) */
        COMPLETE,
        /**
         * Ward (as SciPy's on a distance matrix): d(k, i∪j) = sqrt(((n_k+n_i) d_ki² + (n_k+n_j) d_kj² − n_k d_ij²) / (n_k+n_i+n_j));
         * exact Ward for Euclidean distances, applied to 1 − corr as SciPy would.
         */
        WARD;

        @Override public String toString() { return name().toLowerCase(Locale.ROOT); }

        public static Linkage parse(String name, String flag) {
            for (Linkage l : values()) if (l.toString().equals(name.toLowerCase(Locale.ROOT))) return l;
            throw new IllegalArgumentException(flag + " '" + name + "': expected average, complete or ward");
        }
    }

    /** one merge: clusters {@code left} < {@code right} joined at {@code height} into a cluster of {@code size} leaves */
    public record Merge(int left, int right, double height, int size) {}

    /** the merge tree of n leaves: n − 1 merges, in order */
    public record Dendrogram(int leaves, List<Merge> merges) {

        /** leaf indices left to right as the tree is drawn (left child first, from the root down) */
        public int[] leafOrder() {
            int[] out = new int[leaves];
            int[] next = {0};
            if (leaves == 1) return new int[] {0};
            visit(leaves + merges.size() - 1, out, next);
            return out;
        }

        private void visit(int cluster, int[] out, int[] next) {
            if (cluster < leaves) { out[next[0]++] = cluster; return; }
            Merge m = merges.get(cluster - leaves);
            visit(m.left(), out, next);
            visit(m.right(), out, next);
        }

        /**
         * The groups left after undoing the last {@code groups} − 1 merges: group label per leaf (n), labels 0..groups−1
         * numbered by each group's smallest leaf. Every group non-empty.
         *
         * @throws IllegalArgumentException when groups is not in [1, leaves]
         */
        public int[] cut(int groups) {
            if (groups > leaves)
                throw new IllegalArgumentException("cannot form " + groups + " expert groups from " + leaves + " datasets (--experts must be ≤ the number of datasets)");
            if (groups < 1) throw new IllegalArgumentException("--experts " + groups + ": expected ≥ 1");
            int[] parent = new int[leaves + merges.size()];
            for (int i = 0; i < parent.length; i++) parent[i] = i;
            int applied = leaves - groups;
            for (int m = 0; m < applied; m++) {
                parent[merges.get(m).left()] = leaves + m;
                parent[merges.get(m).right()] = leaves + m;
            }
            int[] root = new int[leaves];
            for (int i = 0; i < leaves; i++) {
                int c = i;
                while (parent[c] != c) c = parent[c];
                root[i] = c;
            }
            int[] label = new int[leaves];
            Arrays.fill(label, -1);
            int next = 0;
            for (int i = 0; i < leaves; i++) {
                if (label[i] >= 0) continue;
                for (int k = i; k < leaves; k++) if (root[k] == root[i]) label[k] = next;
                next++;
            }
            return label;
        }
    }

    /** clusters {@code distance} (n × n, symmetric, zero diagonal) with {@code linkage} */
    public static Dendrogram agglomerate(double[][] distance, Linkage linkage) {
        int n = distance.length;
        if (n < 1) throw new IllegalArgumentException("clustering needs at least one item");
        for (int i = 0; i < n; i++) {
            if (distance[i].length != n) throw new IllegalArgumentException("distance matrix row " + i + " has " + distance[i].length + " values, expected " + n);
            for (int j = 0; j < n; j++)
                if (!Double.isFinite(distance[i][j]) || Math.abs(distance[i][j] - distance[j][i]) > 1e-12 * Math.max(1, Math.abs(distance[i][j])))
                    throw new IllegalArgumentException("distance matrix [" + i + "][" + j + "] = " + distance[i][j] + " (expected finite and symmetric)");
        }
        int total = 2 * n - 1;
        double[][] d = new double[total][total];
        for (int i = 0; i < n; i++) d[i] = Arrays.copyOf(distance[i], total);
        int[] size = new int[total];
        Arrays.fill(size, 0, n, 1);
        List<Integer> active = new ArrayList<>();
        for (int i = 0; i < n; i++) active.add(i);
        List<Merge> merges = new ArrayList<>();
        for (int m = 0; m < n - 1; m++) {
            int bestA = -1, bestB = -1;
            double best = Double.POSITIVE_INFINITY;
            for (int x = 0; x < active.size(); x++)  // active stays in ascending id order
                for (int y = x + 1; y < active.size(); y++) {
                    int a = active.get(x), b = active.get(y);
                    if (d[a][b] < best) { best = d[a][b]; bestA = a; bestB = b; }
                }
            int created = n + m;
            size[created] = size[bestA] + size[bestB];
            for (int k : active) {
                if (k == bestA || k == bestB) continue;
                double v = switch (linkage) {
                    case AVERAGE -> (size[bestA] * d[k][bestA] + size[bestB] * d[k][bestB]) / (size[bestA] + size[bestB]);
                    case COMPLETE -> Math.max(d[k][bestA], d[k][bestB]);
                    case WARD -> {
                        double nk = size[k], na = size[bestA], nb = size[bestB];
                        double sq = ((nk + na) * d[k][bestA] * d[k][bestA] + (nk + nb) * d[k][bestB] * d[k][bestB] - nk * best * best) / (nk + na + nb);
                        yield Math.sqrt(Math.max(0, sq));
                    }
                };
                d[k][created] = v;
                d[created][k] = v;
            }
            active.remove(Integer.valueOf(bestA));
            active.remove(Integer.valueOf(bestB));
            active.add(created);
            merges.add(new Merge(bestA, bestB, best, size[created]));
        }
        return new Dendrogram(n, List.copyOf(merges));
    }
}
