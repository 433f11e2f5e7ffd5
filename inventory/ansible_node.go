package inventory

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// refusedVars are connection settings routepush cannot honour: it logs in
// with keys and becomes root with sudo -n, never with a password.
var refusedVars = map[string]string{
	"ansible_password":          "a login password",
	"ansible_ssh_pass":          "a login password",
	"ansible_ssh_password":      "a login password",
	"ansible_become_password":   "a sudo password",
	"ansible_become_pass":       "a sudo password",
	"ansible_sudo_pass":         "a sudo password",
	"ansible_sudo_password":     "a sudo password",
	"ansible_paramiko_pass":     "a login password",
	"ansible_paramiko_password": "a login password",
}

// paramikoVars are the paramiko connection's own names for where and as
// whom to connect. Ansible reads them only with ansible_connection
// paramiko, and then over ansible_host and the others; routepush, which
// speaks SSH as itself, refuses them rather than guess which applies.
var paramikoVars = map[string]string{
	"ansible_paramiko_host": "ansible_host",
	"ansible_paramiko_user": "ansible_user",
	"ansible_paramiko_port": "ansible_port",
}

// ignoredVars change how Ansible talks to a host in ways that do not
// matter to routepush (or make it stricter); they are ignored with a
// warning.
var ignoredVars = map[string]string{
	"ansible_host_key_checking":     "routepush always checks host keys (--accept-new-host-keys adds unknown ones)",
	"ansible_ssh_host_key_checking": "routepush always checks host keys (--accept-new-host-keys adds unknown ones)",
	"ansible_become_flags":          "routepush runs sudo -n",
	"ansible_become_exe":            "routepush runs sudo",
	"ansible_sudo_flags":            "routepush runs sudo -n",
	"ansible_sudo_exe":              "routepush runs sudo",
	"ansible_sftp_extra_args":       "routepush's file transfers use its own SSH connection",
	"ansible_scp_extra_args":        "routepush's file transfers use its own SSH connection",
	"ansible_ssh_executable":        "routepush speaks SSH itself",
}

// nodeVars reads one host's merged variables into a node. Every problem
// is a FieldError naming the host and the variable, and where it was set.
type nodeVars struct {
	host     string
	vars     vars
	opts     Options
	errs     []error
	warnings []string        // without the host's name: the caller groups hosts by warning
	failed   map[string]bool // fields (address, user, port, the routing ones) already reported
}

func (r *nodeVars) bad(field, canon, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if v, ok := r.vars[field]; ok && v.from != "" {
		msg += " (set in " + v.from + ")"
	}
	r.errs = append(r.errs, &FieldError{Node: validName(r.host), Index: NoIndex, Field: field, Msg: msg})
	r.failed[canon] = true
}

// str returns a variable routepush reads as text, refusing what it cannot
// take at its word: a vaulted value, or a Jinja template.
func (r *nodeVars) str(name, canon string) (string, bool) {
	v, ok := r.vars[name]
	if !ok || v.v == nil {
		return "", false
	}
	if !r.literal(name, canon, v.v) {
		return "", false
	}
	switch x := v.v.(type) {
	case string:
		return x, true
	case unsafeText:
		return string(x), true
	case bool, int, int64, float64:
		return fmt.Sprint(x), true
	}
	r.bad(name, canon, "want a string, got %s", kindOf(v.v))
	return "", false
}

// list returns a variable that may hold one value or a list of them.
func (r *nodeVars) list(name, canon string) ([]string, bool) {
	v, ok := r.vars[name]
	if !ok || v.v == nil {
		return nil, false
	}
	if !r.literal(name, canon, v.v) {
		return nil, false
	}
	switch x := v.v.(type) {
	case string:
		return []string{x}, true
	case unsafeText:
		return []string{string(x)}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if u, ok := e.(unsafeText); ok {
				e = string(u)
			}
			s, ok := e.(string)
			if !ok {
				r.bad(name, canon, "want strings, got %s in the list", kindOf(e))
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	r.bad(name, canon, "want a string or a list of strings, got %s", kindOf(v.v))
	return nil, false
}

// literal refuses values routepush cannot read as written: encrypted with
// ansible-vault, or Jinja templates Ansible would render first (not in a
// string tagged !unsafe, which Ansible takes as written).
func (r *nodeVars) literal(name, canon string, v any) bool {
	switch x := v.(type) {
	case vaulted:
		r.bad(name, canon, "is encrypted with ansible-vault (!vault), which routepush cannot read: write it in clear, or leave it out")
		return false
	case string:
		if strings.HasPrefix(strings.TrimSpace(x), "$ANSIBLE_VAULT;") {
			r.bad(name, canon, "is encrypted with ansible-vault, which routepush cannot read: write it in clear, or leave it out")
			return false
		}
		if strings.Contains(x, "{{") || strings.Contains(x, "{%") || strings.Contains(x, "{#") {
			r.bad(name, canon, "%q is a Jinja template, which routepush does not render: write the value itself", x)
			return false
		}
	case []any:
		for _, e := range x {
			if !r.literal(name, canon, e) {
				return false
			}
		}
	case map[string]any:
		for _, e := range x {
			if !r.literal(name, canon, e) {
				return false
			}
		}
	}
	return true
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T %v", v, v)
}

// first returns the first of names the host sets, refusing two that
// disagree (ansible_host and the older ansible_ssh_host, say).
func (r *nodeVars) first(canon string, names ...string) (string, string, bool) {
	var got, from string
	for _, n := range names {
		s, ok := r.str(n, canon)
		if !ok {
			continue
		}
		if from != "" && s != got {
			r.bad(n, canon, "%q disagrees with %s %q; set one", s, from, got)
			return "", "", false
		}
		if from == "" {
			got, from = s, n
		}
	}
	return got, from, from != ""
}

func boolish(v any) (bool, bool) {
	if u, ok := v.(unsafeText); ok {
		v = string(u)
	}
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		return x != 0, x == 0 || x == 1
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "yes", "on", "1", "true", "y", "t":
			return true, true
		case "no", "off", "0", "false", "n", "f", "":
			return false, true
		}
	}
	return false, false
}

