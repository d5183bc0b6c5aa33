package dive.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The command line: one main class, one subcommand per job. Each command is a few calls of the
 * library API ({@link dive.api.Engine}), so anything here can also be done from code.
 */
@Command(name = "dive", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Dense Llama checkpoints in, Mixture-of-Experts (DIVE) out: inspect, tokenize, run, measure.",
        subcommands = {InspectCommand.class, TokenizeCommand.class, GenerateCommand.class, PplCommand.class,
                LogitsCommand.class, EvalCommand.class, BenchCommand.class, TrainCommand.class, DemoCommand.class, CorpusCommand.class,
                AffinityCommand.class, ConvertCommand.class, CompareCommand.class, ServeCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    @Override public void run() { spec.commandLine().usage(System.out); }

    public static void main(String[] args) {
        System.setProperty("java.util.logging.SimpleFormatter.format", "dive: %5$s%6$s%n");
        if (Boolean.getBoolean(MemoryPlans.PLAN_HEAP)) System.exit(planHeap(args));
        System.exit(run(args));
    }

    /**
     * The launcher's first pass for the commands with a memory plan: parses the command line, runs the command up to its
     * plan and prints the plan's Java-heap bytes (nothing else is done); prints nothing when the command has no plan.
     */
    static int planHeap(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setOut(new PrintWriter(java.io.OutputStream.nullOutputStream()));
        cl.setErr(new PrintWriter(java.io.OutputStream.nullOutputStream()));
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            if (ex instanceof MemoryPlans.PlanOnly p && p.plan != null) System.out.println(p.plan.heapBytes());
            return 0;
        });
        System.setErr(new java.io.PrintStream(java.io.OutputStream.nullOutputStream()));
        cl.execute(args);
        return 0;
    }

    /** runs the command line and returns its exit code (0 ok, 1 failure, 2 bad usage) */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            PrintWriter err = line.getErr();
            err.println("dive " + line.getCommandName() + ": " + describe(ex));
            if (System.getenv("DIVE_DEBUG") != null) ex.printStackTrace(err);
            err.flush();
            return 1;
        });
        try {
            return cl.execute(args);
        } catch (OutOfMemoryError e) {  // picocli passes Errors through: still one line, never a stack trace
            System.err.println("dive " + (args.length > 0 ? args[0] : "") + ": " + describe(e));
            if (System.getenv("DIVE_DEBUG") != null) e.printStackTrace();
            return 1;
        }
    }

    /** one line naming what went wrong */
    static String describe(Throwable ex) {
        String msg = ex.getMessage();
        if (ex instanceof java.nio.file.NoSuchFileException) return "file not found: " + msg;
        if (ex instanceof java.nio.file.FileSystemException f && !(ex instanceof dive.util.FileErrors.FileError)) {
            // its message may be the bare path (AccessDeniedException): always path, then the reason
            String other = f.getOtherFile() == null ? "" : " -> " + f.getOtherFile();
            return f.getFile() + other + ": " + dive.util.FileErrors.reason(f);
        }
        if (ex instanceof OutOfMemoryError oom) return dive.util.MemoryPlan.describeOutOfMemory(oom);
        if (ex.getCause() instanceof OutOfMemoryError oom) return dive.util.MemoryPlan.describeOutOfMemory(oom);
        if (msg == null || msg.isBlank()) return ex.getClass().getSimpleName();
        return msg.replace('\n', ' ');
    }

    static void quietLogs(boolean quiet) {
        if (quiet) Logger.getLogger("").setLevel(Level.WARNING);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"dive " + (v != null ? v : "dev") + " (Java " + Runtime.version() + ")"};
        }
    }
}
