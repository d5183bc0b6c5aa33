package dive.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;

/**
 * A Hugging Face {@code tokenizer.json} BPE tokenizer: byte-level (GPT-2, Llama 3) and SentencePiece style
 * (Llama 2, TinyLlama, Mistral: Metaspace or Prepend/Replace normalizer, byte_fallback). Encoding follows HF
 * {@code Tokenizer.encode}: added tokens are split out of the raw text, the rest is normalized, pre-tokenized,
 * and each word run through the BPE model; the post-processor template adds BOS. Decoding follows HF
 * {@code Tokenizer.decode}. Immutable; safe to share between threads.
 *
 * <p>Text is Java UTF-16; an unpaired surrogate has no UTF-8 form and is encoded as U+FFFD. Raw bytes that may
 * not be valid UTF-8 go through {@link #encode(byte[], boolean)}, which replaces ill-formed sequences by U+FFFD
 * exactly as Python's {@code bytes.decode('utf-8', errors='replace')} does before HF sees the text.
 *
 * <p>Ids are bounded: every id of {@code model.vocab}, {@code added_tokens} and the post-processor must lie in
 * 0 &le; id &lt; {@value #MAX_VOCAB_SIZE}, checked before the id table is allocated; two {@code model.vocab} entries
 * may not share an id. The ids need not be dense: {@link #vocabSize()} is the largest id + 1, and an id below it
 * that no token has (a gap) is refused by {@link #decode} and {@link #token} with an {@link UnknownTokenIdException}
 * naming the file and the id (HF's decode drops such an id silently; here it is an error, since it can only come
 * from a model whose vocabulary does not match this tokenizer).
 */
