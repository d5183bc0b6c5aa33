package dive.backend;

import java.util.Arrays;
import java.util.Set;

/**
 * The suite's backend where a test does not choose one: device {@code dive.test.device} (the pom's property of that
 * name, default cpu, so the suite gives the same results with or without a GPU; {@code -Ddive.test.device=auto} runs
 * those tests through the GPU) with the auto CPU backend. Library code never reads this: the tests pass the backend
 * (or, for the command line, the {@code --device} flag) explicitly.
 */
public final class TestBackends {
    private TestBackends() {}

    /** the suite's device: auto, cuda or cpu */
    public static final String DEVICE = System.getProperty("dive.test.device", "cpu");

    /** the commands that take --device */
    private static final Set<String> MODEL_COMMANDS = Set.of("generate", "ppl", "logits", "eval", "bench", "train", "demo",
            "affinity", "convert", "compare");

    /** the backend of the suite's device */
    public static Backend backend() { return Backends.create(DEVICE, "auto"); }

    /** {@code args} with {@code --device DEVICE} added when they run a model command that does not name a device */
    public static String[] cli(String... args) {
        if (args.length == 0 || !MODEL_COMMANDS.contains(args[0])) return args;
        for (String a : args) if (a.equals("--device") || a.startsWith("--device=")) return args;
        String[] withDevice = Arrays.copyOf(args, args.length + 2);
        withDevice[args.length] = "--device";
        withDevice[args.length + 1] = DEVICE;
        return withDevice;
    }

    /** runs the command line {@link #cli}{@code (args)} in this JVM; returns its exit code */
    public static int runCli(String... args) { return dive.cli.Main.run(cli(args)); }
}
