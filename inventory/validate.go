package inventory

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/routepush/routepush/internal/nodepath"
	"github.com/routepush/routepush/internal/proxyjump"
	"github.com/routepush/routepush/route"
)

// FieldError is one problem with one field of one node.
type FieldError struct {
	Node  string // the node's name, or "" when it has none
	Index int    // position in the inventory's node list, or DefaultsIndex or NoIndex
	Field string // the inventory key ("pod_cidr") or API field ("spec.podCIDRs")
	Msg   string
}

// Index values of a FieldError that is not about an entry of a node list.
const (
	DefaultsIndex = -1 // the inventory's defaults
	NoIndex       = -2 // a node from the Kubernetes API: its name says which
)

func (e *FieldError) Error() string {
	var where string
	switch {
	case e.Index == DefaultsIndex:
		where = "defaults"
	case e.Index == NoIndex:
		where = fmt.Sprintf("node %q", e.Node)
	case e.Node != "":
		where = fmt.Sprintf("node %q (nodes[%d])", e.Node, e.Index)
	default:
		where = fmt.Sprintf("nodes[%d]", e.Index)
	}
	if e.Field == "" {
		return where + ": " + e.Msg
	}
	return where + " " + e.Field + ": " + e.Msg
}

// ValidationError lists every problem found in a node table, so an operator
// fixes them in one pass instead of one per run.
type ValidationError struct {
	Source string // "inventory hosts.yaml", or the cluster: `kubernetes context "prod" (https://...)`
	Errs   []error
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if len(e.Errs) == 1 {
		b.WriteString(": " + e.Errs[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, ": %d problems:", len(e.Errs))
	for _, err := range e.Errs {
		b.WriteString("\n  " + err.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the FieldErrors.
func (e *ValidationError) Unwrap() []error { return e.Errs }

// Validate checks a node table read from an inventory file as a whole:
// names and addresses, one internal IP and one pod CIDR per family, CIDRs in
// canonical form, none overlapping a special-purpose block (specialBlocks),
// no node or internal IP twice, no pod CIDRs that overlap, and no pod CIDR
// that contains a node's internal IP (routing it elsewhere would cut that
// node off). It returns a *ValidationError listing every problem, or nil.
func Validate(path string, nodes []Node) error {
	return validate("inventory "+path, nodes, fileFields)
}

// fieldNames are the names problems are reported under: the inventory's
// keys, or the Kubernetes API's fields the values came from.
type fieldNames struct {
	internalIP, podCIDR string
	address, user, port string
	listed              bool // the nodes are a file's list: report positions
}

var (
	fileFields = fieldNames{internalIP: "internal_ip", podCIDR: "pod_cidr", address: "address", user: "user", port: "port", listed: true}
	apiFields  = fieldNames{internalIP: "status.addresses[InternalIP]", podCIDR: "spec.podCIDRs", address: "address", user: "user", port: "port"}
)

// ansibleFields are the variables of an Ansible inventory problems are
// reported under.
func ansibleFields(o Options) fieldNames {
	return fieldNames{internalIP: o.ipVars()[0], podCIDR: o.podVars()[0], address: "ansible_host", user: "ansible_user", port: "ansible_port"}
}

func validate(source string, nodes []Node, fields fieldNames) error {
	return validateFrom(source, nodes, fields, nil)
}

// validateFrom is validate with where each node's address was set
// (addrFrom[i], "" when not known), for the messages.
func validateFrom(source string, nodes []Node, fields fieldNames, addrFrom []string) error {
	v := &validator{fields: fields}
	names := make(map[string]int, len(nodes))
	ips := make(map[netip.Addr]int, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		v.identity(i, n)
		v.routing(i, n)
		if n.Name != "" {
			if j, dup := names[n.Name]; dup {
				v.add(i, n, "name", "duplicate: nodes[%d] has the same name", j)
			} else {
				names[n.Name] = i
			}
		}
		for _, a := range n.InternalIPs {
			if j, dup := ips[a]; dup {
				v.add(i, n, fields.internalIP, "%s is also the internal IP of node %q", a, nodes[j].Name)
			} else {
				ips[a] = i
			}
		}
	}
	v.cidrs(nodes)
	v.sharedAddresses(nodes, addrFrom)
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Source: source, Errs: v.errs}
}

type validator struct {
	fields fieldNames
	errs   []error
}

func (v *validator) add(i int, n *Node, field, format string, args ...any) {
	name := ""
	if n != nil && proxyjump.ValidHost(n.Name) {
		name = n.Name
	}
	if !v.fields.listed {
		i = NoIndex
	}
	v.errs = append(v.errs, &FieldError{Node: name, Index: i, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// identity checks how a node is named and reached.
func (v *validator) identity(i int, n *Node) {
	switch {
	case n.Name == "":
		v.add(i, n, "name", "missing")
	case !proxyjump.ValidHost(n.Name):
		v.add(i, n, "name", "%q is not a valid node name (letters, digits, '.', '-', '_')", n.Name)
	}
	if n.Address != "" {
		if !proxyjump.ValidAddress(n.Address) {
			v.add(i, n, v.fields.address, "%q is neither an IP address nor a host name", n.Address)
		}
	}
	if n.SSH.User != "" && !proxyjump.ValidUser(n.SSH.User) {
		v.add(i, n, v.fields.user, "%q is not a valid user name", n.SSH.User)
	}
	if n.SSH.SFTPServer != "" {
		if err := nodepath.CheckProgram(n.SSH.SFTPServer, "sftp-server"); err != nil {
			v.add(i, n, "sftp_server", "%q: %v", n.SSH.SFTPServer, err)
		}
	}
	if n.SSH.Port < 0 || n.SSH.Port > 65535 {
		v.add(i, n, v.fields.port, "%d is out of range 1-65535", n.SSH.Port)
	}
}

// sharedAddresses refuses two nodes that SSH would reach at the same
// address, port and jump host: both nodes' routes would be pushed to, and
// verified on, the one machine behind it, and the other node would be
// left as it was while reported done. An ansible_host set for a whole
// group (group_vars) does that to every host of the group. Only what the
// inventory says is compared: a node without an address is reached by its
// name through ssh_config, or at its internal IP, and names and internal
// IPs are unique already. A port not given counts as 22.
func (v *validator) sharedAddresses(nodes []Node, addrFrom []string) {
	type at struct {
		addr string
		port int
		jump string
	}
	first := make(map[at]int, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		if n.Address == "" {
			continue
		}
		k := at{sshAddressKey(n.Address), n.SSH.Port, n.SSH.Jump}
		if k.port == 0 {
			k.port = 22
		}
		j, dup := first[k]
		if !dup {
			first[k] = i
			continue
		}
		how := fmt.Sprintf("port %d", k.port)
		if k.jump != "" {
			how += " via " + k.jump
		}
		msg := fmt.Sprintf("%s (%s) is also where node %q is reached: routepush would push both nodes' routes to one machine; give each node its own address", n.Address, how, nodes[j].Name)
		if i < len(addrFrom) && addrFrom[i] != "" {
			msg += " (set in " + addrFrom[i]
			if j < len(addrFrom) && addrFrom[j] != "" && addrFrom[j] != addrFrom[i] {
				msg += "; node " + strconv.Quote(nodes[j].Name) + "'s in " + addrFrom[j]
			}
			msg += ")"
		}
		v.add(i, n, v.fields.address, "%s", msg)
	}
}

// sshAddressKey is an address as compared for sameness: an IP in its
// canonical form, a DNS name in lower case without a final dot.
func sshAddressKey(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// routing checks what a node contributes to the routing: its address (to
// reach it), internal IPs (next hops) and pod CIDRs, each on its own.
func (v *validator) routing(i int, n *Node) {
	f := v.fields
	switch {
	case n.Address == "" && len(n.InternalIPs) == 0:
		v.add(i, n, f.address, "missing (give address, or %s to route through and, unless ssh_config has a HostName for the node, connect to)", f.internalIP)
	case len(n.InternalIPs) == 0:
		v.add(i, n, f.internalIP, "missing (needed when address is not an IP)")
	}
	seen := map[route.Family]bool{}
	for _, a := range n.InternalIPs {
		fam := route.FamilyOf(a)
		if seen[fam] {
			v.add(i, n, f.internalIP, "more than one %s address", fam)
		}
		seen[fam] = true
		if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			v.add(i, n, f.internalIP, "%s cannot be a next hop", a)
		}
	}
	seenCIDR := map[route.Family]bool{}
	for _, p := range n.PodCIDRs {
		fam := route.FamilyOf(p.Addr())
		if seenCIDR[fam] {
			v.add(i, n, f.podCIDR, "more than one %s CIDR (one per address family)", fam)
		}
		seenCIDR[fam] = true
		if _, ok := n.InternalIP(fam); !ok {
			v.add(i, n, f.podCIDR, "%s is %s but the node has no %s %s to route it through", p, fam, fam, f.internalIP)
		}
		for _, b := range specialBlocks {
			if p.Overlaps(b.Prefix) {
				v.add(i, n, f.podCIDR, "%s overlaps %s (%s): routing it to pods would hijack it", p, b.Name, b.What)
			}
		}
	}
}

// specialBlock is an address block no pod CIDR may overlap, and what it is.
type specialBlock struct {
	Prefix netip.Prefix
	Name   string // as the RFCs write it: ::ffff:0:0/96, not ::ffff:0.0.0.0/96
	What   string
}

func special(cidr, what string) specialBlock {
	return specialBlock{Prefix: netip.MustParsePrefix(cidr), Name: cidr, What: what}
}

// specialBlocks are the IANA special-purpose blocks whose addresses mean
// something on every host: a pod CIDR inside one, or one that contains it,
// would send the host's own traffic (loopback, the cloud metadata service,
// multicast, broadcast) to pods. They are refused always, unlike the
// rails, which flags can move. The shared address space 100.64.0.0/10 is
// not among them: it is where pod CIDRs usually are.
var specialBlocks = []specialBlock{
	special("0.0.0.0/8", `"this network"; the unspecified address 0.0.0.0 is inside`),
	special("127.0.0.0/8", "loopback"),
	special("169.254.0.0/16", "link-local; the cloud metadata address 169.254.169.254 is inside"),
	special("224.0.0.0/4", "multicast"),
	special("192.0.0.0/24", "IETF protocol assignments"),
	special("168.63.129.16/32", "Azure's platform address (wireserver, DNS, metadata)"),
	special("240.0.0.0/4", "reserved; the broadcast address 255.255.255.255 is inside"),
	special("::/128", "the unspecified address"),
	special("::1/128", "loopback"),
	special("::ffff:0:0/96", "IPv4-mapped addresses"),
	special("64:ff9b::/96", "the NAT64 well-known prefix"),
	special("fd00:ec2::254/128", "the AWS instance metadata address over IPv6"),
	special("fe80::/10", "link-local"),
	special("ff00::/8", "multicast"),
}

// cidrs checks the pod CIDRs of all nodes against each other and against
// every internal IP. Sorting makes it O(n log n): pod CIDRs that are valid
// are disjoint, so a prefix can only overlap the one that covers it.
func (v *validator) cidrs(nodes []Node) {
	type owned struct {
		p netip.Prefix
		i int
	}
	var all []owned
	for i := range nodes {
		for _, p := range nodes[i].PodCIDRs {
			all = append(all, owned{p, i})
		}
	}
	slices.SortFunc(all, func(a, b owned) int {
		if c := a.p.Addr().Compare(b.p.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.p.Bits(), b.p.Bits())
	})
	var cover *owned
	for k := range all {
		o := &all[k]
		if cover != nil && cover.p.Overlaps(o.p) {
			v.add(o.i, &nodes[o.i], v.fields.podCIDR, "%s overlaps %s of node %q", o.p, cover.p, nodes[cover.i].Name)
			continue
		}
		cover = o
	}
	for i := range nodes {
		for _, a := range nodes[i].InternalIPs {
			k, _ := slices.BinarySearchFunc(all, a, func(o owned, a netip.Addr) int {
				return o.p.Addr().Compare(a)
			})
			// The covering prefix, if any, starts at or before a.
			for _, c := range []int{k, k - 1} {
				if c >= 0 && c < len(all) && all[c].p.Contains(a) {
					o := all[c]
					v.add(o.i, &nodes[o.i], v.fields.podCIDR, "%s contains %s, the internal IP of node %q; routing it to pods would cut that node off", o.p, a, nodes[i].Name)
					break
				}
			}
		}
	}
}