public final class Tokenizer {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** ids run 0 ≤ id < MAX_VOCAB_SIZE (the bound of config.json's vocab_size too) */
    public static final int MAX_VOCAB_SIZE = 1 << 24;
    private static final List<String> BOS_NAMES = List.of("<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>");
    private static final List<String> EOS_NAMES = List.of("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>");

    /** One entry of "added_tokens". */
    record AddedToken(int id, String content, boolean singleWord, boolean lstrip, boolean rstrip,
                      boolean normalized, boolean special) {}

    private final JsonNode spec; // the tokenizer.json tree, kept for saving
    private final Normalizer normalizer;
    private final PreTokenizer preTokenizer;
    private final BpeModel model;
    private final Decoder decoder;
    private final AddedTokenMatcher rawAddedTokens;        // added tokens with normalized=false
    private final AddedTokenMatcher normalizedAddedTokens; // added tokens with normalized=true
    private final Map<String, Integer> addedTokenIds;
    private final String[] idToToken;
    private final boolean[] isSpecial;
    private final int[] templatePrefix; // special ids before the sequence ("<s> $A")
    private final int[] templateSuffix; // special ids after it
    private final int bosId, eosId;     // -1: none
    private final String file;          // named in decode errors

    private Tokenizer(JsonNode spec, String file) throws TokenizerFormatException {
        JsonSpec s = new JsonSpec(file);
        if (!spec.isObject()) throw s.error("(root)", "must be a JSON object");
        this.spec = spec;
        this.file = file;
        this.model = parseModel(s.required(spec, "model", ""), s);
        this.normalizer = Normalizer.parse(spec.get("normalizer"), "normalizer", s);
        this.preTokenizer = PreTokenizer.parse(spec.get("pre_tokenizer"), "pre_tokenizer", s);
        this.decoder = Decoder.parse(spec.get("decoder"), "decoder", s);

        List<AddedToken> added = parseAddedTokens(spec.get("added_tokens"), s);
        int size = 0;
        for (int id : model.vocab.values()) size = Math.max(size, id + 1);
        for (AddedToken t : added) size = Math.max(size, t.id() + 1);
        // every id was checked against MAX_VOCAB_SIZE when read: size ≤ MAX_VOCAB_SIZE
        idToToken = new String[size];
        isSpecial = new boolean[size];
        for (Map.Entry<String, Integer> e : model.vocab.entrySet()) idToToken[e.getValue()] = e.getKey();
        addedTokenIds = new HashMap<>();
        List<AddedToken> raw = new ArrayList<>(), normalized = new ArrayList<>();
        for (AddedToken t : added) {
            idToToken[t.id()] = t.content();
            isSpecial[t.id()] = t.special();
            addedTokenIds.put(t.content(), t.id());
            if (t.normalized() && normalizer != null) {
                String content = normalizer.normalize(t.content());
                normalized.add(new AddedToken(t.id(), content, t.singleWord(), t.lstrip(), t.rstrip(), true, t.special()));
            } else {
                raw.add(t);
            }
        }
        rawAddedTokens = new AddedTokenMatcher(raw);
        normalizedAddedTokens = new AddedTokenMatcher(normalized);

        List<int[]> template = parsePostProcessor(spec.get("post_processor"), "post_processor", s);
        templatePrefix = template == null ? new int[0] : template.get(0);
        templateSuffix = template == null ? new int[0] : template.get(1);
        for (int[] part : List.of(templatePrefix, templateSuffix)) {
            for (int id : part) {
                if (id < 0 || id >= size || idToToken[id] == null) {
                    throw s.error("post_processor", "adds token id " + id + ", which is not in the vocabulary (size " + size + ")");
                }
            }
        }
        bosId = templatePrefix.length > 0 ? templatePrefix[0] : firstPresent(BOS_NAMES);
        eosId = templateSuffix.length > 0 ? templateSuffix[templateSuffix.length - 1] : firstPresent(EOS_NAMES);
    }

    /** Loads a tokenizer.json file (or the tokenizer.json inside a checkpoint folder). */
    public static Tokenizer load(Path tokenizerJson) throws IOException {
        Path file = Files.isDirectory(tokenizerJson) ? tokenizerJson.resolve("tokenizer.json") : tokenizerJson;
        JsonNode tree;
        try {
            tree = JSON.readTree(file.toFile());
        } catch (JsonProcessingException e) {
            throw new TokenizerFormatException(JsonSpec.oneLine(file + ": not valid JSON: " + e.getOriginalMessage()));
        }
        if (tree == null || tree.isMissingNode()) throw new TokenizerFormatException(file + ": empty file");
        return new Tokenizer(tree, file.toString());
    }

    /** Builds a tokenizer from a tokenizer.json tree (the trainer uses it); {@code name} appears in errors. */
    static Tokenizer fromJson(JsonNode tree, String name) throws TokenizerFormatException {
        return new Tokenizer(tree.deepCopy(), name);
    }

    /** Encodes with the special tokens of the post-processor (BOS for Llama), like HF encode(add_special_tokens=True). */
    public int[] encode(String text) {
        return encode(text, true);
    }

    public int[] encode(String text, boolean addSpecialTokens) {
        IntList ids = new IntList(text.length() / 3 + 8);
        if (addSpecialTokens) ids.addAll(templatePrefix);
        text = Utf8.replaceLoneSurrogates(text);
        for (AddedTokenMatcher.Segment raw : rawAddedTokens.split(text)) {
            if (raw.tokenId() >= 0) {
                ids.add(raw.tokenId());
                continue;
            }
            String normalizedText = normalizer == null ? raw.text() : normalizer.normalize(raw.text());
            for (AddedTokenMatcher.Segment piece : normalizedAddedTokens.split(normalizedText)) {
                if (piece.tokenId() >= 0) {
                    ids.add(piece.tokenId());
                } else if (!piece.text().isEmpty()) {
                    boolean atStart = raw.start() == 0 && piece.start() == 0;
                    encodePiece(piece.text(), atStart, ids);
                }
            }
        }
        if (addSpecialTokens) ids.addAll(templateSuffix);
        return ids.toArray();
    }

    /** Encodes UTF-8 bytes; ill-formed sequences become U+FFFD as Python's errors='replace' makes them. */
    public int[] encode(byte[] utf8, boolean addSpecialTokens) {
        return encode(Utf8.decodeLossy(utf8), addSpecialTokens);
    }

    private void encodePiece(String text, boolean atStart, IntList ids) {
        if (preTokenizer == null) {
            ids.addAll(model.encodeWord(text));
            return;
        }
        List<String> words = new ArrayList<>();
        preTokenizer.split(text, atStart, words);
        for (String word : words) ids.addAll(model.encodeWord(word));
    }

    /**
     * Decodes keeping special tokens, like HF decode(ids) with skip_special_tokens=False.
     *
     * @throws UnknownTokenIdException for an id that has no token (see {@link #token}); HF would drop it silently
     */
    public String decode(int[] ids) {
        return decode(ids, false);
    }

    public String decode(int[] ids, boolean skipSpecialTokens) {
        List<String> tokens = new ArrayList<>(ids.length);
        for (int id : ids) {
            String token = token(id);
            if (skipSpecialTokens && isSpecial[id]) continue; // token(id) has checked the id
            tokens.add(token);
        }
        if (decoder == null) return String.join(" ", tokens);
        return String.join("", decoder.decodeChain(tokens));
    }

    /** Number of ids: the model vocabulary together with the added tokens. */
    public int vocabSize() {
        return idToToken.length;
    }

    /** Whether {@code id} has a token, i.e. {@link #decode} accepts it (ids may have gaps below {@link #vocabSize()}). */
    public boolean hasToken(int id) {
        return id >= 0 && id < idToToken.length && idToToken[id] != null;
    }

    /** The ids {@link #decode} accepts: those with a token (a fresh set; the caller may change it). */
    public java.util.BitSet decodableIds() {
        java.util.BitSet ids = new java.util.BitSet(idToToken.length);
        for (int id = 0; id < idToToken.length; id++) if (idToToken[id] != null) ids.set(id);
        return ids;
    }

    /**
     * The token string of an id (added tokens take precedence, as in HF id_to_token).
     *
     * @throws UnknownTokenIdException when the id is outside 0 ≤ id &lt; {@link #vocabSize()} or in a gap of the ids
     */
    public String token(int id) {
        if (id < 0 || id >= idToToken.length) {
            throw new UnknownTokenIdException(id, file + ": token id " + id + " is outside the vocabulary (expected 0 ≤ id < "
                    + idToToken.length + ")");
        }
        String token = idToToken[id];
        if (token == null) {
            throw new UnknownTokenIdException(id, file + ": token id " + id
                    + " has no token (no entry of model.vocab or added_tokens has this id)");
        }
        return token;
    }

    public OptionalInt id(String token) {
        Integer id = addedTokenIds.get(token);
        if (id == null) id = model.vocab.get(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /** Whether an id is an added token marked special (skipped by decode with skipSpecialTokens). */
    public boolean isSpecial(int id) {
        token(id);
        return isSpecial[id];
    }

    public OptionalInt bosId() {
        return bosId < 0 ? OptionalInt.empty() : OptionalInt.of(bosId);
    }

    public OptionalInt eosId() {
        return eosId < 0 ? OptionalInt.empty() : OptionalInt.of(eosId);
    }

    /** Writes this tokenizer's tokenizer.json atomically (temp file in the same folder, then rename). */
    void save(Path tokenizerJson) throws IOException {
        Path parent = tokenizerJson.toAbsolutePath().getParent();
        try {
            Files.createDirectories(parent);
        } catch (IOException e) {
            throw dive.util.FileErrors.wrap("creating the folder of", tokenizerJson, e);
        }
        // atomically (temp file, fsync, rename), every I/O error naming the file
        dive.util.AtomicFiles.writeString(tokenizerJson, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(spec));
    }

    private int firstPresent(List<String> names) {
        for (String name : names) {
            Integer id = addedTokenIds.get(name);
            if (id != null) return id;
        }
        return -1;
    }

    private static BpeModel parseModel(JsonNode node, JsonSpec s) throws TokenizerFormatException {
        String type = node.has("type") ? s.text(node, "type", "model") : "BPE";
        if (!type.equals("BPE")) throw s.unsupported("model.type", type, "BPE");
        JsonNode dropout = node.get("dropout");
        if (dropout != null && !dropout.isNull() && dropout.asDouble() != 0.0) {
            throw s.unsupported("model.dropout", dropout.toString(), "null: BPE dropout is a training-time option");
        }
        for (String field : List.of("continuing_subword_prefix", "end_of_word_suffix")) {
            String value = s.optionalText(node, field, "model");
            if (value != null && !value.isEmpty()) throw s.unsupported("model." + field, value, "null");
        }
        JsonNode vocabNode = s.required(node, "vocab", "model");
        if (!vocabNode.isObject()) throw s.error("model.vocab", "must be an object of token to id");
        if (vocabNode.size() > MAX_VOCAB_SIZE) {
            throw s.error("model.vocab", "has " + vocabNode.size() + " entries: expected at most " + MAX_VOCAB_SIZE);
        }
        Map<String, Integer> vocab = new HashMap<>(vocabNode.size() * 2);
        Map<Integer, String> byId = new HashMap<>(vocabNode.size() * 2);
        for (Iterator<Map.Entry<String, JsonNode>> it = vocabNode.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            JsonNode idNode = e.getValue();
            int id = idNode.isIntegralNumber() && idNode.canConvertToInt() ? idNode.asInt() : -1;
            if (id < 0 || id >= MAX_VOCAB_SIZE) s.tokenId(idNode, vocabField(e.getKey()), MAX_VOCAB_SIZE); // throws
            String other = byId.putIfAbsent(id, e.getKey());
            if (other != null) {
                throw s.error(vocabField(e.getKey()), "has id " + id + ", which " + vocabField(other) + " has already (expected one token per id)");
            }
            vocab.put(e.getKey(), id);
        }
        JsonNode mergesNode = s.required(node, "merges", "model");
        if (!mergesNode.isArray()) throw s.error("model.merges", "must be an array");
        Map<Long, Long> merges = new HashMap<>(mergesNode.size() * 2);
        for (int rank = 0; rank < mergesNode.size(); rank++) {
            JsonNode m = mergesNode.get(rank);
            String field = "model.merges[" + rank + "]";
            String left, right;
            if (m.isTextual()) { // "a b"
                String[] parts = m.asText().split(" ", -1);
                if (parts.length != 2) throw s.error(field, "must be two tokens separated by one space, found " + JsonSpec.show(m));
                left = parts[0];
                right = parts[1];
            } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) { // ["a", "b"]
                left = m.get(0).asText();
                right = m.get(1).asText();
            } else {
                throw s.error(field, "must be \"a b\" or [\"a\", \"b\"], found " + JsonSpec.show(m));
            }
            Integer leftId = vocab.get(left), rightId = vocab.get(right), mergedId = vocab.get(left + right);
            if (leftId == null || rightId == null) throw s.error(field, "names a token not in model.vocab: " + JsonSpec.show(m));
            if (mergedId == null) throw s.error(field, "merges into " + JsonSpec.quote(left + right) + ", which is not in model.vocab");
            merges.putIfAbsent(BpeModel.pairKey(leftId, rightId), ((long) rank << 32) | mergedId);
        }
        String unk = s.optionalText(node, "unk_token", "model");
        int unkId = -1;
        if (unk != null) {
            Integer id = vocab.get(unk);
            if (id == null) throw s.error("model.unk_token", "'" + JsonSpec.shorten(unk) + "' is not in model.vocab");
            unkId = id;
        }
        return new BpeModel(vocab, merges, unkId, s.bool(node, "fuse_unk", "model", false),
                s.bool(node, "byte_fallback", "model", false), s.bool(node, "ignore_merges", "model", false));
    }

    /** model.vocab["TOKEN"], the token written as a JSON string */
    private static String vocabField(String token) {
        return "model.vocab[" + JsonSpec.quote(token) + "]";
    }

    private static List<AddedToken> parseAddedTokens(JsonNode node, JsonSpec s) throws TokenizerFormatException {
        List<AddedToken> list = new ArrayList<>();
        if (node == null || node.isNull()) return list;
        if (!node.isArray()) throw s.error("added_tokens", "must be an array");
        for (int i = 0; i < node.size(); i++) {
            JsonNode t = node.get(i);
            String path = "added_tokens[" + i + "]";
            if (!t.isObject()) throw s.error(path, "must be an object, found " + t.getNodeType());
            JsonNode idNode = t.get("id");
            if (idNode == null || idNode.isNull()) throw s.error(path + ".id", "is missing");
            int id = s.tokenId(idNode, path + ".id", MAX_VOCAB_SIZE);
            String content = s.text(t, "content", path);
            if (content.isEmpty()) throw s.error(path + ".content", "must not be empty");
            boolean special = s.bool(t, "special", path, false);
            list.add(new AddedToken(id, content, s.bool(t, "single_word", path, false), s.bool(t, "lstrip", path, false),
                    s.bool(t, "rstrip", path, false), s.bool(t, "normalized", path, !special), special));
        }
        return list;
    }

    /** The special ids before and after $A of a TemplateProcessing (inside a Sequence or alone); null if none. */
    private static List<int[]> parsePostProcessor(JsonNode node, String path, JsonSpec s) throws TokenizerFormatException {
        if (node == null || node.isNull()) return null;
        String type = s.type(node, path);
        switch (type) {
            case "ByteLevel":
                return null; // only adjusts offsets
            case "Sequence": {
                JsonNode items = s.required(node, "processors", path);
                List<int[]> found = null;
                for (int i = 0; i < items.size(); i++) {
                    List<int[]> t = parsePostProcessor(items.get(i), path + ".processors[" + i + "]", s);
                    if (t != null && found != null) throw s.error(path, "has more than one TemplateProcessing");
                    if (t != null) found = t;
                }
                return found;
            }
            case "TemplateProcessing": {
                JsonNode special = s.required(node, "special_tokens", path);
                JsonNode single = s.required(node, "single", path);
                IntList prefix = new IntList(2), suffix = new IntList(2);
                boolean seenSequence = false;
                for (int i = 0; i < single.size(); i++) {
                    JsonNode item = single.get(i);
                    String itemPath = path + ".single[" + i + "]";
                    if (item.has("Sequence")) {
                        if (seenSequence) throw s.error(itemPath, "is a second sequence in the single template");
                        seenSequence = true;
                    } else if (item.has("SpecialToken")) {
                        String name = s.text(item.get("SpecialToken"), "id", itemPath + ".SpecialToken");
                        JsonNode entry = special.get(name);
                        if (entry == null) throw s.error(path + ".special_tokens", "has no entry '" + name + "' used by " + itemPath);
                        String idsPath = path + ".special_tokens." + name + ".ids";
                        JsonNode ids = s.required(entry, "ids", path + ".special_tokens." + name);
                        if (!ids.isArray()) throw s.error(idsPath, "must be an array of token ids, found " + ids.getNodeType());
                        for (int k = 0; k < ids.size(); k++) {
                            (seenSequence ? suffix : prefix).add(s.tokenId(ids.get(k), idsPath + "[" + k + "]", MAX_VOCAB_SIZE));
                        }
                    } else {
                        throw s.error(itemPath, "must be {\"Sequence\": ...} or {\"SpecialToken\": ...}, found " + JsonSpec.show(item));
                    }
                }
                return List.of(prefix.toArray(), suffix.toArray());
            }
            default:
                throw s.unsupported(path + ".type", type, "TemplateProcessing, ByteLevel or Sequence");
        }
    }

    /** A growable int array. */
    static final class IntList {
        private int[] items;
        private int size;

        IntList(int capacity) {
            items = new int[Math.max(4, capacity)];
        }

        void add(int value) {
            if (size == items.length) items = Arrays.copyOf(items, size * 2);
            items[size++] = value;
        }

        void addAll(int[] values) {
            if (size + values.length > items.length) items = Arrays.copyOf(items, Math.max(size * 2, size + values.length));
            System.arraycopy(values, 0, items, size, values.length);
            size += values.length;
        }

        int[] toArray() {
            return Arrays.copyOf(items, size);
        }
    }
}
