package dive.api;

import java.nio.file.Path;

/** {@link DecodableIdsTest}'s fixture for tests of other packages */
public final class DecodableIdsTestAccess {
    private DecodableIdsTestAccess() {}

    public static Path truncated(Path dir) throws Exception { return DecodableIdsTest.truncated(dir); }
}
