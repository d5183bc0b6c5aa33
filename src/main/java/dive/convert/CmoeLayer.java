package dive.convert;

import java.util.Arrays;

/**
 * One FFN layer carved by CMoE ({@link CmoeCarving}): which dense channels form the shared expert and each routed
 * expert, and the analytical router. A pure data result: the experts are slices of the dense W_gate, W_up (rows) and
 * W_down (columns) at these channel indices; nothing here depends on how the model is exported.
 *
 * @param shared          (sharedWidth) channels of the shared expert, ascending
 * @param experts         (E)(expertWidth) channels of each routed expert, ascending; with {@code shared} a partition of
 *                        0..I−1
 * @param representatives (E) the representative channel of each routed expert (one of its own channels)
 * @param routerGate      (E, d) row e = W_gate[representatives[e]] / ‖·‖₂ (zeros for a zero row)
 * @param routerUp        (E, d) row e = W_up[representatives[e]] / ‖·‖₂
 * @param selectionBias   (E) the load-balancing bias b, added to the router's probabilities for the top-k choice only
 *                        ({@link CmoeRouter}); zero after carving, changed only by {@link CmoeRouter#updateSelectionBias}
 * @param hidden          d
 */
public record CmoeLayer(int[] shared, int[][] experts, int[] representatives, float[] routerGate, float[] routerUp,
                        float[] selectionBias, int hidden) {
    public CmoeLayer {
        int e = experts.length;
        if (representatives.length != e || selectionBias.length != e || routerGate.length != (long) e * hidden || routerUp.length != routerGate.length)
            throw new IllegalArgumentException("CMoE layer of " + e + " experts: " + representatives.length + " representatives, "
                    + selectionBias.length + " biases, router rows of " + routerGate.length + " and " + routerUp.length + " values (expected E·d = "
                    + (long) e * hidden + ")");
    }

    public int numExperts() { return experts.length; }

    public int expertWidth() { return experts[0].length; }

    public int sharedWidth() { return shared.length; }

    /** I, every channel once */
    public int intermediateSize() { return shared.length + experts.length * expertWidth(); }

    @Override public boolean equals(Object o) {
        return o instanceof CmoeLayer l && hidden == l.hidden && Arrays.equals(shared, l.shared) && Arrays.deepEquals(experts, l.experts)
                && Arrays.equals(representatives, l.representatives) && Arrays.equals(routerGate, l.routerGate)
                && Arrays.equals(routerUp, l.routerUp) && Arrays.equals(selectionBias, l.selectionBias);
    }

    @Override public int hashCode() { return Arrays.deepHashCode(experts) * 31 + Arrays.hashCode(representatives); }

    @Override public String toString() {
        return "CmoeLayer[shared " + shared.length + ", " + experts.length + " experts × " + expertWidth() + ", representatives "
                + Arrays.toString(representatives) + ", d " + hidden + "]";
    }
}
