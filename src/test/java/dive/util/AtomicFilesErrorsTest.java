package dive.util;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;

import static org.junit.jupiter.api.Assertions.*;

/** Every failed write names the file and what was being done; the target is left as it was. */
class AtomicFilesErrorsTest {
    @TempDir Path tmp;

    @Test
    void aFullDiskNamesTheFile() throws Exception {
        Path target = tmp.resolve("report.json");
        // the body's channel write fails as a full disk does (/dev/full answers every write with ENOSPC)
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.write(target, channel -> {
            if (Files.isWritable(Path.of("/dev/full"))) {
                try (FileChannel full = FileChannel.open(Path.of("/dev/full"), StandardOpenOption.WRITE)) {
                    AtomicFiles.writeFully(full, ByteBuffer.wrap(new byte[4096]));
                }
            }
            throw new IOException("No space left on device");
        }));
        assertEquals("writing " + target + ": No space left on device", e.getMessage());
        assertFalse(Files.exists(target));
        try (var s = Files.list(tmp)) { assertEquals(0, s.count(), "no temp file left"); }
    }

    @Test
    void aDirectoryInTheWayNamesIt() throws Exception {
        Path target = Files.createDirectories(tmp.resolve("out.npy"));
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.writeString(target, "x"));
        assertEquals("writing " + target + ": Is a directory", e.getMessage());
        assertTrue(Files.isDirectory(target), "the folder is left as it was");
    }

    @Test
    void aMissingFolderNamesIt() {
        Path target = tmp.resolve("no/such/file.json");
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.writeString(target, "x"));
        assertTrue(e.getMessage().startsWith("writing " + target + ": "), e.getMessage());
    }

    @Test
    void aReadOnlyFolderNamesTheFile() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("ro"));
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("r-xr-xr-x"));
        try {
            Assumptions.assumeFalse(Files.isWritable(dir), "the folder is writable anyway (run as root)");
            Path target = dir.resolve("state.json");
            IOException e = assertThrows(IOException.class, () -> AtomicFiles.writeString(target, "x"));
            assertEquals("writing " + target + ": Permission denied", e.getMessage());
        } finally {
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
    }

    @Test
    void aDeniedFileSystemCallIsDescribedWithItsReason() {
        // what a read-only folder gives where permissions apply (not to root): the path alone as the message
        IOException e = FileErrors.wrap("writing", Path.of("runs/x/state.json"), new java.nio.file.AccessDeniedException("runs/x/.state.json.123.tmp"));
        assertEquals("writing runs/x/state.json: Permission denied", e.getMessage());
        IOException ro = FileErrors.wrap("writing", Path.of("runs/x/state.json"),
                new java.nio.file.FileSystemException("runs/x/.state.json.1.tmp", null, "Read-only file system"));
        assertEquals("writing runs/x/state.json: Read-only file system", ro.getMessage());
        assertSame(e, FileErrors.wrap("reading", Path.of("other"), e), "named once");
    }

    @Test
    void readingADirectoryNamesIt() throws Exception {
        IOException e = assertThrows(IOException.class, () -> FileErrors.readAllBytes(tmp));
        assertEquals("reading " + tmp + ": Is a directory", e.getMessage());
    }
}
