package dive.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A model's chat template: the Jinja template of {@code tokenizer_config.json} ({@code chat_template}, a string or
 * transformers' list of named templates, of which "default" is used), rendered as transformers'
 * {@code apply_chat_template} does: with {@code messages}, {@code add_generation_prompt}, {@code bos_token},
 * {@code eos_token} and {@code raise_exception}, with trim_blocks and lstrip_blocks on as there. Rendering uses Jinjava, a
 * Jinja engine for Java; the result is
 * tokenized without adding special tokens (the template writes them).
 */
public final class ChatTemplate {
    private final String template, bosToken, eosToken;
    private final Path source;

    private ChatTemplate(String template, String bosToken, String eosToken, Path source) {
        this.template = template;
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.source = source;
    }

    /**
     * the template of {@code modelDir/tokenizer_config.json}, or null when the folder has no such file or the file no
     * {@code chat_template}
     *
     * @throws IOException when the file cannot be read or its chat_template is neither a string nor a list of named templates
     */
    public static ChatTemplate load(Path modelDir) throws IOException {
        Path file = modelDir.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(file)) return null;
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new IOException(file + ": not valid JSON (" + dive.util.Messages.oneLine(e.getMessage()) + ")", e);
        }
        JsonNode t = root.get("chat_template");
        if (t == null || t.isNull()) return null;
        String text = null;
        if (t.isTextual()) text = t.asText();
        else if (t.isArray()) {
            for (JsonNode named : t) if ("default".equals(named.path("name").asText()) && named.path("template").isTextual()) text = named.get("template").asText();
        }
        if (text == null) throw new IOException(file + ": chat_template is neither a string nor a list with a \"default\" template");
        return new ChatTemplate(text, token(root.get("bos_token")), token(root.get("eos_token")), file);
    }

    /** a template given as text (tests, embedding services) */
    public static ChatTemplate of(String template, String bosToken, String eosToken) {
        return new ChatTemplate(template, bosToken == null ? "" : bosToken, eosToken == null ? "" : eosToken, null);
    }

    private static String token(JsonNode n) {
        if (n == null || n.isNull()) return "";
        if (n.isTextual()) return n.asText();
        return n.path("content").asText("");
    }

    /** a chat message: role and text */
    public record Message(String role, String content) {}

    /**
     * the prompt text for {@code messages}, ending with the assistant's turn's opening when {@code addGenerationPrompt}
     *
     * @throws IllegalArgumentException when the template fails or raises (its message, e.g. "roles must alternate")
     */
    public String render(List<Message> messages, boolean addGenerationPrompt) {
        Jinjava jinja = new Jinjava(JinjavaConfig.newBuilder().withTrimBlocks(true).withLstripBlocks(true).withFailOnUnknownTokens(false).build());
        jinja.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class, "raise", String.class));
        Map<String, Object> context = new HashMap<>();
        List<Map<String, Object>> msgs = new java.util.ArrayList<>();
        for (Message m : messages) msgs.add(Map.of("role", m.role(), "content", m.content()));
        context.put("messages", msgs);
        context.put("add_generation_prompt", addGenerationPrompt);
        context.put("bos_token", bosToken);
        context.put("eos_token", eosToken);
        RAISED.remove();
        RenderResult r;
        try {
            r = jinja.renderForResult(template, context);
        } finally {
            String raised = RAISED.get();
            RAISED.remove();
            if (raised != null) throw new IllegalArgumentException(where() + dive.util.Messages.oneLine(raised));
        }
        for (TemplateError e : r.getErrors())
            if (e.getSeverity() == TemplateError.ErrorType.FATAL)
                throw new IllegalArgumentException(where() + dive.util.Messages.oneLine(e.getMessage() == null ? String.valueOf(e.getReason()) : e.getMessage()));
        return r.getOutput();
    }

    private String where() { return "chat template" + (source == null ? "" : " of " + source) + ": "; }

    /** the message of the template's raise_exception during the current render on this thread */
    private static final ThreadLocal<String> RAISED = new ThreadLocal<>();

    /** the template's {@code raise_exception(message)}: remembered, then the render stops with an error */
    public static String raise(String message) {
        RAISED.set(message);
        throw new IllegalArgumentException(message);
    }
}
