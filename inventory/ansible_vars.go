package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// vaulted is a value encrypted with ansible-vault, which routepush cannot
// read: it has no vault password, and wants none.
type vaulted struct{}

// readVarsFor reads the variables of one group or host from group_vars/ or
// host_vars/ as Ansible's host_group_vars plugin finds them: the first of
// NAME, NAME.yml, NAME.yaml and NAME.json that exists; a folder's files
// (recursively, hidden files and backups~ left out, only those without an
// extension or with one of those) merged in name order.
func readVarsFor(dir, name, entity string) (vars, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return vars{}, nil
	}
	var files []string
	for _, ext := range []string{"", ".yml", ".yaml", ".json"} {
		p := filepath.Join(dir, name+ext)
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if st.IsDir() {
			found, err := varsDir(p)
			if err != nil {
				return nil, err
			}
			files = found
		} else {
			files = []string{p}
		}
		break
	}
	out := vars{}
	for _, p := range files {
		m, err := readVarsFile(p, entity)
		if err != nil {
			return nil, err
		}
		rel := p
		if r, err := filepath.Rel(filepath.Dir(dir), p); err == nil {
			rel = r
		}
		for k, v := range m {
			out[k] = val{v, rel}
		}
	}
	return out, nil
}

func varsDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		p := filepath.Join(dir, n)
		ext := filepath.Ext(n)
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		switch {
		case st.IsDir() && ext == "":
			sub, err := varsDir(p)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case st.Mode().IsRegular() && (ext == "" || ext == ".yml" || ext == ".yaml" || ext == ".json"):
			out = append(out, p)
		}
	}
	return out, nil
}

// readVarsFile reads one YAML (or JSON) file of variables. A file
// encrypted whole with ansible-vault is refused: what it sets, routepush
// cannot know.
func readVarsFile(path, entity string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(strings.TrimSpace(string(data)), "$ANSIBLE_VAULT;") {
		return nil, fmt.Errorf("%s (variables of %s) is encrypted with ansible-vault; routepush cannot read it and so cannot know what it sets: move what routepush reads (ansible_* connection settings, pod CIDRs, internal IPs) out of it, or keep the vault in a file no inventory group names", path, entity)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	root := deref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: variables must be a mapping", path)
	}
	v, err := yamlValue(root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v.(map[string]any), nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return deref(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// yamlValue decodes a YAML value as Ansible's loader would, keeping what
// its tags say: !vault is a vaulted value, !unsafe a plain string.
func yamlValue(n *yaml.Node) (any, error) {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := yamlValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(c)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!vault", "!vault-encrypted":
			return vaulted{}, nil
		case "!unsafe":
			return n.Value, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, errors.New("unexpected YAML node")
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), x == float64(int64(x))
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// parseLiteral reads an INI inventory's value as Ansible does, with
// Python's ast.literal_eval: quoted strings, numbers, True/False/None,
// lists, tuples and dicts of them; anything else stays the text written.
func parseLiteral(s string) any {
	p := &literal{s: s}
	p.space()
	v, err := p.value()
	p.space()
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
