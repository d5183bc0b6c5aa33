package dive.util;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** Writes a file atomically: a temp file in the same directory, fsync, then an atomic rename over the target. */
public final class AtomicFiles {
    private AtomicFiles() {}

    public interface Body { void writeTo(FileChannel channel) throws IOException; }

    /**
     * Runs {@code body} on a fresh temp file beside {@code target}, then renames it over {@code target}.
     * On any failure the temp file is deleted and {@code target} is left as it was.
     */
    public static void write(Path target, Body body) throws IOException {
        Path absolute = target.toAbsolutePath();
        Path dir = absolute.getParent();
        if (!Files.isDirectory(dir)) throw new FileErrors.FileError("writing " + target + ": the folder " + dir + " does not exist", null);
        if (Files.isDirectory(absolute)) throw new FileErrors.FileError("writing " + target + ": Is a directory", null);
        try {
            writeVia(absolute, dir, body);
        } catch (IOException e) {
            throw FileErrors.wrap("writing", target, e);  // the OS's words ("No space left on device") name no file
        }
    }

    private static void writeVia(Path absolute, Path dir, Body body) throws IOException {
        Path temp = Files.createTempFile(dir, "." + absolute.getFileName() + ".", ".tmp");
        boolean moved = false;
        try {
            try (FileChannel channel = FileChannel.open(temp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                body.writeTo(channel);
                channel.force(true);
            }
            readableByAll(temp);
            Files.move(temp, absolute, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            moved = true;
        } finally {
            if (!moved) Files.deleteIfExists(temp);
        }
    }

    /**
     * A new, empty temp folder beside {@code target} (for writing a whole output folder, then renaming it into
     * place), with the usual rwxr-xr-x rather than the owner-only mode temp folders get.
     */
    public static Path tempDirectoryBeside(Path target) throws IOException {
        Path absolute = target.toAbsolutePath();
        Path dir;
        try {
            dir = Files.createTempDirectory(absolute.getParent(), "." + absolute.getFileName() + ".tmp-");
        } catch (IOException e) {
            throw FileErrors.wrap("creating a folder beside", target, e);
        }
        if (dir.getFileSystem().supportedFileAttributeViews().contains("posix"))
            Files.setPosixFilePermissions(dir, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
        return dir;
    }

    /** temp files are created owner-only (0600); a finished output gets the usual rw-r--r-- */
    private static void readableByAll(Path file) throws IOException {
        if (file.getFileSystem().supportedFileAttributeViews().contains("posix"))
            Files.setPosixFilePermissions(file, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
    }

    public static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) channel.write(buffer);
    }

    /** writes {@code text} as UTF-8, atomically */
    public static void writeString(Path target, String text) throws IOException {
        byte[] bytes = text.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        write(target, channel -> writeFully(channel, ByteBuffer.wrap(bytes)));
    }
}
