package dive.bindings;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Where cuBLAS is looked for, in order: an explicit -Ddive.cublas (folder or file) first, then the CUDA folders. No GPU needed. */
class CublasDiscoveryTest {

    static List<Path> candidatesWith(String explicit) {
        String before = System.getProperty("dive.cublas");
        System.setProperty("dive.cublas", explicit);
        try {
            return cublas_h.candidates();
        } finally {
            if (before == null) System.clearProperty("dive.cublas"); else System.setProperty("dive.cublas", before);
        }
    }

    @Test
    void explicitFolderComesFirst(@TempDir Path dir) {
        List<Path> c = candidatesWith(dir.toString());
        assertEquals(List.of(dir.resolve("libcublas.so.13"), dir.resolve("libcublas.so.12"), dir.resolve("libcublas.so")), c.subList(0, 3));
    }

    @Test
    void explicitFileComesFirst(@TempDir Path dir) throws Exception {
        Path file = Files.createFile(dir.resolve("libcublas.so.13.1.0"));
        assertEquals(file, candidatesWith(file.toString()).getFirst());
    }

    @Test
    void cudaToolkitFolderPrecedesTheSystemFolders() {
        List<Path> c = cublas_h.candidates();
        int toolkit = c.indexOf(Path.of("/usr/local/cuda/lib64/libcublas.so.13"));
        int system = c.indexOf(Path.of("/usr/lib/x86_64-linux-gnu/libcublas.so.13"));
        assertTrue(toolkit >= 0 && system > toolkit, "toolkit " + toolkit + ", system " + system);
        assertTrue(c.indexOf(Path.of("/usr/local/cuda/lib64/libcublas.so.13")) < c.indexOf(Path.of("/usr/local/cuda/lib64/libcublas.so.12")),
                "cuBLAS 13 before 12 in one folder");
    }

    @Test
    void unavailableCublasSaysWhy() {
        if (cublas_h.available().isEmpty()) {
            assertNotNull(cublas_h.unavailableReason());
            assertFalse(cublas_h.unavailableReason().contains("\n"));
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> cublas_h.cublasCreate_v2(java.lang.foreign.MemorySegment.NULL));
            assertTrue(e.getMessage().startsWith("cublasCreate_v2: "), e.getMessage());
        } else {
            assertNull(cublas_h.unavailableReason());
            assertNotNull(cublas_h.libraryPath());
        }
    }
}
