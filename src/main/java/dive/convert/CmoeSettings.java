package dive.convert;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The widths of a CMoE carving of one FFN of width I (see {@link CmoeCarving}):
 * <pre>
 * I = sharedWidth + experts · expertWidth        every FFN channel is in exactly one expert
 * active channels per token = sharedWidth + topK · expertWidth
 * </pre>
 *
 * <p>The paper names its settings S<i>s</i>A<i>a</i>E<i>n</i>: the FFN is cut into n slices of width m = ⌊I/n⌋, s slices
 * form the shared expert, the other n − s are routed experts, a of which each token uses. {@link #fromName} maps such a
 * name onto widths: S2A2E16 on TinyLlama's I = 5632 gives m = 352, sharedWidth = 704, 14 routed experts, topK = 2 (25 % of
 * the FFN active). When n does not divide I the authors' code leaves the I − n·m channels of lowest activation rate in no
 * expert (they are dropped); here they go to the shared expert instead (sharedWidth = I − (n − s)·m), so nothing of the
 * dense FFN is lost and the widths always sum to I.
 *
 * @param sharedWidth    channels of the shared expert, used by every token (≥ 0)
 * @param experts        routed experts E (≥ 1)
 * @param expertWidth    channels of each routed expert (≥ 1)
 * @param topK           routed experts per token (1 ≤ topK ≤ experts)
 * @param activeNeurons  K_a: channels marked active per calibration token, the top-K_a by |activation score|
 *                       (the authors' default {@value #DEFAULT_ACTIVE_NEURONS})
 */
public record CmoeSettings(int sharedWidth, int experts, int expertWidth, int topK, int activeNeurons) {
    /** the authors' default K_a (their flag {@code --k-act}) */
    public static final int DEFAULT_ACTIVE_NEURONS = 10;

    private static final Pattern NAME = Pattern.compile("S(\\d+)A(\\d+)E(\\d+)");

    public CmoeSettings {
        if (sharedWidth < 0) throw new IllegalArgumentException("sharedWidth " + sharedWidth + " (expected ≥ 0)");
        if (experts < 1) throw new IllegalArgumentException("experts " + experts + " (expected ≥ 1)");
        if (expertWidth < 1) throw new IllegalArgumentException("expertWidth " + expertWidth + " (expected ≥ 1)");
        if (topK < 1 || topK > experts) throw new IllegalArgumentException("topK " + topK + " (expected 1 ≤ topK ≤ experts = " + experts + ")");
        if (activeNeurons < 1) throw new IllegalArgumentException("activeNeurons " + activeNeurons + " (expected ≥ 1)");
    }

    /** with the default K_a = {@value #DEFAULT_ACTIVE_NEURONS} */
    public CmoeSettings(int sharedWidth, int experts, int expertWidth, int topK) {
        this(sharedWidth, experts, expertWidth, topK, DEFAULT_ACTIVE_NEURONS);
    }

    /**
     * The paper's S<i>s</i>A<i>a</i>E<i>n</i> setting for an FFN of width {@code intermediateSize} (see the class
     * comment; the remainder I − n·⌊I/n⌋ joins the shared expert), with the default K_a.
     */
    public static CmoeSettings fromName(String name, int intermediateSize) {
        Matcher m = NAME.matcher(name == null ? "" : name.strip());
        if (!m.matches()) throw new IllegalArgumentException("name '" + name + "' (expected S<shared>A<active>E<experts>, e.g. S2A2E16)");
        int shared = Integer.parseInt(m.group(1)), active = Integer.parseInt(m.group(2)), total = Integer.parseInt(m.group(3));
        if (total < 2) throw new IllegalArgumentException("name " + name + ": E" + total + " (expected at least 2 slices)");
        if (shared >= total) throw new IllegalArgumentException("name " + name + ": S" + shared + " leaves no routed expert of E" + total);
        if (active < 1 || active > total - shared)
            throw new IllegalArgumentException("name " + name + ": A" + active + " (expected 1 ≤ A ≤ E − S = " + (total - shared) + ")");
        if (intermediateSize < total)
            throw new IllegalArgumentException("intermediateSize " + intermediateSize + " cannot be cut into " + total + " slices (name " + name + ")");
        int width = intermediateSize / total, routed = total - shared;
        return new CmoeSettings(intermediateSize - routed * width, routed, width, active);
    }

    /**
     * The carving at the active FFN width of the plain setting (E experts, top-k, ratio r), as the pipeline's {@code cmoe}
     * method runs it: A = k·round(I·(1 − r)) channels active per token; all I channels are split into a shared expert S
     * and E routed experts of R channels,
     * <pre>
     * R = ⌊(I − A) / (E − k)⌋        the E − k routed experts a token leaves idle hold the I − A inactive channels
     * S = I − E·R                    leftover channels join the shared expert, so S + k·R = A, or a few channels more
     * </pre>
     * (I = 1024, E = 8: top-1 r 0.5 → R = 73, S = 440, active 513; top-2 r 0.75 → R = 85, S = 344, active 514). With the
     * default K_a. Refused, naming the setting: E ≤ k (no routed expert left idle), R &lt; 1, or S &lt; 0 (A below k·I/E:
     * the routed experts alone would hold more than A channels per token).
     */
    public static CmoeSettings atActiveWidth(int intermediateSize, int experts, int topK, double ratio) {
        String setting = "E = " + experts + ", top-k = " + topK + ", r = " + ratio + " on an FFN of " + intermediateSize + " channels";
        if (topK < 1 || experts <= topK)
            throw new IllegalArgumentException("CMoE at " + setting + ": needs E > k ≥ 1 (the routed experts a token leaves idle hold the "
                    + "channels it does not use)");
        int active = topK * Pruning.keptWidth(intermediateSize, ratio);
        int routed = (intermediateSize - active) / (experts - topK), shared = intermediateSize - experts * routed;
        if (active >= intermediateSize || routed < 1)
            throw new IllegalArgumentException("CMoE at " + setting + ": active width " + active + " leaves routed experts of "
                    + Math.max(routed, 0) + " channels (expected ≥ 1)");
        if (shared < 0)
            throw new IllegalArgumentException("CMoE at " + setting + ": active width " + active + " is below k·I/E = "
                    + (long) topK * intermediateSize / experts + " (the " + experts + " routed experts of " + routed
                    + " channels would hold more than the FFN's " + intermediateSize + ")");
        return new CmoeSettings(shared, experts, routed, topK);
    }

    /** the same widths with another K_a */
    public CmoeSettings withActiveNeurons(int k) { return new CmoeSettings(sharedWidth, experts, expertWidth, topK, k); }

    /** I = sharedWidth + experts · expertWidth */
    public int intermediateSize() { return sharedWidth + experts * expertWidth; }

    /** channels one token uses: sharedWidth + topK · expertWidth */
    public int activeWidth() { return sharedWidth + topK * expertWidth; }

    /** refuses an FFN whose width is not {@link #intermediateSize()}, or one narrower than K_a */
    public void requireIntermediateSize(int intermediateSize) {
        if (intermediateSize() != intermediateSize)
            throw new IllegalArgumentException("sharedWidth + experts·expertWidth = " + sharedWidth + " + " + experts + "·" + expertWidth
                    + " = " + intermediateSize() + " but the FFN has intermediateSize " + intermediateSize);
        if (activeNeurons > intermediateSize)
            throw new IllegalArgumentException("activeNeurons " + activeNeurons + " exceeds the FFN's intermediateSize " + intermediateSize);
    }
}
