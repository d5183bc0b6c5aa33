package dive.data;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class ManPageTest {
    @Test void rendersStructureFontsAndEscapes() {
        String groff = String.join("\n",
                ".\\\" Copyright notice, a comment",
                ".TH FOO 2 2023-01-01 \"Linux man-pages 6.03\"",
                ".SH NAME",
                "foo \\- do a \\fBthing\\fP",
                ".SH SYNOPSIS",
                ".nf",
                ".B #include <foo.h>",
                ".PP",
                ".BI \"int foo(int \" fd );",
                ".fi",
                ".SH DESCRIPTION",
                ".BR foo ()",
                "reads",
                ".I fd",
                "and returns \\(em quickly \\(lqalways\\(rq.",
                ".TP",
                ".B EBADF",
                "Bad \\fIfd\\fR.\\\" trailing comment",
                ".SH SEE ALSO",
                ".BR bar (2),",
                ".BR baz (3)",
                "");
        String expected = String.join("\n",
                "FOO(2)",
                "",
                "NAME",
                "foo - do a thing",
                "",
                "SYNOPSIS",
                "#include <foo.h>",
                "",
                "int foo(int fd);",
                "",
                "DESCRIPTION",
                "foo() reads fd and returns \u2014 quickly \u201calways\u201d.",
                "",
                "EBADF",
                "Bad fd.",
                "",
                "SEE ALSO",
                "bar(2), baz(3)",
                "");
        assertEquals(expected, ManPage.toText(groff));
    }

    @Test void linkPageIsEmpty() {
        assertEquals("", ManPage.toText(".so man3/printf.3\n"));
    }

    @Test void argumentsHonourQuotes() {
        assertEquals(java.util.List.of("a b", "c", "say \"hi\""), ManPage.arguments(" \"a b\" c \"say \"\"hi\"\"\""));
    }
}
