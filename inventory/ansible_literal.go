package inventory

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parseLiteral reads an INI inventory's value as Ansible does, with
// Python's ast.literal_eval: quoted strings, numbers, True/False/None,
// lists, tuples and dicts of them; anything else stays the text written.
func parseLiteral(s string) any {
	p := &literal{s: s}
	p.space()
	v, err := p.value()
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '#' {
		p.i = len(p.s) // a comment, to Python's tokenizer
	}
	if err != nil || p.i != len(p.s) {
		return s
	}
	return v
}

type literal struct {
	s string
	i int
}

var errNotLiteral = errors.New("not a literal")

func (p *literal) space() {
	for p.i < len(p.s) && strings.ContainsRune(" \t", rune(p.s[p.i])) {
		p.i++
	}
}

func (p *literal) value() (any, error) {
	if p.i >= len(p.s) {
		return nil, errNotLiteral
	}
	switch c := p.s[p.i]; {
	case c == '\'' || c == '"' || p.strPrefix() > 0:
		return p.strs()
	case c == '[':
		return p.list(']')
	case c == '(':
		return p.paren()
	case c == '{':
		return p.dict()
	}
	j := p.i
	for j < len(p.s) && !strings.ContainsRune(" \t,:]})", rune(p.s[j])) {
		j++
	}
	word := p.s[p.i:j]
	p.i = j
	switch word {
	case "True":
		return true, nil
	case "False":
		return false, nil
	case "None":
		return nil, nil
	}
	digits := strings.TrimLeft(word, "+-")
	if digits == "" || !(digits[0] >= '0' && digits[0] <= '9' || digits[0] == '.' && len(digits) > 1 && digits[1] >= '0' && digits[1] <= '9') {
		return nil, errNotLiteral
	}
	if strings.HasSuffix(word, "_") || strings.Contains(word, "__") || strings.Contains(word, "_.") || strings.Contains(word, "._") {
		return nil, errNotLiteral // Python's '_' only stands between digits
	}
	if hex := len(digits) > 1 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'); !hex {
		for i := 1; i < len(digits); i++ {
			if digits[i] == '_' && !(isDigit(digits[i-1]) && i+1 < len(digits) && isDigit(digits[i+1])) && !(i == 2 && digits[0] == '0' && strings.IndexByte("oObB", digits[1]) >= 0) {
				return nil, errNotLiteral // 1_e3, 1e_3: '_' next to no digit
			}
		}
	}
	clean := strings.ReplaceAll(word, "_", "")
	if len(digits) > 1 && digits[0] == '0' {
		switch digits[1] {
		case 'x', 'X', 'o', 'O', 'b', 'B': // 0x10, 0o17, 0b101
			if n, err := strconv.ParseInt(clean, 0, 64); err == nil {
				return n, nil
			}
			return nil, errNotLiteral
		case '.', 'e', 'E':
		default:
			if strings.ContainsAny(digits, ".eE") {
				break // 00.5, 0_0.5, 00e1: floats, leading zeros and all
			}
			if strings.Trim(digits, "0_") != "" {
				return nil, errNotLiteral // 017: no number to Python 3
			}
			return int64(0), nil
		}
	}
	if n, err := strconv.ParseInt(clean, 10, 64); err == nil {
		return n, nil
	}
	if f, err := strconv.ParseFloat(clean, 64); err == nil && !strings.ContainsAny(clean, "xXpP") {
		return f, nil
	}
	return nil, errNotLiteral
}

// strPrefix is the length of a string literal's prefix (b"x", u"x",
// r"x", rb"x"), 0 if none.
func (p *literal) strPrefix() int {
	j := p.i
	for j < len(p.s) && j-p.i < 2 && strings.ContainsRune("bBuUrR", rune(p.s[j])) {
		j++
	}
	if j > p.i && j < len(p.s) && (p.s[j] == '\'' || p.s[j] == '"') {
		return j - p.i
	}
	return 0
}

// strs reads adjacent string literals, which Python joins ("a" "b").
// Bytes (b"x") Ansible shows as text.
func (p *literal) strs() (any, error) {
	var b strings.Builder
	for {
		n := p.strPrefix()
		raw := strings.ContainsAny(p.s[p.i:p.i+n], "rR")
		p.i += n
		v, err := p.str(raw)
		if err != nil {
			return nil, err
		}
		b.WriteString(v)
		j := p.i
		p.space()
		if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"' && p.strPrefix() == 0) {
			p.i = j
			return b.String(), nil
		}
	}
}

// paren reads a tuple, which Ansible shows as a list, or a parenthesised
// value: (1) is 1, (1,) a tuple.
func (p *literal) paren() (any, error) {
	p.i++
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ')' {
		p.i++
		return []any{}, nil
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ')' {
		p.i++
		return v, nil
	}
	if p.i < len(p.s) && p.s[p.i] == ',' {
		// A tuple: read on from here with the value already read, never
		// again from the '(' (nested tuples would be read 2^depth times).
		p.i++
		return p.items(')', []any{v})
	}
	return nil, errNotLiteral
}

func (p *literal) str(raw bool) (string, error) {
	q := p.s[p.i]
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\' && raw && p.i+1 < len(p.s):
			b.WriteByte(c)
			p.i++
			b.WriteByte(p.s[p.i])
		case c == '\\' && p.i+1 < len(p.s):
			p.i++
			switch e := p.s[p.i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\\', '\'', '"':
				b.WriteByte(e)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", errNotLiteral
}

func (p *literal) list(end byte) (any, error) {
	p.i++
	return p.items(end, []any{})
}

// items reads a list's items after those in out, up to and past end.
func (p *literal) items(end byte, out []any) (any, error) {
	for {
		p.space()
		if p.i < len(p.s) && p.s[p.i] == end {
			p.i++
			return out, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.s) && p.s[p.i] == end {
			p.i++
			return out, nil
		}
		return nil, errNotLiteral
	}
}

func (p *literal) dict() (any, error) {
	p.i++
	out := map[string]any{}
	for {
		p.space()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return out, nil
		}
		k, err := p.value()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, errNotLiteral
		}
		p.i++
		p.space()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out[fmt.Sprint(k)] = v
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return out, nil
		}
		return nil, errNotLiteral
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
