package dive.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A tokenizer.json "decoder": turns the list of token strings back into text, step by step (HF decode_chain). */
interface Decoder {
    List<String> decodeChain(List<String> tokens);

    record Sequence(List<Decoder> decoders) implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            for (Decoder d : decoders) tokens = d.decodeChain(tokens);
            return tokens;
        }
    }

    /** Byte-level characters back to bytes, then UTF-8 with U+FFFD for ill-formed bytes. */
    record ByteLevelDecoder() implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            for (String token : tokens) {
                byte[] tokenBytes = new byte[token.length()];
                boolean allMapped = true;
                for (int i = 0; i < token.length() && allMapped; i++) {
                    int b = ByteLevel.byteOf(token.charAt(i));
                    if (b < 0) allMapped = false;
                    else tokenBytes[i] = (byte) b;
                }
                // a token with a character outside the byte map (an added token) contributes its own UTF-8
                bytes.writeBytes(allMapped ? tokenBytes : Utf8.encode(token));
            }
            return List.of(Utf8.decodeLossy(bytes.toByteArray()));
        }
    }

    record Replace(Pattern pattern, String content) implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String t : tokens) out.add(pattern.matcher(t).replaceAll(Matcher.quoteReplacement(content)));
            return out;
        }
    }

    /** Runs of "<0xNN>" tokens become their UTF-8 text, or one U+FFFD per byte when not valid UTF-8. */
    record ByteFallback() implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            ByteArrayOutputStream pending = new ByteArrayOutputStream();
            for (String token : tokens) {
                int b = byteToken(token);
                if (b >= 0) {
                    pending.write(b);
                    continue;
                }
                flush(pending, out);
                out.add(token);
            }
            flush(pending, out);
            return out;
        }

        private static int byteToken(String token) {
            if (token.length() != 6 || !token.startsWith("<0x") || token.charAt(5) != '>') return -1;
            int high = Character.digit(token.charAt(3), 16), low = Character.digit(token.charAt(4), 16);
            return high < 0 || low < 0 ? -1 : high * 16 + low;
        }

        private static void flush(ByteArrayOutputStream pending, List<String> out) {
            if (pending.size() == 0) return;
            byte[] bytes = pending.toByteArray();
            if (isValidUtf8(bytes)) {
                out.add(new String(bytes, java.nio.charset.StandardCharsets.UTF_8));
            } else {
                for (int i = 0; i < bytes.length; i++) out.add(String.valueOf(Utf8.REPLACEMENT));
            }
            pending.reset();
        }

        private static boolean isValidUtf8(byte[] bytes) {
            try {
                java.nio.charset.StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(bytes));
                return true;
            } catch (java.nio.charset.CharacterCodingException e) {
                return false;
            }
        }
    }

    record Fuse() implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            return List.of(String.join("", tokens));
        }
    }

    /** Removes up to {@code start} leading and {@code stop} trailing {@code content} characters of each token. */
    record Strip(int content, int start, int stop) implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String token : tokens) {
                int[] chars = token.codePoints().toArray();
                int from = 0;
                while (from < Math.min(start, chars.length) && chars[from] == content) from++;
                int to = chars.length;
                while (chars.length - to < stop && to > from && chars[to - 1] == content) to--;
                out.add(new String(chars, from, to - from));
            }
            return out;
        }
    }

    /** '▁' back to ' '; in the first token every '▁' is dropped unless prepend_scheme is "never" (as HF does). */
    record MetaspaceDecoder(char replacement, boolean dropInFirst) implements Decoder {
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                String t = tokens.get(i);
                out.add(i == 0 && dropInFirst ? t.replace(String.valueOf(replacement), "") : t.replace(replacement, ' '));
            }
            return out;
        }
    }

    /** Parses the "decoder" field; null when the field is null. */
    static Decoder parse(JsonNode node, String path, JsonSpec spec) throws TokenizerFormatException {
        if (node == null || node.isNull()) return null;
        String type = spec.type(node, path);
        switch (type) {
            case "Sequence": {
                JsonNode items = spec.required(node, "decoders", path);
                List<Decoder> list = new ArrayList<>();
                for (int i = 0; i < items.size(); i++) {
                    Decoder d = parse(items.get(i), path + ".decoders[" + i + "]", spec);
                    if (d != null) list.add(d);
                }
                return new Sequence(List.copyOf(list));
            }
            case "ByteLevel": return new ByteLevelDecoder();
            case "Replace": return new Replace(spec.pattern(node, "pattern", path), spec.text(node, "content", path));
            case "ByteFallback": return new ByteFallback();
            case "Fuse": return new Fuse();
            case "Strip": {
                String content = spec.text(node, "content", path);
                if (content.codePointCount(0, content.length()) != 1) throw spec.error(path + ".content", "must be one character, found '" + content + "'");
                return new Strip(content.codePointAt(0), spec.integer(node, "start", path, 0), spec.integer(node, "stop", path, 0));
            }
            case "Metaspace": {
                String replacement = spec.text(node, "replacement", path);
                if (replacement.length() != 1) throw spec.error(path + ".replacement", "must be one character, found '" + replacement + "'");
                String scheme = spec.optionalText(node, "prepend_scheme", path);
                boolean prepend = scheme == null ? spec.bool(node, "add_prefix_space", path, true) : !scheme.equals("never");
                return new MetaspaceDecoder(replacement.charAt(0), prepend);
            }
            default:
                throw spec.unsupported(path + ".type", type, "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip or Metaspace");
        }
    }
}
