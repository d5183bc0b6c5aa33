package dive.data;

/** The three disjoint parts of every dataset: training text, calibration text (pruning), held-out evaluation text. */
public enum Split {
    TRAIN("train"), CALIB("calib"), EVAL("eval");

    private final String fileStem;

    Split(String fileStem) { this.fileStem = fileStem; }

    /** the name used in file names ({@code train.jsonl}) and in the manifest */
    public String fileStem() { return fileStem; }

    public String fileName() { return fileStem + ".jsonl"; }

    public static Split parse(String name) {
        for (Split s : values()) if (s.fileStem.equals(name)) return s;
        throw new IllegalArgumentException("unknown split '" + name + "': expected train, calib or eval");
    }
}
