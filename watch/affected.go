package watch

import (
	"net/netip"
	"slices"

	"github.com/routepush/routepush/inventory"
)

// Change is what an event (or a batch of them) did to the node table: the
// nodes whose routes it touches, and the pod CIDRs that no node owns any
// more (their routes are pruned wherever they are found).
type Change struct {
	Affected []string // sorted
	// Changed are the nodes whose own entry changed: joined, or new
	// internal IPs or pod CIDRs (sorted).
	Changed []string
	Gone    []netip.Prefix // pod CIDRs of nodes that left or moved
}

// Empty reports whether the change touches no node.
func (c Change) Empty() bool { return len(c.Affected) == 0 }

// Diff works out what going from the table old to the table new changes.
// A node that joins needs its whole plan, and every other node a route to
// it: all nodes. A node that leaves, or whose internal IPs or pod CIDRs
// change, changes one route on every other node. A change in how a node is
// reached (the inventory's SSH settings) changes no route.
func Diff(old, new []inventory.Node) Change {
	before := make(map[string]*inventory.Node, len(old))
	for i := range old {
		before[old[i].Name] = &old[i]
	}
	names := make([]string, len(new))
	for i := range new {
		names[i] = new[i].Name
	}
	hit := map[string]bool{}
	others := func(name string) {
		for _, n := range names {
			if n != name {
				hit[n] = true
			}
		}
	}
	owned := map[netip.Prefix]bool{}
	var changed []string
	for i := range new {
		n := &new[i]
		for _, c := range n.PodCIDRs {
			owned[c] = true
		}
		o, ok := before[n.Name]
		switch {
		case !ok:
			hit[n.Name] = true
			others(n.Name)
			changed = append(changed, n.Name)
		case !slices.Equal(o.InternalIPs, n.InternalIPs) || !slices.Equal(o.PodCIDRs, n.PodCIDRs):
			others(n.Name)
			changed = append(changed, n.Name)
		}
		delete(before, n.Name)
	}
	c := Change{Changed: changed}
	for name := range before { // the nodes that left
		others(name)
	}
	for i := range old {
		for _, p := range old[i].PodCIDRs {
			if !owned[p] && !slices.Contains(c.Gone, p) {
				c.Gone = append(c.Gone, p) // its node left, or it moved
			}
		}
	}
	for n := range hit {
		c.Affected = append(c.Affected, n)
	}
	slices.Sort(c.Affected)
	slices.SortFunc(c.Gone, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return c
}
