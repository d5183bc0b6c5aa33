package dive.cli;

import dive.api.Engine;
import dive.io.NpyWriter;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.Callable;

@Command(name = "logits", mixinStandardHelpOptions = true,
        description = "Logits of a token-id sequence, written as a NumPy .npy array F32 [T, vocab].")
final class LogitsCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR") Path modelDir;
    @Option(names = "--ids", required = true, split = ",", paramLabel = "ID,ID,…", description = "token ids, comma-separated") int[] ids;
    @Option(names = "--out", required = true, paramLabel = "FILE.npy", description = "output file (written atomically)") Path out;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        if (ids.length == 0) throw new IllegalArgumentException("--ids: no ids given");
        try (Engine engine = common.load(modelDir, loadFlags)) {
            int vocab = engine.config().vocabSize();
            for (int i = 0; i < ids.length; i++)
                if (ids[i] < 0 || ids[i] >= vocab)
                    throw new IllegalArgumentException("--ids: id " + ids[i] + " at index " + i + " is outside the vocabulary [0, " + vocab + ")");
            float[] logits = engine.logits(ids);
            NpyWriter.writeF32(out, logits, ids.length, vocab);
            if (!common.quiet) System.err.println("dive: wrote " + out + " " + Arrays.toString(new int[] {ids.length, vocab}) + " F32");
        }
        return 0;
    }
}
