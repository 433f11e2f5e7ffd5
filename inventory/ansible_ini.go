package inventory

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/shlex"
	"github.com/relex/aini"
)

// readINI reads an INI inventory with aini, which parses sections, ranges
// and ports; its values stay the text written, which Ansible would read as
// Python literals (parseLiteral).
func readINI(path string, data []byte) (*ansibleInventory, error) {
	inv := newAnsible(path)
	if err := inv.countINIHosts(data); err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	d, err := aini.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	ports, err := iniPorts(data)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
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
