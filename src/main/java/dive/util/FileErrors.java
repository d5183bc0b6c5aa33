package dive.util;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;

/**
 * I/O failures that name their file: the operating system's words ("No space left on device", "Is a directory")
 * come without a path, so every read and write of a named file goes through here and reports
 * {@code "<doing> <path>: <reason>"}, e.g. {@code writing runs/x/report.json: No space left on device}.
 */
public final class FileErrors {
    private FileErrors() {}

    /** an I/O failure already named with its path and what was being done (not named again) */
    public static final class FileError extends IOException {
        public FileError(String message, Throwable cause) { super(message, cause); }
    }

    /**
     * {@code e} as "{@code doing} {@code path}: reason"; an error already named, or one of the project's own
     * (a {@code SafetensorsException} naming its tensor), is returned as it is
     */
    public static IOException wrap(String doing, Path path, IOException e) {
        if (e instanceof FileError || e.getClass().getName().startsWith("dive.")) return e;  // the project's own say what they are
        return new FileError(doing + " " + path + ": " + reason(e), e);
    }

    /** the reason alone, without the path(s) a {@link FileSystemException} puts in its message */
    public static String reason(IOException e) {
        if (e instanceof FileSystemException f) {
            if (f.getReason() != null && !f.getReason().isBlank()) return f.getReason();
            if (f instanceof AccessDeniedException) return "Permission denied";
            if (f instanceof NoSuchFileException) return "No such file or directory";
            if (f instanceof FileAlreadyExistsException) return "File exists";
            if (f instanceof NotDirectoryException) return "Not a directory";
            if (f instanceof DirectoryNotEmptyException) return "Directory not empty";
            return f.getClass().getSimpleName();
        }
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m.replace('\n', ' ');
    }

    /** {@link Files#readAllBytes}, a failure naming the file */
    public static byte[] readAllBytes(Path file) throws IOException {
        try {
            return Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw e;  // "file not found: <path>" (the command line's wording)
        } catch (IOException e) {
            throw wrap("reading", file, e);
        }
    }
}
