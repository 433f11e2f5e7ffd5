package inventory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/relex/aini"
	"go.yaml.in/yaml/v3"
)

// readYAML reads a YAML inventory as Ansible's yaml plugin does: top-level
// keys are groups, each with hosts, children and vars.
func readYAML(path string, data []byte) (*ansibleInventory, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	inv := newAnsible(path)
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if err := inv.yamlGroup(root.Content[i].Value, root.Content[i+1], ""); err != nil {
			return nil, fmt.Errorf("inventory %s: %w", path, err)
		}
	}
	return inv, nil
}

func (inv *ansibleInventory) yamlGroup(name string, n *yaml.Node, parent string) error {
	n = deref(n)
	if n.Kind != yaml.MappingNode && !isNull(n) {
		inv.warnings = append(inv.warnings, fmt.Sprintf("skipping %q: not a valid group definition", name))
		return nil
	}
	g := inv.group(name)
	if parent != "" && parent != "all" && name != "all" {
		g.parents = addTo(g.parents, parent)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, sec := n.Content[i].Value, deref(n.Content[i+1])
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
			for j := 0; j+1 < len(sec.Content); j += 2 {
				v, err := yamlValue(sec.Content[j+1])
				if err != nil {
					return fmt.Errorf("group %s: vars %s: %w", name, sec.Content[j].Value, err)
				}
				g.setVar(sec.Content[j].Value, val{v, "group " + name + "'s vars"}, inv)
			}
		case "children":
			for j := 0; j+1 < len(sec.Content); j += 2 {
				if err := inv.yamlGroup(sec.Content[j].Value, sec.Content[j+1], name); err != nil {
					return err
				}
			}
		case "hosts":
			for j := 0; j+1 < len(sec.Content); j += 2 {
				if err := inv.yamlHost(sec.Content[j].Value, sec.Content[j+1], name); err != nil {
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
// aini expands it, as it would on an INI line.
func (inv *ansibleInventory) yamlHost(pattern string, n *yaml.Node, group string) error {
	if pattern == "" || strings.ContainsAny(pattern, " \t\n\"'#=;\\") {
		return fmt.Errorf("group %s: %q is not a host name or pattern", group, pattern)
	}
	d, err := aini.ParseString("[g]\n" + pattern)
	if err != nil {
		return fmt.Errorf("group %s: host %q: %w", group, pattern, err)
	}
	n = deref(n)
	var hv map[string]any
	if !isNull(n) {
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("group %s: host %s: its variables must be a mapping", group, pattern)
		}
		v, err := yamlValue(n)
		if err != nil {
			return fmt.Errorf("group %s: host %s: %w", group, pattern, err)
		}
		hv = v.(map[string]any)
	}
	for _, ah := range d.Hosts {
		h := inv.host(ah.Name)
		h.groups = addTo(h.groups, group)
		if ah.Port != 22 {
			h.vars["ansible_port"] = val{int64(ah.Port), "the host's key (" + pattern + ")"}
		}
		for k, v := range hv {
			h.vars[k] = val{v, "the host's entry in group " + group}
		}
	}
	return nil
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
