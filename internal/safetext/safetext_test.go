package safetext

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		"eth0":               "eth0",
		"":                   "",
		"a\x1b[2Jb":          `a\x1b[2Jb`,
		"\x1b]0;title\x07":   `\x1b]0;title\x07`,
		"x\ny":               `x\ny`,
		"tab\there\r":        `tab\there\r`,
		`back\slash`:         `back\\slash`,
		"\xff\xfe":           `\xff\xfe`,
		"caf\u00e9":          "caf\u00e9",
		"rlo\u202eevil":      `rlo\u202eevil`,
		"c1\u009b31m":        `c1\u009b31m`,
		"$(curl x|sh); `id`": "$(curl x|sh); `id`",
		"del\x7f":            `del\x7f`,
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Text("a\n\tb\x1bc\\x1b"); got != "a\n\tb\\x1bc\\x1b" {
		t.Errorf("Text: %q", got)
	}
	if got := Quote("a\"b\n"); got != `"a\"b\n"` {
		t.Errorf("Quote: %q", got)
	}
}

func FuzzLine(f *testing.F) {
	for _, s := range []string{"eth0", "\x1b[2J", "a\nb", "\xff", "\u202e", `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, out := range []string{Line(s), Text(s)} {
			if !utf8.ValidString(out) {
				t.Fatalf("invalid UTF-8 out of %q: %q", s, out)
			}
			for _, r := range out {
				if r == '\n' || r == '\t' {
					if out == Text(s) && strings.ContainsRune(s, r) {
						continue
					}
					t.Fatalf("%q: control %q in %q", s, r, out)
				}
				if !unicode.IsPrint(r) {
					t.Fatalf("%q: non-printable %q in %q", s, r, out)
				}
			}
		}
	})
}
