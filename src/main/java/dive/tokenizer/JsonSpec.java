package dive.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;

/** Reads fields of a tokenizer.json tree; every error names the file and the field path. */
final class JsonSpec {
    final String file;

    JsonSpec(String file) {
        this.file = file;
    }

    /** longest quoted text or JSON value shown in a message */
    private static final int SHOWN_CHARS = 80;

    /** "FILE: FIELD PROBLEM" on one line: control characters (a token may hold a newline) written as escapes */
    TokenizerFormatException error(String field, String problem) {
        return new TokenizerFormatException(oneLine(file + ": " + field + " " + problem));
    }

    /** the message on one line ({@link dive.util.Messages#oneLine}) */
    static String oneLine(String message) { return dive.util.Messages.oneLine(message); }

    /** a token or other text from the file, as a JSON string literal, shortened past SHOWN_CHARS */
    static String quote(String text) {
        String q = com.fasterxml.jackson.databind.node.TextNode.valueOf(text).toString();
        return q.length() <= SHOWN_CHARS ? q : q.substring(0, SHOWN_CHARS - 4) + "…\"";
    }

    /** a JSON value from the file, shortened past SHOWN_CHARS */
    static String shorten(String text) {
        return text.length() <= SHOWN_CHARS ? text : text.substring(0, SHOWN_CHARS - 1) + "…";
    }

    static String show(JsonNode node) {
        String v = String.valueOf(node);
        return v.length() <= SHOWN_CHARS ? v : v.substring(0, SHOWN_CHARS - 1) + "…";
    }

    TokenizerFormatException unsupported(String field, String value, String expected) {
        return error(field, "'" + shorten(value) + "' is not supported (expected " + expected + ")");
    }

    JsonNode required(JsonNode parent, String name, String path) throws TokenizerFormatException {
        JsonNode node = parent.get(name);
        if (node == null || node.isNull()) throw error(path + "." + name, "is missing");
        return node;
    }

    String text(JsonNode parent, String name, String path) throws TokenizerFormatException {
        JsonNode node = required(parent, name, path);
        if (!node.isTextual()) throw error(path + "." + name, "must be a string, found " + node.getNodeType());
        return node.asText();
    }

    String optionalText(JsonNode parent, String name, String path) throws TokenizerFormatException {
        JsonNode node = parent.get(name);
        if (node == null || node.isNull()) return null;
        if (!node.isTextual()) throw error(path + "." + name, "must be a string, found " + node.getNodeType());
        return node.asText();
    }

    boolean bool(JsonNode parent, String name, String path, boolean fallback) throws TokenizerFormatException {
        JsonNode node = parent.get(name);
        if (node == null || node.isNull()) return fallback;
        if (!node.isBoolean()) throw error(path + "." + name, "must be true or false, found " + node.getNodeType());
        return node.asBoolean();
    }

    int integer(JsonNode parent, String name, String path, int fallback) throws TokenizerFormatException {
        JsonNode node = parent.get(name);
        if (node == null || node.isNull()) return fallback;
        if (!node.canConvertToInt() || !node.isIntegralNumber() || node.asInt() < 0) {
            throw error(path + "." + name, "must be a non-negative integer, found " + show(node));
        }
        return node.asInt();
    }

    /** a token id: an integral number 0 ≤ id < limit; "FIELD VALUE: expected 0 ≤ id < LIMIT" otherwise */
    int tokenId(JsonNode node, String field, int limit) throws TokenizerFormatException {
        if (!node.isIntegralNumber()) throw error(field, "must be an integer token id, found " + show(node));
        if (!node.canConvertToInt() || node.asInt() < 0 || node.asInt() >= limit) {
            throw error(field, show(node) + ": expected 0 ≤ id < " + limit);
        }
        return node.asInt();
    }

    String type(JsonNode node, String path) throws TokenizerFormatException {
        if (!node.isObject()) throw error(path, "must be an object, found " + node.getNodeType());
        return text(node, "type", path);
    }

    /** A {"String": "..."} or {"Regex": "..."} pattern, as a Java regex. */
    java.util.regex.Pattern pattern(JsonNode parent, String name, String path) throws TokenizerFormatException {
        JsonNode node = required(parent, name, path);
        String field = path + "." + name;
        if (node.has("String") && node.get("String").isTextual()) {
            return java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(node.get("String").asText()));
        }
        if (node.has("Regex") && node.get("Regex").isTextual()) {
            try {
                return java.util.regex.Pattern.compile(node.get("Regex").asText(),
                        java.util.regex.Pattern.UNICODE_CHARACTER_CLASS);
            } catch (java.util.regex.PatternSyntaxException e) {
                throw error(field + ".Regex", "is not a regular expression this tokenizer can compile: "
                        + e.getDescription());
            }
        }
        throw error(field, "must be {\"String\": ...} or {\"Regex\": ...}, found " + show(node));
    }
}
