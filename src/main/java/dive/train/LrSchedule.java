package dive.train;

/**
 * Learning rate per optimizer step (step counted from 0): a linear warm-up from lr/warmupSteps to lr over the
 * first {@code warmupSteps} steps (step s &lt; warmup gets lr·(s+1)/warmup), then
 * <ul>
 *   <li>{@code CONSTANT}: lr;</li>
 *   <li>{@code COSINE}: minLr + (lr − minLr)·(1 + cos(π·progress))/2, progress = (s − warmup)/(totalSteps − warmup)
 *       clamped to [0, 1], so the last step ends near minLr.</li>
 * </ul>
 */
public record LrSchedule(Kind kind, double lr, long warmupSteps, double minLr, long totalSteps) {
    public enum Kind { CONSTANT, COSINE }

    public LrSchedule {
        if (kind == null) throw new IllegalArgumentException("schedule.kind: expected constant or cosine");
        if (!(lr > 0) || Double.isInfinite(lr)) throw new IllegalArgumentException("schedule.lr = " + lr + ": expected a finite value > 0");
        if (!(minLr >= 0) || minLr > lr) throw new IllegalArgumentException("schedule.min_lr = " + minLr + ": expected 0 ≤ min_lr ≤ lr (" + lr + ")");
        if (warmupSteps < 0) throw new IllegalArgumentException("schedule.warmup = " + warmupSteps + ": expected ≥ 0 steps");
        if (totalSteps < 1) throw new IllegalArgumentException("total steps " + totalSteps + ": expected ≥ 1");
    }

    public double at(long step) {
        if (step < warmupSteps) return lr * (step + 1) / warmupSteps;
        if (kind == Kind.CONSTANT) return lr;
        long decaySteps = Math.max(1, totalSteps - warmupSteps);
        double progress = Math.min(1.0, (double) (step - warmupSteps) / decaySteps);
        return minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
}
