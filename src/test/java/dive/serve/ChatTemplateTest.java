package dive.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Chat templates rendered as transformers' apply_chat_template renders them: ChatML, Zephyr's (trim_blocks and
 * lstrip_blocks matter) and Llama-2's (slices, strip(), raise_exception), each with and without the generation prompt,
 * against src/test/resources/chat/templates.json (written by src/test/python/make_chat_fixtures.py).
 */
class ChatTemplateTest {
    @TempDir Path tmp;

    @Test
    void rendersAsTransformersDoes() throws Exception {
        JsonNode fixtures = new ObjectMapper().readTree(Path.of("src/test/resources/chat/templates.json").toFile());
        String bos = fixtures.get("bos_token").asText(), eos = fixtures.get("eos_token").asText();
        int checked = 0;
        for (JsonNode t : fixtures.get("templates")) {
            ChatTemplate template = ChatTemplate.of(t.get("template").asText(), bos, eos);
            for (JsonNode c : t.get("cases")) {
                assertEquals(c.get("expected").asText(), template.render(messages(c.get("messages")), c.get("add_generation_prompt").asBoolean()),
                        t.get("name").asText() + " " + c.get("messages"));
                checked++;
            }
            if (!t.get("bad_error").isNull()) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> template.render(messages(t.get("bad_messages")), true));
                assertTrue(e.getMessage().contains(t.get("bad_error").asText()), e.getMessage());
            }
        }
        assertEquals(12, checked);
    }

    @Test
    void loadsFromTokenizerConfigOrSaysThereIsNone() throws Exception {
        assertNull(ChatTemplate.load(tmp), "no tokenizer_config.json");
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}");
        assertNull(ChatTemplate.load(tmp), "no chat_template");
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", "
                + "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", \"template\": \"{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}\"}]}");
        assertEquals("<s>hi</s>", ChatTemplate.load(tmp).render(List.of(new ChatTemplate.Message("user", "hi")), true));
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"chat_template\": 7}");
        java.io.IOException e = assertThrows(java.io.IOException.class, () -> ChatTemplate.load(tmp));
        assertTrue(e.getMessage().contains("tokenizer_config.json: chat_template is neither"), e.getMessage());
    }

    static List<ChatTemplate.Message> messages(JsonNode array) {
        List<ChatTemplate.Message> out = new ArrayList<>();
        for (JsonNode m : array) out.add(new ChatTemplate.Message(m.get("role").asText(), m.get("content").asText()));
        return out;
    }
}
