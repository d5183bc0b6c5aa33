package dive.train;

/**
 * How the MoE layers of a {@link TrainableLlama} route tokens while training (DIVE §5).
 * <ul>
 * <li>{@link TopK}: Mixtral's routing (stages 1 and 2, inference): the k experts with the largest router logits
 *     (ties → lower index), weights softmax over those k logits.</li>
 * <li>{@link Soft}: every token goes through all E experts with weights softmax(z / t) (stage 0, routers only):
 *     the router gets a gradient from every expert, and at small t the weights approach top-1.</li>
 * </ul>
 */
public sealed interface RoutingMode permits RoutingMode.TopK, RoutingMode.Soft {

    RoutingMode TOP_K = new TopK();

    record TopK() implements RoutingMode {}

    /** all experts, weights softmax(z / temperature) */
    record Soft(double temperature) implements RoutingMode {
        public Soft {
            if (!(temperature > 0) || Double.isInfinite(temperature))
                throw new IllegalArgumentException("soft routing temperature must be a positive finite number, got " + temperature);
        }
    }

    static RoutingMode soft(double temperature) { return new Soft(temperature); }

    /** the paper's stage-0 temperature for top-k: 0.05 for k = 1, 0.5 for k ≥ 2 */
    static Soft paperSoft(int topK) { return new Soft(topK == 1 ? 0.05 : 0.5); }
}
