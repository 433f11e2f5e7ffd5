package inventory

import (
	"cmp"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// ansibleInventory is an Ansible inventory as written: groups and hosts
// with the variables each sets, before Ansible's precedence merges them.
type ansibleInventory struct {
	path     string
	groups   map[string]*ansibleGroup
	hosts    map[string]*ansibleHost
	warnings []string
	// hostCount is how many hosts its patterns name, ranges expanded.
	hostCount int64
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

// setVar sets a group's inventory variable; ansible_group_priority is the
// group's place among its siblings, as in Ansible, not a variable.
func (g *ansibleGroup) setVar(k string, v val, inv *ansibleInventory) {
	if k != "ansible_group_priority" {
		g.vars[k] = v
		return
	}
	n, ok := asInt(v.v)
	if !ok {
		inv.warnings = append(inv.warnings, fmt.Sprintf("group %s: ansible_group_priority %q is not a number; ignored", g.name, fmt.Sprint(v.v)))
		return
	}
	g.priority = int(n)
}

// finish makes the inventory what Ansible's would be: every group under
// all, hosts in no group in ungrouped, depths set, and group_vars/ and
// host_vars/ beside the file read.
func (inv *ansibleInventory) finish() error {
	inv.group("all")
	for _, h := range inv.hosts {
		// A host listed under all (YAML all: hosts:, INI [all]) is in
		// no other group: Ansible puts it in ungrouped, whose
		// group_vars and --limit apply to it.
		h.groups = slices.DeleteFunc(h.groups, func(g string) bool { return g == "all" })
		if len(h.groups) == 0 {
			h.groups = []string{"ungrouped"}
		}
		if len(h.groups) > 1 {
			h.groups = slices.DeleteFunc(h.groups, func(g string) bool { return g == "ungrouped" })
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
	// Names become paths under group_vars/ and host_vars/ (and appear in
	// messages): check them all before any is looked up.
	for _, name := range slices.Sorted(maps.Keys(inv.groups)) {
		if err := safeEntityName(name); err != nil {
			return fmt.Errorf("inventory %s: group %w", inv.path, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(inv.hosts)) {
		if err := safeEntityName(name); err != nil {
			return fmt.Errorf("inventory %s: host %w", inv.path, err)
		}
	}
	dir := filepath.Dir(inv.path)
	for _, g := range inv.groups {
		f, err := readVarsFor(filepath.Join(dir, "group_vars"), g.name, "group "+g.name)
		if err != nil {
			return fmt.Errorf("inventory %s: %s", inv.path, printable(err))
		}
		g.files = f
	}
	for _, h := range inv.hosts {
		f, err := readVarsFor(filepath.Join(dir, "host_vars"), h.name, "host "+h.name)
		if err != nil {
			return fmt.Errorf("inventory %s: %s", inv.path, printable(err))
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
