package inventory

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/relex/aini"
	"go.yaml.in/yaml/v3"
)

// readYAML reads a YAML inventory as Ansible's yaml plugin does: top-level
// keys are groups, each with hosts, children and vars.
func readYAML(path string, data []byte) (*ansibleInventory, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	inv := newAnsible(path)
	d := newYAMLDecoder(path)
	root, err := d.resolve(&doc)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	groups, err := d.pairs(root, 0)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	for _, g := range groups {
		if err := inv.yamlGroup(d, g.key, g.value, "", 0); err != nil {
			return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
		}
	}
	return inv, nil
}

func (inv *ansibleInventory) yamlGroup(d *yamlDecoder, name string, n *yaml.Node, parent string, depth int) error {
	n, err := d.resolve(n)
	if err != nil {
		return fmt.Errorf("group %s: %w", name, err)
	}
	if depth > maxYAMLDepth {
		return fmt.Errorf("group %s: groups nested more than %d deep", name, maxYAMLDepth)
	}
	if n.Kind != yaml.MappingNode && !isNull(n) {
		// Ansible's yaml plugin fails on it ("not a known host nor
		// group") after the warning, and reads nothing of the file.
		return fmt.Errorf("group %s: not a valid group definition (want a mapping of hosts, children and vars)", name)
	}
	g := inv.group(name)
	if parent != "" && parent != "all" && name != "all" {
		g.parents = addTo(g.parents, parent)
	}
	if isNull(n) {
		return nil
	}
	sections, err := d.pairs(n, depth)
	if err != nil {
		return fmt.Errorf("group %s: %w", name, err)
	}
	for _, p := range sections {
		key := p.key
		sec, err := d.resolve(p.value)
		if err != nil {
			return fmt.Errorf("group %s: %s: %w", name, key, err)
		}
		if sec.Kind == yaml.ScalarNode && !isNull(sec) && (key == "hosts" || key == "children") {
			// Ansible takes a lone name for a mapping of one.
			sec = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{sec, {Kind: yaml.ScalarNode, Tag: "!!null"}}}
		}
		if isNull(sec) {
			continue
		}
		if sec.Kind != yaml.MappingNode {
			return fmt.Errorf("group %s: %s must be a mapping", name, key)
		}
		switch key {
		case "vars":
			v, err := d.value(sec, depth+1)
			if err != nil {
				return fmt.Errorf("group %s: vars: %w", name, err)
			}
			m := v.(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(m)) {
				g.setVar(k, val{m[k], "group " + name + "'s vars"}, inv)
			}
		case "children", "hosts":
			entries, err := d.pairs(sec, depth+1)
			if err != nil {
				return fmt.Errorf("group %s: %s: %w", name, key, err)
			}
			for _, e := range entries {
				if key == "children" {
					err = inv.yamlGroup(d, e.key, e.value, name, depth+1)
				} else {
					err = inv.yamlHost(d, e.key, e.value, name)
				}
				if err != nil {
					return err
				}
			}
		default:
			inv.warnings = append(inv.warnings, fmt.Sprintf("group %s: skipping unexpected key %q (only vars, children and hosts are valid)", name, key))
		}
	}
	return nil
}

// yamlHost adds the hosts of a pattern (node[1:3], node:2222) to a group.
// aini expands it, as it would on an INI line, once its ranges are known
// to name no more hosts than the inventory may have.
func (inv *ansibleInventory) yamlHost(d *yamlDecoder, pattern string, n *yaml.Node, group string) error {
	if pattern == "" || strings.ContainsAny(pattern, " \t\n\"'#=;\\") {
		return fmt.Errorf("group %s: %q is not a host name or pattern", group, pattern)
	}
	if addr, ok := ipv6HostName(pattern); ok {
		return fmt.Errorf("group %s: host %q is an IPv6 address, which routepush does not take for a host name (aini, which it reads host patterns with, would mangle it): use a name with ansible_host: %s", group, pattern, addr)
	}
	if err := inv.countHosts(pattern); err != nil {
		return fmt.Errorf("group %s: %w", group, err)
	}
	parsed, err := aini.ParseString("[g]\n" + pattern)
	if err != nil {
		return fmt.Errorf("group %s: host %q: %w", group, pattern, err)
	}
	n, err = d.resolve(n)
	if err != nil {
		return fmt.Errorf("group %s: host %s: %w", group, pattern, err)
	}
	var hv map[string]any
	if !isNull(n) {
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("group %s: host %s: its variables must be a mapping", group, pattern)
		}
		v, err := d.value(n, 1)
		if err != nil {
			return fmt.Errorf("group %s: host %s: %w", group, pattern, err)
		}
		hv = v.(map[string]any)
	}
	for _, ah := range parsed.Hosts {
		_, existed := inv.hosts[ah.Name]
		h := inv.host(ah.Name)
		h.groups = addTo(h.groups, group)
		// Ansible sets the port of the key that first names the host
		// (over ansible_port in the groups' vars); a later key's port
		// is lost. aini says 22 both for "n1:22" and for "n1", so the
		// text says which it was.
		if !existed && (ah.Port != 22 || strings.HasSuffix(pattern, ":22") && !strings.HasSuffix(ah.Name, ":22")) {
			h.vars["ansible_port"] = val{int64(ah.Port), "the host's key (" + pattern + ")"}
		}
		for k, v := range hv {
			h.vars[k] = val{v, "the host's entry in group " + group}
		}
	}
	return nil
}

