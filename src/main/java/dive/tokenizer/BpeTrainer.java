package dive.tokenizer;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Set;

/**
 * Trains a byte-level BPE (GPT-2 style: GPT-2 split regex, 256 byte characters as the alphabet, so any text
 * encodes) and produces a tokenizer.json that the Hugging Face tokenizers library loads with identical ids.
 *
 * <p>Ids: the special tokens first (in the order given), then the 256 byte characters in byte order, then one
 * token per merge. Each step merges the most frequent adjacent pair over all words (word counts weighted);
 * ties go to the pair with the smaller (left id, right id). Training stops at {@code vocabSize} tokens, or
 * earlier when the most frequent pair occurs fewer than {@code minFrequency} times or no pair is left.
 */
public final class BpeTrainer {
    private BpeTrainer() {}

    public static Tokenizer train(Iterable<String> texts, int vocabSize, int minFrequency, List<String> specialTokens) {
        return train(texts, vocabSize, minFrequency, specialTokens, null);
    }

    /**
     * @param bosToken when not null, one of {@code specialTokens}; encode(text) then adds it in front, through a
     *                 TemplateProcessing post-processor as Llama's tokenizer.json does
     */
    public static Tokenizer train(Iterable<String> texts, int vocabSize, int minFrequency, List<String> specialTokens,
                                  String bosToken) {
        if (minFrequency < 1) throw new IllegalArgumentException("minFrequency must be >= 1, got " + minFrequency);
        if (new HashSet<>(specialTokens).size() != specialTokens.size()) {
            throw new IllegalArgumentException("specialTokens has duplicates: " + specialTokens);
        }
        if (bosToken != null && !specialTokens.contains(bosToken)) {
            throw new IllegalArgumentException("bosToken '" + bosToken + "' must be one of specialTokens " + specialTokens);
        }
        int baseSize = specialTokens.size() + 256;
        if (vocabSize < baseSize) {
            throw new IllegalArgumentException("vocabSize " + vocabSize + " is below the " + specialTokens.size()
                    + " special tokens + 256 bytes = " + baseSize);
        }

        // vocabulary: special tokens, then the byte alphabet
        List<String> idToToken = new ArrayList<>(vocabSize);
        Map<String, Integer> vocab = new HashMap<>();
        for (String s : specialTokens) { vocab.put(s, idToToken.size()); idToToken.add(s); }
        for (int b = 0; b < 256; b++) {
            String c = String.valueOf(ByteLevel.BYTE_TO_CHAR[b]);
            if (!vocab.containsKey(c)) { vocab.put(c, idToToken.size()); idToToken.add(c); }
        }

        // word counts: special tokens are cut out of the text, the rest split as GPT-2 and written as byte chars
        AddedTokenMatcher specials = new AddedTokenMatcher(specialTokens.stream()
                .map(s -> new Tokenizer.AddedToken(-1, s, false, false, false, false, true)).toList());
        PreTokenizer preTokenizer = new PreTokenizer.ByteLevelSplit(false, true);
        Map<String, Long> wordCounts = new HashMap<>();
        List<String> words = new ArrayList<>();
        for (String text : texts) {
            for (AddedTokenMatcher.Segment segment : specials.split(Utf8.replaceLoneSurrogates(text))) {
                if (segment.tokenId() != -1 || segment.text().isEmpty()) continue;
                words.clear();
                preTokenizer.split(segment.text(), false, words);
                for (String w : words) wordCounts.merge(w, 1L, Long::sum);
            }
        }

        // each distinct word as symbol ids, with its count
        int[][] wordSymbols = new int[wordCounts.size()][];
        long[] wordCount = new long[wordCounts.size()];
        int w = 0;
        for (Map.Entry<String, Long> e : wordCounts.entrySet()) {
            String word = e.getKey();
            int[] symbols = new int[word.length()];
            for (int i = 0; i < word.length(); i++) symbols[i] = vocab.get(String.valueOf(word.charAt(i)));
            wordSymbols[w] = symbols;
            wordCount[w++] = e.getValue();
        }

        // pair statistics
        Map<Long, Long> pairCounts = new HashMap<>();
        Map<Long, Set<Integer>> pairWords = new HashMap<>();
        for (int i = 0; i < wordSymbols.length; i++) addPairs(wordSymbols[i], wordCount[i], i, pairCounts, pairWords);
        // candidates: {count, pair}; most frequent first, then the smaller pair; stale entries are skipped
        PriorityQueue<long[]> queue = new PriorityQueue<>((a, b) -> a[0] != b[0] ? Long.compare(b[0], a[0])
                : Long.compare(a[1], b[1]));
        for (Map.Entry<Long, Long> e : pairCounts.entrySet()) queue.add(new long[] {e.getValue(), e.getKey()});

        List<String[]> merges = new ArrayList<>();
        while (idToToken.size() < vocabSize && !queue.isEmpty()) {
            long[] best = queue.poll();
            long pair = best[1];
            long count = pairCounts.getOrDefault(pair, 0L);
            if (count != best[0]) continue; // stale
            if (count < minFrequency || count == 0) break;
            int left = (int) (pair >>> 32), right = (int) pair;
            String merged = idToToken.get(left) + idToToken.get(right);
            Integer mergedId = vocab.get(merged);
            if (mergedId == null) {
                mergedId = idToToken.size();
                vocab.put(merged, mergedId);
                idToToken.add(merged);
            }
            merges.add(new String[] {idToToken.get(left), idToToken.get(right)});

            Map<Long, Long> before = new HashMap<>();
            for (int word : List.copyOf(pairWords.getOrDefault(pair, Set.of()))) {
                int[] symbols = wordSymbols[word];
                removePairs(symbols, wordCount[word], pairCounts, before);
                wordSymbols[word] = symbols = mergePair(symbols, left, right, mergedId);
                addPairs(symbols, wordCount[word], word, pairCounts, pairWords);
                for (int i = 0; i + 1 < symbols.length; i++) before.putIfAbsent(BpeModel.pairKey(symbols[i], symbols[i + 1]), 0L);
            }
            pairWords.remove(pair);
            for (long changed : before.keySet()) {
                long now = pairCounts.getOrDefault(changed, 0L);
                if (now > 0) queue.add(new long[] {now, changed});
            }
        }
        try {
            return Tokenizer.fromJson(toJson(idToToken, merges, specialTokens, bosToken, vocab), "trained tokenizer");
        } catch (TokenizerFormatException e) {
            throw new IllegalStateException("trainer built an invalid tokenizer.json: " + e.getMessage(), e);
        }
    }

