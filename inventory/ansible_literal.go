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
	case c == '\'' || c == '"':
		return p.str()
	case c == '[' || c == '(':
		return p.list(map[byte]byte{'[': ']', '(': ')'}[c])
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
	if digits == "" || digits[0] < '0' || digits[0] > '9' || (len(digits) > 1 && digits[0] == '0' && digits[1] != '.') {
		return nil, errNotLiteral
	}
	clean := strings.ReplaceAll(word, "_", "")
	if n, err := strconv.ParseInt(clean, 10, 64); err == nil {
		return n, nil
	}
	if f, err := strconv.ParseFloat(clean, 64); err == nil && !strings.ContainsAny(clean, "xXpP") {
		return f, nil
	}
	return nil, errNotLiteral
}

func (p *literal) str() (any, error) {
	q := p.s[p.i]
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
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
	return nil, errNotLiteral
}

func (p *literal) list(end byte) (any, error) {
	p.i++
	out := []any{}
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