// isNull reports whether a YAML node is empty or null.
func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// Limits on what one YAML file may make routepush build. A few hundred
// bytes of aliases (a "billion laughs") expand to billions of values, and
// an alias inside its own anchor (&a [*a]) never ends: both are refused
// rather than left to exhaust the memory or the stack of a process that is
// about to log in to every node as root.
const (
	maxYAMLValues = 1 << 20 // values built from one file, aliases expanded
	maxYAMLDepth  = 256     // nesting of mappings and sequences
)

// yamlDecoder turns one file's YAML nodes into values within the limits
// above, resolving aliases and merge keys (<<) as Ansible's loader does.
type yamlDecoder struct {
	path   string
	values int
	active map[*yaml.Node]bool // mappings and sequences being built: an alias back to one is a cycle
}

func newYAMLDecoder(path string) *yamlDecoder {
	return &yamlDecoder{path: path, active: map[*yaml.Node]bool{}}
}

// resolve follows aliases (and a document to its content), counting each
// node against the budget.
func (d *yamlDecoder) resolve(n *yaml.Node) (*yaml.Node, error) {
	for n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				return nil, fmt.Errorf("line %d: alias *%s names no anchor", n.Line, n.Value)
			}
			if d.active[n.Alias] {
				return nil, fmt.Errorf("line %d: alias *%s refers to a value that contains it (a cycle), which has no end to read (ansible-inventory fails on it too)", n.Line, n.Value)
			}
			n = n.Alias
			continue
		}
		n = n.Content[0]
	}
	d.values++
	if d.values > maxYAMLValues {
		return nil, fmt.Errorf("more than %d values once its aliases are expanded; refusing what could exhaust the memory (an alias bomb?)", maxYAMLValues)
	}
	return n, nil
}

// pairs returns a mapping's keys and values with its merge keys (<<: *a,
// <<: [*a, *b]) applied as YAML 1.1 and Ansible do: a key written in the
// mapping wins over a merged one, and of the merged mappings, an earlier
// one wins over a later. A key written twice keeps its last value, as
// PyYAML does.
func (d *yamlDecoder) pairs(n *yaml.Node, depth int) ([]yamlPair, error) {
	if depth > maxYAMLDepth {
		return nil, fmt.Errorf("line %d: nested more than %d deep", n.Line, maxYAMLDepth)
	}
	d.active[n] = true
	defer delete(d.active, n)
	var out []yamlPair
	at := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := d.resolve(n.Content[i])
		if err != nil {
			return nil, err
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		if j, ok := at[k.Value]; ok {
			out[j].value = n.Content[i+1]
			continue
		}
		at[k.Value] = len(out)
		out = append(out, yamlPair{k.Value, n.Content[i+1]})
	}
	for _, m := range merges {
		m, err := d.resolve(m)
		if err != nil {
			return nil, err
		}
		sources := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		}
		for _, src := range sources {
			src, err := d.resolve(src)
			if err != nil {
				return nil, err
			}
			if src.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("line %d: a merge key (<<) takes a mapping or a list of mappings", src.Line)
			}
			merged, err := d.pairs(src, depth+1)
			if err != nil {
				return nil, err
			}
			for _, p := range merged {
				if _, ok := at[p.key]; !ok {
					at[p.key] = len(out)
					out = append(out, p)
				}
			}
		}
	}
	return out, nil
}

type yamlPair struct {
	key   string
	value *yaml.Node
}

// value decodes a YAML value as Ansible's loader would, keeping what its
// tags say: !vault is a vaulted value, !unsafe a plain string.
func (d *yamlDecoder) value(n *yaml.Node, depth int) (any, error) {
	n, err := d.resolve(n)
	if err != nil {
		return nil, err
	}
	if depth > maxYAMLDepth {
		return nil, fmt.Errorf("line %d: nested more than %d deep", n.Line, maxYAMLDepth)
	}
	switch n.Kind {
	case yaml.MappingNode:
		ps, err := d.pairs(n, depth)
		if err != nil {
			return nil, err
		}
		d.active[n] = true
		defer delete(d.active, n)
		m := make(map[string]any, len(ps))
		for _, p := range ps {
			v, err := d.value(p.value, depth+1)
			if err != nil {
				return nil, err
			}
			m[p.key] = v
		}
		return m, nil
	case yaml.SequenceNode:
		d.active[n] = true
		defer delete(d.active, n)
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := d.value(c, depth+1)
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
			return unsafeText(n.Value), nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	case 0:
		return nil, nil
	}
	return nil, errors.New("unexpected YAML node")
}