    /** Writes the tokenizer's tokenizer.json atomically (temp file in the same folder, then rename). */
    public static void save(Tokenizer tokenizer, Path tokenizerJson) throws IOException {
        tokenizer.save(tokenizerJson);
    }

    private static void addPairs(int[] symbols, long count, int word, Map<Long, Long> pairCounts,
                                 Map<Long, Set<Integer>> pairWords) {
        for (int i = 0; i + 1 < symbols.length; i++) {
            long key = BpeModel.pairKey(symbols[i], symbols[i + 1]);
            pairCounts.merge(key, count, Long::sum);
            pairWords.computeIfAbsent(key, k -> new HashSet<>()).add(word);
        }
    }

    private static void removePairs(int[] symbols, long count, Map<Long, Long> pairCounts, Map<Long, Long> touched) {
        for (int i = 0; i + 1 < symbols.length; i++) {
            long key = BpeModel.pairKey(symbols[i], symbols[i + 1]);
            long left = pairCounts.merge(key, -count, Long::sum);
            if (left == 0) pairCounts.remove(key);
            touched.putIfAbsent(key, 0L);
        }
    }

    /** Replaces each occurrence of (left, right), scanning left to right without overlap, by merged. */
    static int[] mergePair(int[] symbols, int left, int right, int merged) {
        int[] out = new int[symbols.length];
        int n = 0;
        for (int i = 0; i < symbols.length; i++) {
            if (i + 1 < symbols.length && symbols[i] == left && symbols[i + 1] == right) {
                out[n++] = merged;
                i++;
            } else {
                out[n++] = symbols[i];
            }
        }
        return java.util.Arrays.copyOf(out, n);
    }

    private static ObjectNode toJson(List<String> idToToken, List<String[]> merges, List<String> specialTokens,
                                     String bosToken, Map<String, Integer> vocab) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        ObjectNode root = f.objectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (String s : specialTokens) {
            added.addObject().put("id", vocab.get(s)).put("content", s).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        root.putNull("normalizer");
        root.set("pre_tokenizer", byteLevel(f, false, true));
        if (bosToken == null) {
            root.set("post_processor", byteLevel(f, true, false));
        } else {
            ObjectNode template = f.objectNode().put("type", "TemplateProcessing");
            ArrayNode single = template.putArray("single");
            single.addObject().putObject("SpecialToken").put("id", bosToken).put("type_id", 0);
            single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
            ArrayNode pair = template.putArray("pair");
            pair.addObject().putObject("SpecialToken").put("id", bosToken).put("type_id", 0);
            pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
            pair.addObject().putObject("SpecialToken").put("id", bosToken).put("type_id", 1);
            pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
            ObjectNode entry = template.putObject("special_tokens").putObject(bosToken).put("id", bosToken);
            entry.putArray("ids").add(vocab.get(bosToken));
            entry.putArray("tokens").add(bosToken);
            ObjectNode sequence = f.objectNode().put("type", "Sequence");
            sequence.putArray("processors").add(byteLevel(f, true, false)).add(template);
            root.set("post_processor", sequence);
        }
        root.set("decoder", byteLevel(f, true, true));
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.putNull("unk_token");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("ignore_merges", false);
        ObjectNode vocabNode = model.putObject("vocab");
        for (int id = 0; id < idToToken.size(); id++) vocabNode.put(idToToken.get(id), id);
        ArrayNode mergesNode = model.putArray("merges");
        for (String[] m : merges) mergesNode.addArray().add(m[0]).add(m[1]);
        return root;
    }

    private static ObjectNode byteLevel(JsonNodeFactory f, boolean addPrefixSpace, boolean trimOffsets) {
        return f.objectNode().put("type", "ByteLevel").put("add_prefix_space", addPrefixSpace)
                .put("trim_offsets", trimOffsets).put("use_regex", true);
    }
}
