package orchestrator

import (
	"fmt"
	"net/netip"

	"github.com/routepush/routepush/route"
)

// untouchable lists what a node's batch must never do, whatever the flags
// say: delete or replace a directly connected route (the node's own
// subnets), a default route, or the route the node reaches routepush's
// session through (source: the address its SSH session comes from, when
// known); and route another node's pod CIDR over one of the node's
// directly connected subnets. Any of those could cut the node off, or
// hijack its own network. Nor does it go near a route through a nexthop
// object (nhid) at a planned destination: it could not put it back. It
// returns one message per problem.
func untouchable(h HostPlan, d *Diff, current []route.Route, source netip.Addr) []string {
	var problems []string
	check := func(r route.Route, what string) {
		switch {
		case connected(&r):
			problems = append(problems, fmt.Sprintf("%s would %s the directly connected route %s (%s)", "the batch", what, r, h.owner(r.Protocol)))
		case r.Dst.Bits() == 0:
			problems = append(problems, fmt.Sprintf("%s would %s the default route %s (%s)", "the batch", what, r, h.owner(r.Protocol)))
		case source.IsValid() && r.Dst.Contains(source.Unmap()):
			problems = append(problems, fmt.Sprintf("%s would %s route %s (%s), which the node needs to reach routepush at %s", "the batch", what, r, h.owner(r.Protocol), source.Unmap()))
		}
	}
	for _, f := range d.Remove {
		check(f.Route(), "delete")
	}
	if source.IsValid() {
		// A planned route covering the session's source would send the
		// node's answers to routepush into a pod network.
		host := netip.PrefixFrom(source.Unmap(), source.Unmap().BitLen())
		k, ok := h.overlapping(host)
		if !ok {
			if fi, pos, found := h.plan.find(host); found {
				k, ok = h.indexOf(fi, pos)
			}
		}
		if ok {
			problems = append(problems, fmt.Sprintf("the planned %s covers %s, where the node sees routepush's session come from", h.Route(k), source.Unmap()))
		}
	}
	for _, r := range d.Replace {
		check(r.Old(), "replace")
	}
	for i := range current {
		c := &current[i]
		if c.NHID != 0 && c.Table == h.plan.Table {
			if fi, pos, ok := h.plan.find(c.Dst); ok {
				if _, planned := h.indexOf(fi, pos); planned {
					problems = append(problems, fmt.Sprintf("route %s (%s) to a planned destination goes through nexthop object %d, which routepush neither manages nor restores", c, h.owner(c.Protocol), c.NHID))
				}
			}
		}
		if c.Table != "" || !connected(c) || c.Dst.Bits() == 0 {
			continue
		}
		if k, ok := h.overlapping(c.Dst); ok {
			problems = append(problems, fmt.Sprintf("the planned %s overlaps the node's directly connected subnet %s (dev %s): a pod CIDR must not overlap the nodes' own networks", h.Route(k), c.Dst, c.Dev))
		}
	}
	return problems
}

// connected reports whether a route is a directly connected subnet: a
// plain unicast route through a device, with no gateway (what the kernel
// adds for an address, or `ip route add NET dev IF`).
func connected(r *route.Route) bool {
	return (r.Type == "" || r.Type == "unicast") && !r.Gateway.IsValid() && len(r.Nexthops) == 0 && r.Dev != ""
}
