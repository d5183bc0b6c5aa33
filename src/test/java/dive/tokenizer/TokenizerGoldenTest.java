package dive.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every case of src/test/resources/tokenizer/KIND/golden.json: the ids and decoded strings the Hugging Face
 * tokenizers library gives (made by src/test/python/make_tokenizer_golden.py) must come out identical.
 */
class TokenizerGoldenTest {
    static final Path FIXTURES = Path.of("src/test/resources/tokenizer");
    static final List<String> KINDS = List.of("gpt2", "llama3", "llama2", "metaspace", "trainer");

    @TestFactory
    Stream<DynamicTest> encodeAndDecodeMatchHuggingFace() throws Exception {
        List<DynamicTest> tests = new ArrayList<>();
        for (String kind : KINDS) {
            Tokenizer tokenizer = Tokenizer.load(FIXTURES.resolve(kind).resolve("tokenizer.json"));
            JsonNode golden = new ObjectMapper().readTree(FIXTURES.resolve(kind).resolve("golden.json").toFile());
            tests.add(DynamicTest.dynamicTest(kind + " vocab size", () ->
                    assertEquals(golden.get("vocab_size").asInt(), tokenizer.vocabSize())));
            int n = 0;
            for (JsonNode c : golden.get("cases")) {
                String text = c.get("text").asText();
                tests.add(DynamicTest.dynamicTest(kind + " case " + n++ + " " + abbreviate(text), () -> {
                    int[] ids = ints(c.get("ids"));
                    assertArrayEquals(ids, tokenizer.encode(text), "encode with special tokens");
                    assertArrayEquals(ints(c.get("ids_no_special")), tokenizer.encode(text, false), "encode without");
                    assertEquals(c.get("decoded").asText(), tokenizer.decode(ids), "decode");
                    assertEquals(c.get("decoded_skip").asText(), tokenizer.decode(ids, true), "decode skipping special");
                }));
            }
            n = 0;
            for (JsonNode c : golden.get("decode_cases")) {
                tests.add(DynamicTest.dynamicTest(kind + " decode " + n++, () -> {
                    int[] ids = ints(c.get("ids"));
                    assertEquals(c.get("decoded").asText(), tokenizer.decode(ids), "decode " + c.get("ids"));
                    assertEquals(c.get("decoded_skip").asText(), tokenizer.decode(ids, true), "skip " + c.get("ids"));
                }));
            }
        }
        return tests.stream();
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) out[i] = array.get(i).asInt();
        return out;
    }

    static String abbreviate(String text) {
        String t = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r");
        return t.length() > 30 ? t.substring(0, 30) + "…" : t;
    }
}
