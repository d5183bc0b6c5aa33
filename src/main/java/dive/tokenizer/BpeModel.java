package dive.tokenizer;

import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The BPE model of a tokenizer.json: a vocabulary and ranked merges. A word is split into characters (or
 * {@code <0xNN>} byte tokens, or the unknown token), then the pair with the lowest merge rank is merged,
 * leftmost first, until no pair has a merge. Immutable apart from a concurrent word cache.
 */
final class BpeModel {
    private static final int CACHE_CAPACITY = 100_000;
    private static final int CACHE_MAX_WORD_CHARS = 256;

    final Map<String, Integer> vocab;
    /** key: left id << 32 | right id; value: rank << 32 | merged id */
    private final Map<Long, Long> merges;
    private final int unkId; // -1: none
    private final boolean fuseUnk;
    private final boolean ignoreMerges;
    private final int[] byteFallbackIds; // null unless byte_fallback; -1 where <0xNN> is missing
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    BpeModel(Map<String, Integer> vocab, Map<Long, Long> merges, int unkId, boolean fuseUnk, boolean byteFallback,
             boolean ignoreMerges) {
        this.vocab = vocab;
        this.merges = merges;
        this.unkId = unkId;
        this.fuseUnk = fuseUnk;
        this.ignoreMerges = ignoreMerges;
        if (byteFallback) {
            byteFallbackIds = new int[256];
            for (int b = 0; b < 256; b++) byteFallbackIds[b] = vocab.getOrDefault(String.format("<0x%02X>", b), -1);
        } else {
            byteFallbackIds = null;
        }
    }

    static long pairKey(int left, int right) {
        return ((long) left << 32) | (right & 0xFFFFFFFFL);
    }

    /** Token ids of one pre-tokenized word. */
    int[] encodeWord(String word) {
        boolean cacheable = word.length() <= CACHE_MAX_WORD_CHARS;
        if (cacheable) {
            int[] cached = cache.get(word);
            if (cached != null) return cached;
        }
        int[] ids = computeWord(word);
        if (cacheable && cache.size() < CACHE_CAPACITY) cache.put(word, ids);
        return ids;
    }

    private int[] computeWord(String word) {
        if (ignoreMerges) {
            Integer whole = vocab.get(word);
            if (whole != null) return new int[] {whole};
        }
        int[] symbols = initialSymbols(word);
        return merge(symbols);
    }

    /** One id per character; characters not in the vocabulary become byte tokens or the unknown token. */
    private int[] initialSymbols(String word) {
        int[] ids = new int[word.length() * 4];
        int count = 0;
        boolean pendingUnk = false;
        for (int i = 0; i < word.length(); ) {
            int cp = word.codePointAt(i);
            int end = i + Character.charCount(cp);
            Integer id = vocab.get(word.substring(i, end));
            if (id != null) {
                if (pendingUnk) { ids[count++] = unkId; pendingUnk = false; }
                ids[count++] = id;
            } else {
                int[] byteIds = byteFallbackIds == null ? null : byteIdsOf(word.substring(i, end));
                if (byteIds != null) {
                    if (pendingUnk) { ids[count++] = unkId; pendingUnk = false; }
                    for (int b : byteIds) ids[count++] = b;
                } else if (unkId >= 0) {
                    if (pendingUnk && !fuseUnk) ids[count++] = unkId;
                    pendingUnk = true;
                }
                // no unknown token: the character is dropped, as HF does
            }
            i = end;
        }
        if (pendingUnk) ids[count++] = unkId;
        return Arrays.copyOf(ids, count);
    }

    private int[] byteIdsOf(String character) {
        byte[] bytes = Utf8.encode(character);
        int[] ids = new int[bytes.length];
        for (int k = 0; k < bytes.length; k++) {
            ids[k] = byteFallbackIds[bytes[k] & 0xFF];
            if (ids[k] < 0) return null;
        }
        return ids;
    }

    /** Applies merges by rank (lowest first, leftmost among equal ranks) with a heap over candidate pairs. */
    private int[] merge(int[] ids) {
        int n = ids.length;
        if (n < 2) return ids;
        int[] next = new int[n], prev = new int[n];
        boolean[] alive = new boolean[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; alive[i] = true; }
        LongHeap heap = new LongHeap(n);
        for (int i = 0; i + 1 < n; i++) pushPair(heap, ids, i, i + 1);
        while (!heap.isEmpty()) {
            long top = heap.poll(); // rank << 32 | position of the left symbol
            int pos = (int) top;
            int rank = (int) (top >>> 32);
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            Long merge = merges.get(pairKey(ids[pos], ids[right]));
            if (merge == null || (int) (merge >>> 32) != rank) continue; // stale entry
            ids[pos] = (int) (long) merge;
            alive[right] = false;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            if (prev[pos] >= 0) pushPair(heap, ids, prev[pos], pos);
            if (next[pos] >= 0) pushPair(heap, ids, pos, next[pos]);
        }
        int count = 0;
        for (int i = 0; i >= 0; i = next[i]) ids[count++] = ids[i];
        return Arrays.copyOf(ids, count);
    }

    private void pushPair(LongHeap heap, int[] ids, int left, int right) {
        Long merge = merges.get(pairKey(ids[left], ids[right]));
        if (merge != null) heap.add((merge >>> 32) << 32 | left);
    }

    /** A binary min-heap of longs. */
    private static final class LongHeap {
        private long[] items;
        private int size;

        LongHeap(int capacity) {
            items = new long[Math.max(4, capacity)];
        }

        boolean isEmpty() {
            return size == 0;
        }

        void add(long value) {
            if (size == items.length) items = Arrays.copyOf(items, size * 2);
            int i = size++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (items[parent] <= value) break;
                items[i] = items[parent];
                i = parent;
            }
            items[i] = value;
        }

        long poll() {
            long result = items[0];
            long last = items[--size];
            int i = 0;
            while (true) {
                int child = 2 * i + 1;
                if (child >= size) break;
                if (child + 1 < size && items[child + 1] < items[child]) child++;
                if (items[child] >= last) break;
                items[i] = items[child];
                i = child;
            }
            items[i] = last;
            return result;
        }
    }
}
