package dive.convert;

import dive.convert.Clustering.Linkage;
import dive.convert.Clustering.Merge;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Agglomerative clustering, affinity normalisation and Pearson correlation on examples computed by hand. */
class ClusteringTest {
    // A B C D with d(A,B)=1, d(C,D)=2, d(A,C)=4, d(A,D)=5, d(B,C)=3, d(B,D)=6
    static final double[][] FOUR = {
            {0, 1, 4, 5},
            {1, 0, 3, 6},
            {4, 3, 0, 2},
            {5, 6, 2, 0}};

    static void assertMerges(List<Merge> want, List<Merge> got) {
        assertEquals(want.size(), got.size());
        for (int m = 0; m < want.size(); m++) {
            assertEquals(want.get(m).left(), got.get(m).left(), "merge " + m + " left");
            assertEquals(want.get(m).right(), got.get(m).right(), "merge " + m + " right");
            assertEquals(want.get(m).height(), got.get(m).height(), 1e-12, "merge " + m + " height");
            assertEquals(want.get(m).size(), got.get(m).size(), "merge " + m + " size");
        }
    }

    @Test
    void averageLinkage() {
        // AB at 1; d(C,AB) = (4+3)/2 = 3.5, d(D,AB) = (5+6)/2 = 5.5, d(C,D) = 2 → CD at 2; d(AB,CD) = (4+5+3+6)/4 = 4.5
        var tree = Clustering.agglomerate(FOUR, Linkage.AVERAGE);
        assertMerges(List.of(new Merge(0, 1, 1, 2), new Merge(2, 3, 2, 2), new Merge(4, 5, 4.5, 4)), tree.merges());
        assertArrayEquals(new int[] {0, 1, 2, 3}, tree.leafOrder());
    }

    @Test
    void completeLinkage() {
        // AB at 1; d(C,AB) = max(4,3) = 4, d(D,AB) = 6; CD at 2; d(AB,CD) = max over cross pairs = 6
        var tree = Clustering.agglomerate(FOUR, Linkage.COMPLETE);
        assertMerges(List.of(new Merge(0, 1, 1, 2), new Merge(2, 3, 2, 2), new Merge(4, 5, 6, 4)), tree.merges());
    }

    @Test
    void wardLinkageOnPointsOfALine() {
        // points 0, 1, 4, 6 on a line: Ward's merge height = sqrt(2·n_a·n_b/(n_a+n_b)) · |centroid_a − centroid_b|
        double[] x = {0, 1, 4, 6};
        double[][] d = new double[4][4];
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) d[i][j] = Math.abs(x[i] - x[j]);
        var tree = Clustering.agglomerate(d, Linkage.WARD);
        double last = Math.sqrt(2.0 * 2 * 2 / 4) * Math.abs(0.5 - 5);  // {0,1} centroid 0.5 vs {4,6} centroid 5
        assertMerges(List.of(new Merge(0, 1, 1, 2), new Merge(2, 3, 2, 2), new Merge(4, 5, last, 4)), tree.merges());
    }

    @Test
    void averageAndCompleteCutDifferently() {
        // A B C D E: AB at 1, CD at 1.5; E is 4 from A and B, 2 from C, 5 from D; AB–CD all 5.
        // average: d(E,CD) = 3.5 < d(E,AB) = 4 → E joins CD;  complete: d(E,CD) = 5 > 4 → E joins AB
        double[][] d = {
                {0, 1, 5, 5, 4},
                {1, 0, 5, 5, 4},
                {5, 5, 0, 1.5, 2},
                {5, 5, 1.5, 0, 5},
                {4, 4, 2, 5, 0}};
        var average = Clustering.agglomerate(d, Linkage.AVERAGE);
        assertEquals(new Merge(4, 6, 3.5, 3), average.merges().get(2));  // E with CD (cluster 6)
        assertEquals(14.0 / 3, average.merges().get(3).height(), 1e-12);  // (2·5 + 4)/3
        assertArrayEquals(new int[] {0, 0, 1, 1, 1}, average.cut(2));
        var complete = Clustering.agglomerate(d, Linkage.COMPLETE);
        assertEquals(new Merge(4, 5, 4, 3), complete.merges().get(2));  // E with AB (cluster 5)
        assertArrayEquals(new int[] {0, 0, 1, 1, 0}, complete.cut(2));
        assertArrayEquals(new int[] {0, 0, 1, 1, 2}, complete.cut(3));
        assertArrayEquals(new int[] {0, 1, 2, 3, 4}, complete.cut(5));
        assertArrayEquals(new int[] {0, 0, 0, 0, 0}, complete.cut(1));
    }

    @Test
    void tiesGoToTheFirstPairInIdOrder() {
        double[][] d = {{0, 1, 1, 1}, {1, 0, 1, 1}, {1, 1, 0, 1}, {1, 1, 1, 0}};
        var tree = Clustering.agglomerate(d, Linkage.AVERAGE);
        assertMerges(List.of(new Merge(0, 1, 1, 2), new Merge(2, 3, 1, 2), new Merge(4, 5, 1, 4)), tree.merges());
    }

    @Test
    void moreGroupsThanItemsIsAClearError() {
        var tree = Clustering.agglomerate(FOUR, Linkage.AVERAGE);
        var e = assertThrows(IllegalArgumentException.class, () -> tree.cut(5));
        assertTrue(e.getMessage().contains("5 expert groups from 4 datasets"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Clustering.agglomerate(new double[][] {{0, 1}, {2, 0}}, Linkage.AVERAGE));
    }

    @Test
    void pearsonOfRowsByHand() {
        double[][] a = {{1, 2, 3}, {2, 4, 6}, {3, 2, 1}, {1, 0, 0}, {0, 1, 0}, {5, 5, 5}};
        double[][] c = Affinity.rowCorrelation(a);
        assertEquals(1, c[0][1], 1e-15);
        assertEquals(-1, c[0][2], 1e-15);
        // (2/3, −1/3, −1/3)·(−1/3, 2/3, −1/3) = −1/3; both norms² = 2/3 → −0.5
        assertEquals(-0.5, c[3][4], 1e-15);
        assertEquals(c[4][3], c[3][4]);
        assertEquals(0, c[5][0]);  // a constant row correlates 0
        assertEquals(1, c[5][5]);
        double[][] dist = Affinity.distance(c);
        assertEquals(1.5, dist[3][4], 1e-15);
        assertEquals(0, dist[2][2]);
    }

    @Test
    void columnNormalisationByHand() {
        double[][] p = {{2, 4}, {4, 2}, {8, 3}};
        double[][] a = Affinity.normalizeColumns(p);
        assertArrayEquals(new double[] {1, 0.5}, a[0], 1e-15);
        assertArrayEquals(new double[] {0.5, 1}, a[1], 1e-15);
        assertArrayEquals(new double[] {0.25, 2.0 / 3}, a[2], 1e-15);
        assertThrows(IllegalArgumentException.class, () -> Affinity.normalizeColumns(new double[][] {{1, Double.NaN}}));
    }
}
