package dive.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** The document files: one JSON object {@code {"id": "...", "text": "..."}} per line, UTF-8, {@code \n} line ends. */
public final class Jsonl {
    private Jsonl() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /** the exact bytes of a {@code .jsonl} file holding {@code docs} in the given order */
    public static byte[] encode(List<Document> docs) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (Document d : docs) {
            ObjectNode o = JSON.createObjectNode();
            o.put("id", d.id());
            o.put("text", d.text());
            out.write(JSON.writeValueAsBytes(o));
            out.write('\n');
        }
        return out.toByteArray();
    }

    /** reads every document; {@code where} names the file in errors */
    public static List<Document> read(InputStream in, String where) throws IOException {
        List<Document> docs = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
            String line;
            int lineNo = 0;
            while ((line = r.readLine()) != null) {
                lineNo++;
                if (line.isEmpty()) continue;
                JsonNode o;
                try {
                    o = JSON.readTree(line);
                } catch (IOException e) {
                    throw new IOException(where + ":" + lineNo + ": not a JSON object (" + e.getMessage() + ")", e);
                }
                JsonNode id = o == null ? null : o.get("id"), text = o == null ? null : o.get("text");
                if (id == null || !id.isTextual() || text == null || !text.isTextual()) {
                    throw new IOException(where + ":" + lineNo + ": expected {\"id\": string, \"text\": string}");
                }
                docs.add(new Document(id.asText(), text.asText()));
            }
        }
        return docs;
    }
}
