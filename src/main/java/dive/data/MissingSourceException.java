package dive.data;

import java.io.IOException;

/** A corpus source (a Debian package, a file, the npm package, the JDK's src.zip) is not on this machine. */
public final class MissingSourceException extends IOException {
    public MissingSourceException(String message) {
        super(message + " (install every corpus source with src/main/scripts/install-corpus-sources.sh)");
    }
}
