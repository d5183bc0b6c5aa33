package dive.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.data.Document;
import dive.data.Jsonl;
import dive.tokenizer.Tokenizer;
import dive.util.AtomicFiles;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

/**
 * One dataset split tokenized once: every document encoded without special tokens and followed by a separator
 * (the tokenizer's EOS, or its BOS when it has no EOS), all concatenated. Cached as {@code <name>.tokens}
 * (little-endian int32) with a header {@code <name>.json} holding the token count and the SHA-256 of the
 * tokenizer.json and of the source JSON-lines file; a cached shard is reused only when both hashes match.
 */
public record TokenShard(String name, int[] tokens, int documents) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static String sha256(byte[] bytes) {
        try { return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)); }
        catch (NoSuchAlgorithmException e) { throw new IllegalStateException(e); }
    }

    public static int separatorId(Tokenizer tokenizer) {
        if (tokenizer.eosId().isPresent()) return tokenizer.eosId().getAsInt();
        if (tokenizer.bosId().isPresent()) return tokenizer.bosId().getAsInt();
        throw new IllegalArgumentException("the tokenizer has neither an EOS nor a BOS token to separate documents");
    }

    /**
     * The shard {@code cacheDir/<name>}: loaded when cached for the same tokenizer and source bytes, else built
     * from {@code sourceJsonl} and written (atomically: tokens first, header last).
     */
    public static TokenShard loadOrBuild(Path cacheDir, String name, byte[] sourceJsonl, String sourceLabel,
                                         Tokenizer tokenizer, String tokenizerSha256) throws IOException {
        Files.createDirectories(cacheDir);
        Path tokensFile = cacheDir.resolve(name + ".tokens"), headerFile = cacheDir.resolve(name + ".json");
        String sourceSha256 = sha256(sourceJsonl);
        TokenShard cached = tryLoad(name, tokensFile, headerFile, tokenizerSha256, sourceSha256);
        if (cached != null) return cached;

        List<String> texts = Jsonl.read(new java.io.ByteArrayInputStream(sourceJsonl), sourceLabel).stream().map(Document::text).toList();
        int separator = separatorId(tokenizer);
        int[] buffer = new int[1024];
        int count = 0;
        for (String text : texts) {
            int[] ids = tokenizer.encode(text, false);
            if (count + ids.length + 1 > buffer.length) buffer = java.util.Arrays.copyOf(buffer, Math.max(buffer.length * 2, count + ids.length + 1));
            System.arraycopy(ids, 0, buffer, count, ids.length);
            count += ids.length;
            buffer[count++] = separator;
        }
        int[] tokens = java.util.Arrays.copyOf(buffer, count);
        ByteBuffer bytes = ByteBuffer.allocate(4 * count).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asIntBuffer().put(tokens);
        AtomicFiles.write(tokensFile, channel -> AtomicFiles.writeFully(channel, bytes));
        ObjectNode header = JSON.createObjectNode();
        header.put("format", "int32-le");
        header.put("tokens", count);
        header.put("documents", texts.size());
        header.put("separator_id", separator);
        header.put("tokenizer_sha256", tokenizerSha256);
        header.put("source", sourceLabel);
        header.put("source_sha256", sourceSha256);
        AtomicFiles.writeString(headerFile, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(header) + "\n");
        return new TokenShard(name, tokens, texts.size());
    }

    private static TokenShard tryLoad(String name, Path tokensFile, Path headerFile, String tokenizerSha256, String sourceSha256) throws IOException {
        if (!Files.isRegularFile(headerFile) || !Files.isRegularFile(tokensFile)) return null;
        JsonNode header;
        try { header = JSON.readTree(headerFile.toFile()); } catch (IOException e) { return null; } // rebuilt below
        if (header == null || !tokenizerSha256.equals(header.path("tokenizer_sha256").asText())
                || !sourceSha256.equals(header.path("source_sha256").asText())
                || !"int32-le".equals(header.path("format").asText())) return null;
        long count = header.path("tokens").asLong(-1);
        if (count < 0 || Files.size(tokensFile) != 4 * count) return null;
        int[] tokens = new int[Math.toIntExact(count)];
        ByteBuffer.wrap(Files.readAllBytes(tokensFile)).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(tokens);
        return new TokenShard(name, tokens, header.path("documents").asInt());
    }
}
