package dive.cli;

/** Entry point of the command line (commands land with the CLI work). */
public final class Main {
    public static void main(String[] args) {
        System.out.println("dive: command line under construction");
    }
}
