package dive.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Turns the groff ({@code man} macro) source of a manual page into plain text without running groff: requests and
 * macros are interpreted for structure only (title, section headings, paragraphs, fonts dropped), filled text is
 * joined into paragraphs, no-fill blocks ({@code .nf}, {@code .EX}, tables) keep their lines, escapes become the
 * characters they name. Deterministic and independent of the groff version installed. A page that is only a
 * {@code .so} link gives the empty string.
 */
public final class ManPage {
    private ManPage() {}

    private static final Map<String, String> SPECIAL = Map.ofEntries(
            Map.entry("em", "\u2014"), Map.entry("en", "\u2013"), Map.entry("aq", "'"), Map.entry("dq", "\""),
            Map.entry("lq", "\u201c"), Map.entry("rq", "\u201d"), Map.entry("oq", "\u2018"), Map.entry("cq", "\u2019"),
            Map.entry("bu", "\u2022"), Map.entry("co", "\u00a9"), Map.entry("rg", "\u00ae"), Map.entry("tm", "\u2122"),
            Map.entry("mu", "\u00d7"), Map.entry("de", "\u00b0"), Map.entry("+-", "\u00b1"), Map.entry("ha", "^"),
            Map.entry("ti", "~"), Map.entry("rs", "\\"), Map.entry("ga", "`"), Map.entry("hy", "-"), Map.entry("mi", "-"),
            Map.entry("<=", "\u2264"), Map.entry(">=", "\u2265"), Map.entry("!=", "\u2260"), Map.entry("->", "\u2192"),
            Map.entry("<-", "\u2190"), Map.entry("ua", "\u2191"), Map.entry("da", "\u2193"), Map.entry("~=", "\u2248"),
            Map.entry("ss", "\u00df"), Map.entry("Fo", "\u00ab"), Map.entry("Fc", "\u00bb"), Map.entry("sc", "\u00a7"),
            Map.entry("pl", "+"), Map.entry("eq", "="), Map.entry("sl", "/"), Map.entry("ba", "|"), Map.entry("or", "|"),
            Map.entry("lB", "["), Map.entry("rB", "]"), Map.entry("lC", "{"), Map.entry("rC", "}"), Map.entry("la", "\u27e8"),
            Map.entry("ra", "\u27e9"), Map.entry("R", "\u00ae"), Map.entry("Tm", "\u2122"), Map.entry("dg", "\u2020"));

    /** the plain text of one page */
    public static String toText(String source) {
        Renderer r = new Renderer();
        for (String rawLine : source.replace("\r\n", "\n").split("\n", -1)) {
            if (r.line(rawLine)) return "";
        }
        r.flush();
        return r.out.toString();
    }

    private static final class Renderer {
        final StringBuilder out = new StringBuilder();
        final StringBuilder paragraph = new StringBuilder();
        boolean noFill, inTable, tableFormat, skipDefinition, tagNext;
        String url;

        /** returns true when the page is only a link ({@code .so}) */
        boolean line(String raw) {
            if (skipDefinition) {
                if (raw.startsWith("..")) skipDefinition = false;
                return false;
            }
            if (raw.startsWith(".\\\"") || raw.startsWith("'\\\"") || raw.startsWith("\\\"")) return false;
            if (inTable && tableFormat) {
                if (raw.trim().endsWith(".")) tableFormat = false;
                return false;
            }
            if (raw.startsWith(".") || raw.startsWith("'")) return request(raw.substring(1).trim());
            String text = escapes(raw);
            if (inTable) text = text.replace("T{", "").replace("T}", "").replace('\t', ' ');
            if (tagNext) {
                tagNext = false;
                flush();
                out.append(text.strip()).append('\n');
                return false;
            }
            if (noFill || inTable) {
                flush();
                out.append(text).append('\n');
            } else if (raw.isBlank()) {
                flush();
            } else {
                addWords(text);
            }
            return false;
        }

