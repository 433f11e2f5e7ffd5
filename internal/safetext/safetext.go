// Package safetext is the one sanitiser between nodes and people: text that
// came from a node (stderr, lock holders, run ids, record contents, route
// fields, file contents) goes through it before it reaches a terminal, a
// log or a human string of the JSON report, so a node can neither send
// escape sequences to the operator's screen nor forge lines of output.
package safetext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line escapes s for one line of output: every control byte (newlines and
// tabs included), escape sequence, invalid UTF-8 byte and non-printable
// rune is written as a Go escape (\x1b, \n, \u202e), and a backslash as
// \\, so the result is printable and unambiguous.
func Line(s string) string { return escape(s, false) }

// Text is the last line of defence for multi-line text that may already
// hold escaped parts (an error wrapping Line's output): it keeps newlines,
// tabs and backslashes, and escapes every other control byte, escape
// sequence and non-printable rune as Line does.
func Text(s string) string { return escape(s, true) }

// Quote is Line in double quotes, for a value inside a message.
func Quote(s string) string { return `"` + strings.ReplaceAll(Line(s), `"`, `\"`) + `"` }

// Clean reports whether s needs no escaping for one line.
func Clean(s string) bool { return clean(s, false) }

func clean(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\\' {
			if multiline && (c == '\n' || c == '\t' || c == '\\') {
				continue
			}
			return false
		}
	}
	return true
}

func escape(s string, multiline bool) string {
	if clean(s, multiline) {
		return s // the common case: printable ASCII
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r == '\\' && !multiline:
			b.WriteString(`\\`)
		case multiline && (r == '\n' || r == '\t' || r == '\\'):
			b.WriteRune(r)
		case r < utf8.RuneSelf && (r < 0x20 || r == 0x7f):
			switch r {
			case '\n':
				b.WriteString(`\n`)
			case '\t':
				b.WriteString(`\t`)
			case '\r':
				b.WriteString(`\r`)
			default:
				b.WriteString(`\x`)
				b.WriteString(hex2(byte(r)))
			}
		case r >= utf8.RuneSelf && !unicode.IsPrint(r):
			// C1 controls (U+009B is a CSI on some terminals), bidi
			// overrides, zero-width and other format characters.
			q := strconv.QuoteRuneToASCII(r) // '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}
