// Package inventory builds routepush's node table: for every node its name,
// where SSH reaches it, its internal IPs (the next hops other nodes route
// through) and its pod CIDRs. The table comes from a hosts.yaml file, an
// Ansible inventory (INI or YAML, with its group_vars/ and host_vars/, read
// as ansible-inventory reads it; ansible*.go) or the Kubernetes API; either
// way it passes through Validate before routepush connects anywhere. It
// also matches Ansible's host patterns against an inventory's groups
// (MatchPattern), for --limit.
//
// It reads an Ansible inventory, never runs it: dynamic inventory scripts
// and plugins, ansible-vault and Jinja templates are refused, not
// evaluated.
//
// Every string from the file is parsed into a netip value or checked against
// a strict pattern here, so nothing later in the program ever has to quote
// inventory data for a shell.
package inventory

import (
	"net/netip"
	"slices"

	"github.com/routepush/routepush/route"
)

// Node is one machine of the cluster.
type Node struct {
	// Name is the node's name, as Kubernetes knows it.
	Name string
	// Address is where SSH connects, when the inventory says: an IP address
	// or a DNS name. Empty means ssh_config's HostName for the node's name,
	// else its first internal IP.
	Address string
	// InternalIPs are the next hops for this node's pod CIDRs, at most one
	// per address family.
	InternalIPs []netip.Addr
	// PodCIDRs are the networks of this node's pods, at most one per family.
	// A node without any still receives routes but is no destination.
	PodCIDRs []netip.Prefix
	// SSH holds per-node connection settings; zero values mean "use the
	// run's defaults".
	SSH SSH
	// AddressFromAPI is set when nothing the operator wrote says where the
	// node is: no inventory address or internal IP, only the Node
	// object's InternalIP, which the node's own kubelet can write. SSH
	// then goes there only if known_hosts vouches for it (remote.Target's
	// FallbackFromAPI).
	AddressFromAPI bool
}

// SSH is how to log in to a node.
type SSH struct {
	User         string
	Port         int
	IdentityFile string
	Jump         string // jump hosts, as ssh's ProxyJump: [user@]host[:port][,...]
	Become       bool   // run ip through sudo
	// SFTPServer is the sftp-server become runs through sudo (absolute,
	// named sftp-server: nodepath.CheckProgram); empty: Debian's, else
	// the node's own.
	SFTPServer string
}

// InternalIP returns the node's internal IP of the family, if it has one.
func (n *Node) InternalIP(fam route.Family) (netip.Addr, bool) {
	for _, a := range n.InternalIPs {
		if route.FamilyOf(a) == fam {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Families returns the families the node has an internal IP in: the
// families of routes it can receive.
func (n *Node) Families() []route.Family {
	var fams []route.Family
	for _, a := range n.InternalIPs {
		if f := route.FamilyOf(a); !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	return fams
}

// HasInternalIP reports whether a is one of the node's internal IPs.
func (n *Node) HasInternalIP(a netip.Addr) bool {
	return slices.Contains(n.InternalIPs, a.Unmap())
}