// node maps the host's variables to a routepush node. Which of them
// routepush honours, ignores and refuses is the README's "Coming from
// Ansible" section.
func (r *nodeVars) node() Node {
	n := Node{Name: r.host}
	for _, name := range slices.Sorted(maps.Keys(r.vars)) {
		if what, ok := refusedVars[name]; ok {
			r.bad(name, name, "is %s; routepush logs in with keys (ssh-agent or ansible_ssh_private_key_file) and becomes root with passwordless sudo: remove it", what)
		}
		if use, ok := paramikoVars[name]; ok {
			r.bad(name, name, "is read by Ansible's paramiko connection only, which routepush does not use: set %s instead", use)
		}
		if why, ok := ignoredVars[name]; ok {
			r.warnings = append(r.warnings, fmt.Sprintf("%s ignored: %s", name, why))
		}
	}
	if c, ok := r.str("ansible_connection", "ansible_connection"); ok {
		switch strings.TrimPrefix(strings.TrimPrefix(c, "ansible.builtin."), "ansible.legacy.") {
		case "ssh", "smart", "paramiko", "paramiko_ssh":
		default:
			r.bad("ansible_connection", "ansible_connection", "%q: routepush reaches every node over SSH and cannot honour another connection type", c)
		}
	}
	if addr, _, ok := r.first("address", "ansible_host", "ansible_ssh_host"); ok {
		n.Address = strings.TrimSpace(addr)
	} else {
		// Ansible connects to the host's name when nothing says otherwise.
		n.Address = r.host
	}
	if user, _, ok := r.first("user", "ansible_user", "ansible_ssh_user"); ok {
		n.SSH.User = user
	}
	if port, from, ok := r.first("port", "ansible_port", "ansible_ssh_port"); ok {
		p, isInt := asInt(port)
		if !isInt || p < 1 || p > 65535 {
			r.bad(from, "port", "%q is not a port (1-65535)", port)
		} else {
			n.SSH.Port = int(p)
		}
	}
	if key, _, ok := r.first("identity_file", "ansible_ssh_private_key_file", "ansible_private_key_file"); ok {
		n.SSH.IdentityFile = key
	}
	r.become(&n)
	r.sshArgs(&n, "ansible_ssh_args")
	r.sshArgs(&n, "ansible_ssh_common_args")
	r.sshArgs(&n, "ansible_ssh_extra_args")
	r.routing(&n)
	return n
}

func (r *nodeVars) become(n *Node) {
	if v, ok := r.vars["ansible_become"]; ok && r.literal("ansible_become", "become", v.v) {
		b, isBool := boolish(v.v)
		if !isBool {
			r.bad("ansible_become", "become", "%v is not a boolean", v.v)
		}
		n.SSH.Become = b
	}
	if m, ok := r.str("ansible_become_method", "become"); ok && m != "sudo" && m != "ansible.builtin.sudo" {
		r.bad("ansible_become_method", "become", "%q: routepush becomes root with sudo only", m)
	}
	// ansible_sudo_user is the sudo become plugin's older name for it.
	if u, from, ok := r.first("become", "ansible_become_user", "ansible_sudo_user"); ok && u != "root" {
		r.bad(from, "become", "%q: routepush becomes root (sudo -n, to change routes), never another user", u)
	}
}

// routing reads the host's internal IPs and pod CIDRs from the variables
// the options name. Without an internal IP, an IP address in ansible_host
// is the next hop, as address is in hosts.yaml.
func (r *nodeVars) routing(n *Node) {
	ipVars, podVars := r.opts.ipVars(), r.opts.podVars()
	ips, ipVar := r.oneOf(ipVars, "internal_ip")
	if ipVar == "" {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			ips = []string{a.String()}
		}
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			r.bad(ipVar, "internal_ip", "%q is not an IP address", s)
			continue
		}
		n.InternalIPs = append(n.InternalIPs, a.Unmap())
	}
	cidrs, podVar := r.oneOf(podVars, "pod_cidr")
	for _, s := range cidrs {
		p, err := ParseCIDR(s)
		if err != nil {
			r.bad(podVar, "pod_cidr", "%v", err)
			continue
		}
		n.PodCIDRs = append(n.PodCIDRs, p)
	}
}

// oneOf returns the values of the one variable of names the host sets.
func (r *nodeVars) oneOf(names []string, canon string) ([]string, string) {
	var got []string
	var from string
	for _, name := range names {
		l, ok := r.list(name, canon)
		if !ok {
			continue
		}
		if from != "" {
			r.bad(name, canon, "set both %s and %s; use one", from, name)
			return nil, from
		}
		got, from = l, name
	}
	return got, from
}
