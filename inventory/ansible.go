package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options say how to read an inventory file. The zero value reads it with
// the defaults.
type Options struct {
	// PodCIDRVars are the host variables of an Ansible inventory that hold
	// a host's pod CIDR(s): a string or a list. nil: pod_cidr, pod_cidrs.
	PodCIDRVars []string
	// InternalIPVars are those that hold its internal IP(s). nil:
	// internal_ip, internal_ips.
	InternalIPVars []string
}

// Default host variables of an Ansible inventory.
var (
	DefaultPodCIDRVars    = []string{"pod_cidr", "pod_cidrs"}
	DefaultInternalIPVars = []string{"internal_ip", "internal_ips"}
)

func (o Options) podVars() []string {
	if len(o.PodCIDRVars) == 0 {
		return DefaultPodCIDRVars
	}
	return o.PodCIDRVars
}

func (o Options) ipVars() []string {
	if len(o.InternalIPVars) == 0 {
		return DefaultInternalIPVars
	}
	return o.InternalIPVars
}

// Groups are an Ansible inventory's groups, each with every host in it or
// in a group below it ("all" and "ungrouped" included): what --limit
// patterns match against.
type Groups map[string][]string

// format is what an inventory file is written in.
type format int

const (
	formatRoutepush   format = iota // hosts.yaml: defaults and nodes
	formatAnsibleINI                // Ansible's INI inventory
	formatAnsibleYAML               // Ansible's YAML inventory: groups with hosts, children, vars
)

// detect tells routepush's own hosts.yaml from Ansible's inventories by
// their content, so that --inventory takes either without a flag saying
// which. It refuses what Ansible would run rather than read: a script (a
// dynamic inventory) and a plugin's configuration.
func detect(path string) (format, []byte, error) {
	data, st, err := readInventory(path)
	if errors.Is(err, errIsDir) {
		return 0, nil, fmt.Errorf("inventory %s: is a directory; give one file (hosts.yaml, or an Ansible INI or YAML inventory)", path)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	var doc yaml.Node
	isMap := yaml.Unmarshal(data, &doc) == nil && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode
	keys := map[string]*yaml.Node{}
	if isMap {
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			keys[m.Content[i].Value] = m.Content[i+1]
		}
	}
	switch {
	case isMap && routepushShaped(keys):
		return formatRoutepush, data, nil
	case strings.HasPrefix(string(data), "#!") || st.Mode()&0o111 != 0 && bytes.IndexByte(data, 0) >= 0:
		// Ansible runs such a file (or an executable program); one that
		// is merely executable (a mount that marks every file so) it
		// reads when running fails.
		return 0, nil, fmt.Errorf("inventory %s: is a script or program, which Ansible would run as a dynamic inventory; routepush runs nothing to find its nodes: write its output to a file with `ansible-inventory -i %s --list --yaml > inventory.yml` and give that", path, path)
	case keys["plugin"] != nil:
		return 0, nil, fmt.Errorf("inventory %s: configures the inventory plugin %q, which routepush does not run: write what it finds to a file with `ansible-inventory -i %s --list --yaml > inventory.yml` and give that", path, keys["plugin"].Value, path)
	case isMap && ansibleShaped(keys):
		return formatAnsibleYAML, data, nil
	case ext == ".yaml" || ext == ".yml" || ext == ".json" || ext == ".toml":
		return formatRoutepush, data, nil
	}
	return formatAnsibleINI, data, nil
}

// routepushShaped reports whether a YAML file's top-level keys are
// hosts.yaml's: nodes a list, or defaults a mapping of hosts.yaml's
// settings. An Ansible group may be called nodes or defaults too; when
// neither is clear, a file that is no Ansible inventory is hosts.yaml's,
// to be told what is wrong with it.
func routepushShaped(keys map[string]*yaml.Node) bool {
	nodes, defaults := keys["nodes"], keys["defaults"]
	if nodes == nil && defaults == nil {
		return false
	}
	if nodes != nil && nodes.Kind == yaml.SequenceNode {
		return true
	}
	if defaults != nil && defaults.Kind == yaml.MappingNode &&
		mapHasKey(defaults, "user", "port", "identity_file", "jump", "become", "sftp_server") &&
		!mapHasKey(defaults, "hosts", "children", "vars") {
		return true
	}
	return !ansibleShaped(keys)
}

// mapHasKey reports whether a YAML mapping has one of the keys.
func mapHasKey(m *yaml.Node, keys ...string) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if slices.Contains(keys, m.Content[i].Value) {
			return true
		}
	}
	return false
}

// ansibleShaped reports whether a YAML file's top-level keys are Ansible
// groups: "all", or a mapping with hosts, children or vars.
func ansibleShaped(keys map[string]*yaml.Node) bool {
	if _, ok := keys["all"]; ok {
		return true
	}
	for _, v := range keys {
		if v.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i < len(v.Content); i += 2 {
			switch v.Content[i].Value {
			case "hosts", "children", "vars":
				return true
			}
		}
	}
	return false
}

// readAnsible reads an Ansible inventory file of either format with the
// group_vars/ and host_vars/ beside it.
func readAnsible(path string, f format, data []byte) (*ansibleInventory, error) {
	var inv *ansibleInventory
	var err error
	if f == formatAnsibleYAML {
		inv, err = readYAML(path, data)
	} else {
		inv, err = readINI(path, data)
	}
	if err != nil {
		return nil, err
	}
	if len(inv.hosts) == 0 {
		return nil, errors.New("inventory " + path + ": no hosts")
	}
	if len(inv.hosts) > maxAnsibleHosts {
		return nil, fmt.Errorf("inventory %s: %d hosts, more than the %d routepush reads from one inventory", path, len(inv.hosts), maxAnsibleHosts)
	}
	if err := inv.finish(); err != nil {
		return nil, err
	}
	return inv, nil
}