        void addWords(String text) {
            String t = text.strip();
            if (t.isEmpty()) return;
            if (paragraph.length() > 0 && !endsWithJoin(paragraph)) paragraph.append(' ');
            if (endsWithJoin(paragraph)) paragraph.setLength(paragraph.length() - 1);
            paragraph.append(t);
        }

        private static boolean endsWithJoin(StringBuilder sb) { return sb.length() > 0 && sb.charAt(sb.length() - 1) == '\u0000'; }

        void flush() {
            if (paragraph.length() > 0) {
                out.append(paragraph.toString().replace("\u0000", "")).append('\n');
                paragraph.setLength(0);
            }
        }

        void blank() {
            flush();
            if (out.length() > 0 && !out.toString().endsWith("\n\n")) out.append('\n');
        }

        boolean request(String req) {
            if (req.isEmpty()) return false;
            int sp = 0;
            while (sp < req.length() && !Character.isWhitespace(req.charAt(sp))) sp++;
            String name = req.substring(0, sp);
            List<String> args = arguments(req.substring(sp));
            switch (name) {
                case "so" -> { return true; }
                case "TH" -> {
                    if (!args.isEmpty()) {
                        blank();
                        out.append(escapes(args.get(0))).append(args.size() > 1 ? "(" + escapes(args.get(1)) + ")" : "").append("\n\n");
                    }
                }
                case "SH", "SS" -> {
                    blank();
                    if (!args.isEmpty()) out.append(escapes(String.join(" ", args))).append('\n');
                    else tagNext = true;
                }
                case "PP", "LP", "P", "HP", "sp", "ns" -> blank();
                case "br" -> flush();
                case "TP", "TQ" -> { blank(); tagNext = true; }
                case "IP" -> {
                    blank();
                    if (!args.isEmpty() && !args.get(0).isBlank()) {
                        String tag = escapes(args.get(0));
                        if (!tag.isBlank()) paragraph.append(tag).append(' ');
                    }
                }
                case "B", "I", "SM", "SB" -> {
                    if (args.isEmpty()) return false; // applies to the next line, which is text anyway
                    addInline(escapes(String.join(" ", args)));
                }
                case "BR", "BI", "IB", "IR", "RB", "RI" -> addInline(escapes(String.join("", args)));
                case "nf", "EX" -> { flush(); noFill = true; }
                case "fi", "EE" -> { flush(); noFill = false; }
                case "TS" -> { blank(); inTable = true; tableFormat = true; }
                case "TE" -> { flush(); inTable = false; tableFormat = false; }
                case "UR", "MT" -> url = args.isEmpty() ? null : args.get(0);
                case "UE", "ME" -> {
                    if (url != null) addInline("<" + url + ">" + (args.isEmpty() ? "" : escapes(String.join("", args))));
                    url = null;
                }
                case "de", "de1", "am" -> skipDefinition = true;
                default -> { } // layout requests (RS, RE, in, ad, na, ft, ps, hy, nh, PD, ds, nr, if, ie, el, IX, ...): no text
            }
            return false;
        }

        void addInline(String text) {
            if (tagNext) {
                tagNext = false;
                flush();
                out.append(text.strip()).append('\n');
            } else if (noFill || inTable) {
                flush();
                out.append(text).append('\n');
            } else {
                addWords(text);
            }
        }
    }

    /** macro arguments: separated by blanks, {@code "double quoted"} groups, {@code ""} inside quotes is a quote */
    static List<String> arguments(String s) {
        List<String> args = new ArrayList<>();
        int i = 0;
        while (i < s.length()) {
            while (i < s.length() && (s.charAt(i) == ' ' || s.charAt(i) == '\t')) i++;
            if (i >= s.length()) break;
            StringBuilder a = new StringBuilder();
            if (s.charAt(i) == '"') {
                i++;
                while (i < s.length()) {
                    char c = s.charAt(i);
                    if (c == '"') {
                        if (i + 1 < s.length() && s.charAt(i + 1) == '"') { a.append('"'); i += 2; continue; }
                        i++;
                        break;
                    }
                    a.append(c);
                    i++;
                }
            } else {
                while (i < s.length() && s.charAt(i) != ' ' && s.charAt(i) != '\t') a.append(s.charAt(i++));
            }
            if (a.toString().startsWith("\\\"")) break; // comment
            args.add(a.toString());
        }
        return args;
    }

