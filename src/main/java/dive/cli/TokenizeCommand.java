package dive.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dive.tokenizer.Tokenizer;
import picocli.CommandLine.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "tokenize", mixinStandardHelpOptions = true,
        description = "Turn text into token ids with the model's tokenizer.json.")
final class TokenizeCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR", description = "model folder holding tokenizer.json")
    Path modelDir;

    @Option(names = "--text", paramLabel = "FILE", required = true, description = "UTF-8 text file to tokenize")
    Path textFile;

    @Option(names = "--no-special", description = "do not add special tokens (BOS)")
    boolean noSpecial;

    @Option(names = "--json", description = "print {\"ids\": [...], \"tokens\": N}")
    boolean json;

    @Override
    public Integer call() throws Exception {
        Path tj = modelDir.resolve("tokenizer.json");
        if (!Files.isRegularFile(tj)) throw new IllegalArgumentException(modelDir + ": no tokenizer.json");
        Tokenizer tok = Tokenizer.load(tj);
        byte[] bytes = dive.util.FileErrors.readAllBytes(textFile);
        int[] ids = tok.encode(bytes, !noSpecial);
        if (json) {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("ids", ids);
            out.put("tokens", ids.length);
            System.out.println(new ObjectMapper().writeValueAsString(out));
        } else {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < ids.length; i++) sb.append(i == 0 ? "" : " ").append(ids[i]);
            System.out.println(sb);
        }
        return 0;
    }
}
