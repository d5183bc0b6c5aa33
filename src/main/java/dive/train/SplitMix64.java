package dive.train;

/**
 * A tiny seeded random generator (SplitMix64, Steele et al. 2014) whose whole state is one long, so it can be
 * saved in a checkpoint and resumed exactly.
 */
public final class SplitMix64 {
    private long state;

    public SplitMix64(long seed) { this.state = seed; }

    public long state() { return state; }

    public long nextLong() {
        long z = (state += 0x9E3779B97F4A7C15L);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** uniform in [0, 1) with 53 random bits */
    public double nextDouble() { return (nextLong() >>> 11) * 0x1.0p-53; }

    /** uniform in [0, bound) (bound ≥ 1), without modulo bias */
    public long nextLong(long bound) {
        if (bound <= 0) throw new IllegalArgumentException("bound " + bound + ": expected ≥ 1");
        long u = nextLong() >>> 1, r;
        while (u - (r = u % bound) + (bound - 1) < 0) u = nextLong() >>> 1; // reject the incomplete last block
        return r;
    }

    /** standard normal (Box–Muller, one of the pair) */
    public double nextGaussian() {
        double u1 = 1.0 - nextDouble(), u2 = nextDouble();
        return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
}
