package dive.tokenizer;

import java.io.IOException;

/** A tokenizer.json that is malformed or uses a feature this tokenizer does not implement; names file and field. */
public final class TokenizerFormatException extends IOException {
    public TokenizerFormatException(String message) {
        super(message);
    }
}
