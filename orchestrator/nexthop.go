package orchestrator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/routepush/routepush/route"
)

// UnconnectedNextHops checks, in the node's main table (whatever --table
// says: its links' routes are there), that every next hop of its plan is
// on a subnet directly connected to it: the most specific route to the
// next hop (what `ip route get` would use) has no gateway of its own. The
// kernel refuses a route via any other next hop ("Nexthop has invalid
// gateway") unless it is added onlink, which routepush never does
// silently: flannel host-gw learned that an onlink route to an unreachable
// peer is a black hole. It returns one message per next hop that is not
// directly connected.
func UnconnectedNextHops(h HostPlan, current []route.Route) []string {
	problems, _ := unconnectedNextHops(h, current)
	return problems
}

// UnconnectedError refuses a node whose plan has next hops it cannot
// reach directly: the nodes of those internal IPs are what is wrong
// (addressed on another segment, or a Node object lying), not this one.
type UnconnectedError struct {
	Hops []netip.Addr
	msg  string
}

func (e *UnconnectedError) Error() string { return e.msg }

// unconnectedNextHops is UnconnectedNextHops, with the next hops.
func unconnectedNextHops(h HostPlan, current []route.Route) ([]string, []netip.Addr) {
	infra := infraRoutes(h, current)
	var problems []string
	var hops []netip.Addr
	for _, s := range h.segs {
		for pos, d := range h.plan.dests[famIndex(s.fam)] {
			if pos >= s.skip.start && pos < s.skip.end {
				continue // the node's own pod CIDR
			}
			if p := nextHopProblem(infra, d.via); p != "" {
				problems = append(problems, p)
				hops = append(hops, d.via)
			}
		}
	}
	return problems, hops
}

// infraRoutes are the main table's routes that may reach a node's
// internal IP, most specific first (the lower metric first among equals):
// the first that contains a next hop is the one the kernel would use.
// Pod routes never do: pod CIDRs never contain an internal IP (inventory
// validation refuses that).
func infraRoutes(h HostPlan, current []route.Route) []*route.Route {
	var infra []*route.Route
	for i := range current {
		c := &current[i]
		if c.Table != "" {
			continue
		}
		if _, _, planned := h.plan.find(c.Dst); planned {
			continue
		}
		infra = append(infra, c)
	}
	slices.SortStableFunc(infra, func(a, b *route.Route) int {
		if c := cmp.Compare(b.Dst.Bits(), a.Dst.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(a.Metric, b.Metric)
	})
	return infra
}

// routeTo is the route of infra the kernel would use to reach via, nil if
// none.
func routeTo(infra []*route.Route, via netip.Addr) *route.Route {
	for _, r := range infra {
		if r.Dst.Contains(via) {
			return r
		}
	}
	return nil
}

// connectedRoute is the route through which via is directly connected,
// nil if it is not.
func connectedRoute(infra []*route.Route, via netip.Addr) *route.Route {
	if nextHopProblem(infra, via) != "" {
		return nil
	}
	return routeTo(infra, via)
}

// nextHopProblem says why via is not directly connected, or "".
func nextHopProblem(infra []*route.Route, via netip.Addr) string {
	best := routeTo(infra, via)
	switch {
	case best == nil:
		return fmt.Sprintf("next hop %s: no route to it", via)
	case best.Type != "" && best.Type != "unicast":
		return fmt.Sprintf("next hop %s is %s by %s", via, best.Type, best)
	case best.Gateway.IsValid() || len(best.Nexthops) > 0:
		return fmt.Sprintf("next hop %s is not on a directly connected subnet: the node reaches it through %s", via, best)
	}
	return ""
}
