package dive.api;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The embedded default: a small Llama checkpoint and a sample text bundled in the jar under
 * {@code /dive/default/}. Safetensors are memory-mapped, which needs real files, so the first use
 * copies them into a folder under the system temp directory (once per jar build; atomically per file).
 */
public final class DefaultModel {
    private DefaultModel() {}

    static final String ROOT = "/dive/default/";
    static final String[] MODEL_FILES = {"config.json", "model.safetensors", "tokenizer.json"};
    public static final String SAMPLE_TEXT = "sample.txt";

    /** the folder holding the default model's files and the sample text, extracted if needed */
    public static Path extract() throws IOException {
        long stamp = 0;
        for (String f : MODEL_FILES) stamp = stamp * 31 + resourceSize(f);
        stamp = stamp * 31 + resourceSize(SAMPLE_TEXT);
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "dive-default-" + Long.toHexString(stamp));
        Files.createDirectories(dir);
        for (String f : MODEL_FILES) copy(f, dir);
        copy(SAMPLE_TEXT, dir);
        return dir;
    }

    private static long resourceSize(String name) throws IOException {
        var url = DefaultModel.class.getResource(ROOT + name);
        if (url == null) throw new IOException("the jar has no bundled default file " + ROOT + name + " (rebuild with ./dive build)");
        return url.openConnection().getContentLengthLong();
    }

    private static void copy(String name, Path dir) throws IOException {
        Path target = dir.resolve(name);
        if (Files.isRegularFile(target) && Files.size(target) == resourceSize(name)) return;
        Path tmp = Files.createTempFile(dir, "." + name, ".tmp");
        try (InputStream in = DefaultModel.class.getResourceAsStream(ROOT + name)) {
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
