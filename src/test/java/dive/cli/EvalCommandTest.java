package dive.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dive.backend.Backends;
import dive.convert.DatasetWindows;
import dive.data.Corpus;
import dive.data.Split;
import dive.model.LlamaModel;
import dive.model.Perplexity;
import dive.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

/** ./dive eval against dive.model.Perplexity over the same tokens (a separate code path: logits + log-sum-exp in double). */
class EvalCommandTest {
    @Test
    void perDatasetPerplexityEqualsWindowedPerplexityOfTheEvalSplit() throws Exception {
        CliTest.Run r = CliTest.run("eval", CliTest.MODEL.toString(), "--datasets", "man2,bible-nt", "--window", "32",
                "--max-windows", "5", "--json", "-q");
        assertEquals(0, r.code(), r.err());
        JsonNode got = new ObjectMapper().readTree(r.out());
        Tokenizer tok = Tokenizer.load(CliTest.MODEL.resolve("tokenizer.json"));
        try (LlamaModel model = LlamaModel.load(CliTest.MODEL, Backends.create("scalar"))) {
            for (String name : new String[] {"man2", "bible-nt"}) {
                int[] tokens = DatasetWindows.tokenize(tok, Corpus.bundled().texts(name, Split.EVAL));
                Perplexity.Result want = Perplexity.compute(model, Arrays.copyOf(tokens, 5 * 32), 32);
                assertEquals(want.perplexity(), got.at("/" + name + "/ppl").asDouble(), 1e-4 * want.perplexity(), name);
                assertEquals(want.predictedTokens(), got.at("/" + name + "/tokens").asInt(), name);
            }
        }
    }

    @Test
    void unknownDatasetAndBadWindowAreNamed() {
        CliTest.Run r = CliTest.run("eval", CliTest.MODEL.toString(), "--datasets", "klingon");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("klingon"), r.err());
        CliTest.Run w = CliTest.run("eval", CliTest.MODEL.toString(), "--window", "1");
        assertEquals(1, w.code());
        assertTrue(w.err().contains("--window"), w.err());
    }
}
