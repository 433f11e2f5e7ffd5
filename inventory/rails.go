package inventory

import (
	"fmt"
	"net/netip"

	"github.com/routepush/routepush/route"
)

// Rails are the limits a plan must stay within, checked before routepush
// connects anywhere. They catch the inventory mistakes that would cut
// nodes off rather than route pods: a pod CIDR so wide it swallows the
// network, or one that contains an address routepush itself travels to.
type Rails struct {
	// MinPrefix is the shortest pod CIDR accepted per family (IPv4, IPv6).
	MinPrefix [2]int
	// Reserved are addresses no pod CIDR may contain: the control host's
	// own, and the jump hosts'. (Nodes' internal IPs are always reserved.)
	Reserved []ReservedAddr
}

// ReservedAddr is an address pod CIDRs must not contain, and what it is.
type ReservedAddr struct {
	Addr netip.Addr
	What string // e.g. "an address of this control host", "jump host bastion"
}

// DefaultRails returns the rails of a run that sets none: IPv4 pod CIDRs
// shorter than /8 and IPv6 ones shorter than /32 are refused (wider than
// any cluster's pod range, and wide enough to take over a default route's
// job), and no address is reserved beyond the nodes' own. Each call returns
// a new value, which the caller may change.
func DefaultRails() Rails { return Rails{MinPrefix: [2]int{8, 32}} }

// CheckRails checks a validated node table against the rails. It returns a
// *ValidationError naming every node, field and rule broken, or nil.
func CheckRails(source string, nodes []Node, fromAPI bool, r Rails) error {
	v := &validator{fields: fileFields}
	if fromAPI {
		v.fields = apiFields
	}
	for i := range nodes {
		n := &nodes[i]
		for _, p := range n.PodCIDRs {
			fam := route.FamilyOf(p.Addr())
			fi := 0
			if fam == route.IPv6 {
				fi = 1
			}
			if min := r.MinPrefix[fi]; p.Bits() < min {
				v.add(i, n, v.fields.podCIDR, "%s is wider than /%d, the shortest %s pod CIDR allowed (--min-prefix-%s)", p, min, fam, map[int]string{0: "v4", 1: "v6"}[fi])
			}
			for _, a := range r.Reserved {
				if p.Contains(a.Addr.Unmap()) {
					v.add(i, n, v.fields.podCIDR, "%s contains %s, %s; routing it to pods would cut routepush off", p, a.Addr, a.What)
				}
			}
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Source: source, Errs: v.errs}
}

// String describes the rails for messages.
func (r Rails) String() string {
	return fmt.Sprintf("pod CIDRs at least /%d (IPv4) and /%d (IPv6), none containing %d reserved addresses", r.MinPrefix[0], r.MinPrefix[1], len(r.Reserved))
}