    /** replaces groff escapes by the characters they stand for and drops the ones that only change layout */
    static String escapes(String s) {
        StringBuilder out = new StringBuilder(s.length());
        int i = 0, n = s.length();
        while (i < n) {
            char c = s.charAt(i);
            if (c != '\\' || i + 1 >= n) { out.append(c); i++; continue; }
            char e = s.charAt(i + 1);
            i += 2;
            switch (e) {
                case '"' -> { return trimEnd(out); }                // comment to end of line
                case 'f', 'F' -> i = skipName(s, i);                 // font change
                case '(' -> { out.append(special(s.substring(i, Math.min(n, i + 2)))); i = Math.min(n, i + 2); }
                case '[' -> {
                    int end = s.indexOf(']', i);
                    if (end < 0) end = n;
                    out.append(special(s.substring(i, end)));
                    i = Math.min(n, end + 1);
                }
                case '*' -> {
                    int start = i;
                    i = skipName(s, i);
                    String name = s.substring(start, i).replace("(", "").replace("[", "").replace("]", "");
                    out.append(switch (name) { case "lq" -> "\u201c"; case "rq" -> "\u201d"; case "R" -> "\u00ae"; case "Tm" -> "\u2122"; default -> ""; });
                }
                case 'n', 'm', 'M', 'g', 'k', 'V', 'Y', '$' -> i = skipName(s, i);
                case 's' -> {
                    if (i < n && (s.charAt(i) == '+' || s.charAt(i) == '-')) i++;
                    if (i < n && (s.charAt(i) == '(' || s.charAt(i) == '[')) i = skipName(s, i);
                    else while (i < n && Character.isDigit(s.charAt(i))) i++;
                }
                case 'h', 'v', 'w', 'o', 'l', 'L', 'X', 'Z', 'b', 'D', 'x', 'N', 'R', 'A', 'B', 'C' -> {
                    if (i < n) {
                        char delim = s.charAt(i);
                        int end = s.indexOf(delim, i + 1);
                        i = end < 0 ? n : end + 1;
                    }
                }
                case '-' -> out.append('-');
                case 'e', '\\' -> out.append('\\');
                case ' ', '~', '0' -> out.append(' ');
                case '.' -> out.append('.');
                case '\'' -> out.append('\'');
                case '`' -> out.append('`');
                case 'c' -> out.append('\u0000');                     // join with the next line
                case '&', '|', '^', '%', ':', '/', ',', '!', '{', '}', 'a', 'd', 'u', 'r', 'p', 't', 'z' -> { }
                default -> out.append(e);
            }
        }
        return out.toString();
    }

    private static String trimEnd(StringBuilder sb) {
        int end = sb.length();
        while (end > 0 && sb.charAt(end - 1) == ' ') end--;
        return sb.substring(0, end);
    }

    /** skips an escape's name: one character, {@code (xx}, or {@code [name]} */
    private static int skipName(String s, int i) {
        if (i >= s.length()) return i;
        char c = s.charAt(i);
        if (c == '(') return Math.min(s.length(), i + 3);
        if (c == '[') {
            int end = s.indexOf(']', i);
            return end < 0 ? s.length() : end + 1;
        }
        return i + 1;
    }

    private static String special(String name) {
        String mapped = SPECIAL.get(name);
        if (mapped != null) return mapped;
        if (name.length() == 5 && name.charAt(0) == 'u') {
            try { return new String(Character.toChars(Integer.parseInt(name.substring(1), 16))); } catch (IllegalArgumentException e) { return ""; }
        }
        if (name.length() == 2 && name.charAt(1) == '\'' ) return String.valueOf(name.charAt(0)); // accented letter, keep the base
        return "";
    }
}
