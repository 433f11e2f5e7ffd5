package inventory

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/shlex"
	"github.com/relex/aini"
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
// which. It refuses what Ansible would run rather than read: an
// executable (a dynamic inventory script) and a plugin's configuration.
func detect(path string) (format, []byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	if st.IsDir() {
		return 0, nil, fmt.Errorf("inventory %s: is a directory; give one file (hosts.yaml, or an Ansible INI or YAML inventory)", path)
	}
	data, err := os.ReadFile(path)
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
	_, nodes := keys["nodes"]
	_, defaults := keys["defaults"]
	switch {
	case nodes || defaults:
		return formatRoutepush, data, nil
	case st.Mode()&0o111 != 0:
		return 0, nil, fmt.Errorf("inventory %s: is executable, so Ansible would run it as a dynamic inventory script; routepush runs nothing to find its nodes: write its output to a file with `ansible-inventory -i %s --list --yaml > inventory.yml` and give that", path, path)
	case keys["plugin"] != nil:
		return 0, nil, fmt.Errorf("inventory %s: configures the inventory plugin %q, which routepush does not run: write what it finds to a file with `ansible-inventory -i %s --list --yaml > inventory.yml` and give that", path, keys["plugin"].Value, path)
	case isMap && ansibleShaped(keys):
		return formatAnsibleYAML, data, nil
	case ext == ".yaml" || ext == ".yml" || ext == ".json" || ext == ".toml":
		return formatRoutepush, data, nil
	}
	return formatAnsibleINI, data, nil
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

// ansibleInventory is an Ansible inventory as written: groups and hosts
// with the variables each sets, before Ansible's precedence merges them.
type ansibleInventory struct {
	path     string
	groups   map[string]*ansibleGroup
	hosts    map[string]*ansibleHost
	warnings []string
}

type ansibleGroup struct {
	name     string
	parents  []string
	vars     vars // in the inventory
	files    vars // from group_vars/
	priority int  // ansible_group_priority
	depth    int  // 0 for all, else one more than its deepest parent
}

type ansibleHost struct {
	name   string
	groups []string // those it is listed in
	vars   vars
	files  vars // from host_vars/
}

// vars are variables with where each was set, for messages.
type vars map[string]val

type val struct {
	v    any
	from string // "[workers:vars]", "group_vars/all.yml", ...
}

func newAnsible(path string) *ansibleInventory {
	return &ansibleInventory{path: path, groups: map[string]*ansibleGroup{}, hosts: map[string]*ansibleHost{}}
}

func (inv *ansibleInventory) group(name string) *ansibleGroup {
	g := inv.groups[name]
	if g == nil {
		g = &ansibleGroup{name: name, vars: vars{}, files: vars{}, priority: 1}
		inv.groups[name] = g
	}
	return g
}

func (inv *ansibleInventory) host(name string) *ansibleHost {
	h := inv.hosts[name]
	if h == nil {
		h = &ansibleHost{name: name, vars: vars{}, files: vars{}}
		inv.hosts[name] = h
	}
	return h
}

func addTo(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// readINI reads an INI inventory with aini, which parses sections, ranges
// and ports; its values stay the text written, which Ansible would read as
// Python literals (parseLiteral).
func readINI(path string, data []byte) (*ansibleInventory, error) {
	d, err := aini.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	ports, err := iniPorts(data)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	inv := newAnsible(path)
	for _, ag := range d.Groups {
		g := inv.group(ag.Name)
		for p := range ag.DirectParents {
			if p != "all" {
				g.parents = addTo(g.parents, p)
			}
		}
		from := "[" + ag.Name + ":vars]"
		for k, s := range ag.InventoryVars {
			g.setVar(k, val{parseLiteral(s), from}, inv)
		}
	}
	for _, ah := range d.Hosts {
		h := inv.host(ah.Name)
		for g := range ah.DirectGroups {
			h.groups = addTo(h.groups, g)
		}
		if p, ok := ports[ah.Name]; ok {
			h.vars["ansible_port"] = val{p, "the host's line (" + ah.Name + ":port)"}
		}
		for k, s := range ah.InventoryVars {
			h.vars[k] = val{parseLiteral(s), "the host's line"}
		}
	}
	return inv, nil
}

// iniSection is a section header, as Ansible (and aini) match it.
var iniSection = regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:\#.*)?$`)

// iniPorts finds the ports host lines give (node1:2222). aini keeps the
// port of a host's last line, 22 when that line gives none; Ansible keeps
// the last port given, so a host listed again in another group keeps it.
func iniPorts(data []byte) (map[string]int64, error) {
	ports := map[string]int64{}
	hosts := true
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if m := iniSection.FindStringSubmatch(line); m != nil {
			hosts = m[2] == "" || m[2] == "hosts"
			continue
		}
		tok, err := shlex.Split(line)
		if !hosts || err != nil || len(tok) == 0 || !strings.Contains(tok[0], ":") {
			continue
		}
		if strings.HasSuffix(tok[0], "]") {
			continue // a range (node[1:3]) and no port
		}
		d, err := aini.ParseString("[g]\n" + tok[0])
		if err != nil {
			return nil, err
		}
		for name, h := range d.Hosts {
			ports[name] = int64(h.Port)
		}
	}
	return ports, nil
}

// setVar sets a group's inventory variable; ansible_group_priority is the
// group's place among its siblings, as in Ansible, not a variable.
func (g *ansibleGroup) setVar(k string, v val, inv *ansibleInventory) {
	if k != "ansible_group_priority" {
		g.vars[k] = v
		return
	}
	n, ok := asInt(v.v)
	if !ok {
		inv.warnings = append(inv.warnings, fmt.Sprintf("group %s: ansible_group_priority %v is not a number; ignored", g.name, v.v))
		return
	}
	g.priority = int(n)
}

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

// finish makes the inventory what Ansible's would be: every group under
// all, hosts in no group in ungrouped, depths set, and group_vars/ and
// host_vars/ beside the file read.
func (inv *ansibleInventory) finish() error {
	inv.group("all")
	for _, h := range inv.hosts {
		if len(h.groups) == 0 {
			h.groups = []string{"ungrouped"}
		}
		if len(h.groups) > 1 {
			h.groups = slices.DeleteFunc(h.groups, func(g string) bool { return g == "ungrouped" || g == "all" })
		}
		for _, g := range h.groups {
			inv.group(g)
		}
	}
	inv.group("ungrouped")
	for _, g := range inv.groups {
		for _, p := range g.parents {
			inv.group(p)
		}
	}
	for _, g := range inv.groups {
		if _, err := inv.depth(g, map[string]bool{}); err != nil {
			return fmt.Errorf("inventory %s: %w", inv.path, err)
		}
	}
	dir := filepath.Dir(inv.path)
	for _, g := range inv.groups {
		f, err := readVarsFor(filepath.Join(dir, "group_vars"), g.name, "group "+g.name)
		if err != nil {
			return fmt.Errorf("inventory %s: %w", inv.path, err)
		}
		g.files = f
	}
	for _, h := range inv.hosts {
		f, err := readVarsFor(filepath.Join(dir, "host_vars"), h.name, "host "+h.name)
		if err != nil {
			return fmt.Errorf("inventory %s: %w", inv.path, err)
		}
		h.files = f
	}
	return nil
}

func (inv *ansibleInventory) depth(g *ansibleGroup, visiting map[string]bool) (int, error) {
	if g.name == "all" {
		return 0, nil
	}
	if visiting[g.name] {
		return 0, fmt.Errorf("group %s is its own ancestor", g.name)
	}
	visiting[g.name] = true
	defer delete(visiting, g.name)
	d := 1
	for _, p := range g.parents {
		pd, err := inv.depth(inv.groups[p], visiting)
		if err != nil {
			return 0, err
		}
		d = max(d, pd+1)
	}
	g.depth = d
	return d, nil
}

// ancestors are the groups a host is in, directly or through children,
// but all, in Ansible's order of precedence: by depth, priority and name.
func (inv *ansibleInventory) ancestors(h *ansibleHost) []*ansibleGroup {
	seen := map[string]bool{}
	var out []*ansibleGroup
	var walk func(name string)
	walk = func(name string) {
		if seen[name] || name == "all" {
			return
		}
		seen[name] = true
		g := inv.groups[name]
		out = append(out, g)
		for _, p := range g.parents {
			walk(p)
		}
	}
	for _, g := range h.groups {
		walk(g)
	}
	slices.SortFunc(out, func(a, b *ansibleGroup) int {
		return cmp.Or(cmp.Compare(a.depth, b.depth), cmp.Compare(a.priority, b.priority), strings.Compare(a.name, b.name))
	})
	return out
}

// hostVars are a host's variables as Ansible merges them (its default
// VARIABLE_PRECEDENCE): all's inventory vars, then its groups', then
// group_vars/all, then its groups' group_vars, then its own inventory
// vars, then host_vars. A later value replaces an earlier one whole.
func (inv *ansibleInventory) hostVars(h *ansibleHost) vars {
	out := vars{}
	merge := func(v vars) {
		for k, x := range v {
			out[k] = x
		}
	}
	groups := inv.ancestors(h)
	all := inv.groups["all"]
	merge(all.vars)
	for _, g := range groups {
		merge(g.vars)
	}
	merge(all.files)
	for _, g := range groups {
		merge(g.files)
	}
	merge(h.vars)
	merge(h.files)
	return out
}

// groupsOf lists every group with all its hosts, and the hosts in name
// order.
func (inv *ansibleInventory) groupsOf() (Groups, []string) {
	names := make([]string, 0, len(inv.hosts))
	for name := range inv.hosts {
		names = append(names, name)
	}
	slices.Sort(names)
	gs := Groups{}
	for name := range inv.groups {
		gs[name] = nil
	}
	for _, name := range names {
		gs["all"] = append(gs["all"], name)
		for _, g := range inv.ancestors(inv.hosts[name]) {
			gs[g.name] = append(gs[g.name], name)
		}
	}
	return gs, names
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
	if err := inv.finish(); err != nil {
		return nil, err
	}
	return inv, nil
}
