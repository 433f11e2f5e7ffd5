package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/google/shlex"
	"github.com/relex/aini"
)

// readINI reads an INI inventory with aini, which parses sections, ranges
// and ports; its values stay the text written, which Ansible would read as
// Python literals (parseLiteral).
func readINI(path string, data []byte) (*ansibleInventory, error) {
	inv := newAnsible(path)
	data = iniCutHostComments(data)
	if err := inv.countINIHosts(data); err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	if err := iniUndefinedGroups(data); err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	ports, err := iniPorts(data)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %s", path, printable(err))
	}
	d, err := aini.Parse(bytes.NewReader(data))
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

// iniPortWritten matches a host pattern that ends in a port: ":digits"
// after the last range's "]", if any.
var iniPortWritten = regexp.MustCompile(`^(?:.*\])?[^\[\]]*:[0-9]+$`)

// iniHostLines yields each host line's number (from 1) and host pattern,
// its first word: the lines of [group] and [group:hosts] sections (and
// before any section) that are not blank or comments. A line shlex
// cannot split is left to aini, which reports it.
func iniHostLines(data []byte) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		hosts := true
		for i, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			if m := iniSection.FindStringSubmatch(line); m != nil {
				hosts = m[2] == "" || m[2] == "hosts"
				continue
			}
			if !hosts {
				continue
			}
			if tok, err := shlex.Split(line); err == nil && len(tok) > 0 && !yield(i+1, tok[0]) {
				return
			}
		}
	}
}

// iniPorts finds the ports host lines give (node1:2222). Ansible keeps
// the port of the line that first names a host (InventoryData.add_host
// creates it once): a host first listed without one has none from its
// lines, whatever later lines say. aini instead keeps the last line's
// port, 22 when that line gives none.
func iniPorts(data []byte) (map[string]int64, error) {
	ports := map[string]int64{}
	seen := map[string]bool{}
	for line, host := range iniHostLines(data) {
		if addr, ok := ipv6HostName(host); ok {
			return nil, fmt.Errorf("line %d: host %q is an IPv6 address, which routepush does not take for a host name (aini, which it reads INI with, would mangle it): use a name with ansible_host=%s", line, host, addr)
		}
		d, err := aini.ParseString("[g]\n" + host)
		if err != nil {
			return nil, err
		}
		// a range (node[1:3], node[01:02].example) is no port
		written := iniPortWritten.MatchString(host)
		for name, h := range d.Hosts {
			if seen[name] {
				continue
			}
			seen[name] = true
			if written {
				ports[name] = int64(h.Port)
			}
		}
	}
	return ports, nil
}

// iniCutHostComments cuts each host line where Ansible's shlex (posix,
// comments on) sees a comment, and keeps the backslashes it keeps (see
// cutShellComment): at a '#' outside quotes, in the middle of
// a word too (pod_cidr=10.1.0.0/24#x is pod_cidr=10.1.0.0/24, and the
// line ends there). aini only cuts at " #". Lines of [g:vars] and
// [g:children] sections are no shlex text and stay as they are.
func iniCutHostComments(data []byte) []byte {
	lines := strings.Split(string(data), "\n")
	hosts := true
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		if m := iniSection.FindStringSubmatch(t); m != nil {
			hosts = m[2] == "" || m[2] == "hosts"
			continue
		}
		if hosts {
			lines[i] = cutShellComment(line)
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// cutShellComment returns line up to the '#' Python's shlex.split(line,
// comments=True) starts a comment at, all of it if none (or if a quote is
// left open, which the parser reports). A backslash in double quotes
// escapes only '"' and '\\' for Python's shlex, where aini's drops it
// before any character: such a backslash is doubled, to be kept.
func cutShellComment(line string) string {
	var b strings.Builder
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == 0 && c == '\\' && i+1 < len(line):
			b.WriteByte(c)
			i++
			c = line[i]
		case quote == 0 && (c == '\'' || c == '"'):
			quote = c
		case quote == 0 && c == '#':
			return b.String()
		case quote == '"' && c == '\\' && i+1 < len(line):
			if line[i+1] != '"' && line[i+1] != '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
			i++
			c = line[i]
		case c == quote:
			quote = 0
		}
		b.WriteByte(c)
	}
	if quote != 0 {
		return line
	}
	return b.String()
}

// ipv6HostName reports whether a host pattern is an IPv6 address
// (fe80::1, [2001:db8::7]:2200), and the address.
func ipv6HostName(pattern string) (string, bool) {
	if m := bracketedHost.FindStringSubmatch(pattern); m != nil && isIPv6(m[1]) {
		return m[1], true
	}
	if isIPv6(pattern) {
		return pattern, true
	}
	// Outside its ranges (x[1:7:3]), a name has at most one ':', its port's.
	if strings.Count(rangeText.ReplaceAllString(pattern, ""), ":") > 1 {
		return pattern, true
	}
	return "", false
}

var (
	bracketedHost = regexp.MustCompile(`^\[([^\]]*)\](?::[0-9]+)?$`)
	rangeText     = regexp.MustCompile(`\[[^\]]*\]`)
)

func isIPv6(s string) bool {
	if i := strings.IndexByte(s, '%'); i >= 0 {
		s = s[:i]
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

// iniUndefinedGroups refuses what Ansible's ini plugin refuses and aini
// accepts: a [g:children] section naming a group no section defines, and
// a [g:vars] section for a group that has no [g] or [g:children]. aini
// would make an empty group of the first and give the second's variables
// to nothing, where Ansible reads no host of the file at all. It follows
// the plugin's own bookkeeping (pending declarations, resolved by a later
// section).
func iniUndefinedGroups(data []byte) error {
	type pending struct {
		line    int
		state   string
		parents []string
	}
	defined := map[string]bool{"all": true, "ungrouped": true}
	waiting := map[string]*pending{}
	var resolve func(g string)
	resolve = func(g string) {
		p := waiting[g]
		delete(waiting, g)
		for _, parent := range p.parents {
			if q := waiting[parent]; q != nil && q.state == "children" {
				resolve(parent)
			}
		}
	}
	group, state := "ungrouped", "hosts"
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if m := iniSection.FindStringSubmatch(line); m != nil {
			group, state = m[1], m[2]
			if state == "" {
				state = "hosts"
			}
			if !defined[group] {
				if state == "vars" && waiting[group] == nil {
					waiting[group] = &pending{line: i + 1, state: "vars"}
				}
				defined[group] = true
			}
			if p := waiting[group]; p != nil && state != "vars" {
				if p.state == "children" {
					resolve(group)
				} else {
					delete(waiting, group)
				}
			}
			continue
		}
		if state != "children" {
			continue
		}
		tok, err := shlex.Split(line)
		if err != nil || len(tok) == 0 {
			continue // aini reports it
		}
		child := tok[0]
		if defined[child] {
			continue
		}
		if p := waiting[child]; p != nil {
			p.parents = append(p.parents, group)
		} else {
			waiting[child] = &pending{line: i + 1, state: "children", parents: []string{group}}
		}
	}
	var errs []string
	for _, g := range slices.Sorted(maps.Keys(waiting)) {
		p := waiting[g]
		if p.state == "vars" {
			errs = append(errs, fmt.Sprintf("line %d: [%s:vars] is for a group no [%s] or [%s:children] section defines (Ansible refuses it too): define the group, or remove the section", p.line, g, g, g))
		} else {
			errs = append(errs, fmt.Sprintf("line %d: [%s:children] names the group %s, which no section defines (Ansible refuses it too): define it, or remove the line", p.line, p.parents[len(p.parents)-1], g))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
