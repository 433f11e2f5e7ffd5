package orchestrator

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// labNodes returns n nodes shaped like the test lab's.
func labNodes(n int) []inventory.Node {
	nodes := make([]inventory.Node, n)
	for i := range nodes {
		nodes[i] = inventory.Node{
			Name:        fmt.Sprintf("node-%d", i),
			Address:     fmt.Sprintf("198.18.0.%d", 10+i),
			InternalIPs: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 10+i))},
			PodCIDRs:    []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("100.64.%d.0/24", i))},
		}
	}
	return nodes
}

func TestPlanRoutesEveryOtherNodeNeverItself(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	nodes[4].PodCIDRs = nil // not a destination, still a receiver
	p := NewPlan(nodes, DefaultProtocol)
	for i := range nodes {
		h := p.Host(i)
		want := 3
		if i == 4 {
			want = 4
		}
		if h.Len() != want {
			t.Fatalf("node-%d: %d routes, want %d", i, h.Len(), want)
		}
		for k := 0; k < h.Len(); k++ {
			r := h.Route(k)
			for _, own := range nodes[i].PodCIDRs {
				if r.Dst == own {
					t.Errorf("node-%d has a route to its own CIDR: %s", i, r)
				}
			}
			if r.Protocol != DefaultProtocol || r.Metric != 0 {
				t.Errorf("node-%d route %s: protocol %d metric %d", i, r, r.Protocol, r.Metric)
			}
			if r.Dst.String() == "100.64.4.0/24" {
				t.Errorf("node-%d routes to node-4, which has no CIDR", i)
			}
		}
	}
	if got := p.Host(1).Route(0).String(); got != "100.64.0.0/24 via 198.18.0.10 proto 114" {
		t.Errorf("node-1 route 0 = %q", got)
	}
}

func TestPlanDualStack(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	for i := range nodes[:2] {
		nodes[i].InternalIPs = append(nodes[i].InternalIPs, netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 10+i)))
		nodes[i].PodCIDRs = append(nodes[i].PodCIDRs, netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::/64", 100+i)))
	}
	p := NewPlan(nodes, DefaultProtocol)
	var got []string
	for k, h := 0, p.Host(0); k < h.Len(); k++ {
		got = append(got, h.Route(k).Spec())
	}
	want := []string{
		"100.64.1.0/24 via 198.18.0.11 proto 114",
		"100.64.2.0/24 via 198.18.0.12 proto 114",
		"2001:db8:101::/64 via 2001:db8::11 proto 114 metric 1024",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("node-0 plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// node-2 has no IPv6 address: it gets no IPv6 routes.
	if h := p.Host(2); h.Len() != 2 || len(h.Families()) != 1 {
		t.Errorf("node-2: %d routes in %v, want 2 IPv4 routes", h.Len(), h.Families())
	}
}

func mustRoutes(t *testing.T, text string) []route.Route {
	t.Helper()
	rs, err := route.ParseText([]byte(text), route.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// What the playbook and others leave on node-0, and what each policy does
// with it.
const foreignTable = `unicast 100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope global
unicast 100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global
unicast 100.64.3.0/24 via 198.18.0.13 dev eth0 proto boot scope global metric 1
unicast 100.64.0.0/24 via 198.18.0.10 dev eth0 proto boot scope global
unicast 100.64.9.0/24 via 198.18.0.19 dev eth0 proto 114 scope global
unicast 100.64.0.0/16 via 198.18.0.1 dev eth0 proto static scope global
unicast 100.64.2.128/25 via 198.18.0.12 dev eth0 proto bird scope global
unicast 198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.0.10
unicast default via 198.18.0.1 dev eth0 proto boot scope global
`

func kinds(fs []Finding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Kind.String()+" "+f.Route().Dst.String())
	}
	return strings.Join(s, ", ")
}

func TestComputeDiffReportsWithoutAdoptOrPrune(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(4), DefaultProtocol)
	d, err := ComputeDiff(p.Host(0), mustRoutes(t, foreignTable))
	if err != nil {
		t.Fatal(err)
	}
	// Only 100.64.3.0/24 at metric 0 is free to add; everything else is
	// reported and left alone.
	if d.Unchanged != 1 || len(d.Replace) != 0 || len(d.Remove) != 0 || d.Add.Len() != 1 {
		t.Fatalf("diff = %+v", d)
	}
	want := "conflict 100.64.2.0/24, conflict 100.64.3.0/24, self route 100.64.0.0/24, stale 100.64.9.0/24, overlap 100.64.0.0/16, overlap 100.64.2.128/25"
	if got := kinds(d.Kept); got != want {
		t.Errorf("kept:\n got %s\nwant %s", got, want)
	}
	if c := d.Conflicts(); len(c) != 2 || !strings.Contains(c[0].Why(p.Host(0)), "proto boot: ip route add or route add") {
		t.Errorf("conflicts = %v", c)
	}
}

func TestComputeDiffAdoptAndPrune(t *testing.T) {
	t.Parallel()
	p := NewPlanWith(labNodes(4), PlanOptions{Protocol: DefaultProtocol, Adopt: true, Prune: true})
	h := p.Host(0)
	d, err := ComputeDiff(h, mustRoutes(t, foreignTable))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(d.Remove), "conflict 100.64.3.0/24, self route 100.64.0.0/24, stale 100.64.9.0/24"; got != want {
		t.Errorf("remove:\n got %s\nwant %s", got, want)
	}
	if got, want := kinds(d.Kept), "overlap 100.64.0.0/16, overlap 100.64.2.128/25"; got != want {
		t.Errorf("kept:\n got %s\nwant %s", got, want)
	}
	if got := string(d.ApplyBatch(h).Bytes()); got != `route del 100.64.3.0/24 via 198.18.0.13 proto 3 metric 1
route del 100.64.0.0/24 via 198.18.0.10 proto 3 metric 0
route del 100.64.9.0/24 via 198.18.0.19 proto 114 metric 0
route del 100.64.2.0/24 via 198.18.0.99 proto 3 metric 0
route add 100.64.3.0/24 via 198.18.0.13 proto 114
route add 100.64.2.0/24 via 198.18.0.12 proto 114
` {
		t.Errorf("apply batch:\n%s", got)
	}
	if got := string(d.UndoBatch(h).Bytes()); got != `route del 100.64.3.0/24 via 198.18.0.13 proto 114 metric 0
route del 100.64.2.0/24 via 198.18.0.12 proto 114 metric 0
route add 100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global
route add 100.64.3.0/24 via 198.18.0.13 dev eth0 proto boot scope global metric 1
route add 100.64.0.0/24 via 198.18.0.10 dev eth0 proto boot scope global
route add 100.64.9.0/24 via 198.18.0.19 dev eth0 proto 114 scope global
` {
		t.Errorf("undo batch:\n%s", got)
	}
	// After the batch, verify wants the deleted routes gone.
	after := mustRoutes(t, `unicast 100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope global
unicast 100.64.2.0/24 via 198.18.0.12 dev eth0 proto 114 scope global
unicast 100.64.3.0/24 via 198.18.0.13 dev eth0 proto 114 scope global
unicast 100.64.9.0/24 via 198.18.0.19 dev eth0 proto 114 scope global
`)
	if problems := Verify(h, after); len(problems) != 1 || !strings.Contains(problems[0], "100.64.9.0/24 via 198.18.0.19 dev eth0 proto 114 is still there") {
		t.Errorf("verify = %q", problems)
	}
}

func TestUnconnectedNextHops(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(5), DefaultProtocol)
	// node-3 reaches 198.18.0.0-12 on its link, the rest through a gateway.
	current := mustRoutes(t, `unicast default via 198.18.0.1 dev eth0 proto boot scope global
unicast 198.18.0.0/29 dev eth0 proto boot scope link src 198.18.0.13
unicast 198.18.0.8/30 dev eth0 proto boot scope link src 198.18.0.13
unicast 198.18.0.12/32 dev eth0 proto boot scope link src 198.18.0.13
unicast 100.64.4.0/24 via 198.18.0.14 dev eth0 proto 114 scope global
`)
	got := UnconnectedNextHops(p.Host(3), current)
	if len(got) != 1 || got[0] != "next hop 198.18.0.14 is not on a directly connected subnet: the node reaches it through 0.0.0.0/0 via 198.18.0.1 dev eth0 proto boot" {
		t.Errorf("UnconnectedNextHops = %q", got)
	}
	if got := UnconnectedNextHops(p.Host(3), current[1:4]); len(got) != 1 || got[0] != "next hop 198.18.0.14: no route to it" {
		t.Errorf("without a default route: %q", got)
	}
	connected := mustRoutes(t, "unicast 198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.0.13\n")
	if got := UnconnectedNextHops(p.Host(3), connected); len(got) != 0 {
		t.Errorf("on a /16 link: %q", got)
	}
}

func TestPlanTable(t *testing.T) {
	t.Parallel()
	p := NewPlanWith(labNodes(3), PlanOptions{Protocol: DefaultProtocol, Table: "100", Prune: true})
	current := mustRoutes(t, `unicast 100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope global
unicast 198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.0.10
`)
	// The main table's proto 114 route is not in the managed table: not
	// stale, not in sync.
	d, err := ComputeDiff(p.Host(0), current)
	if err != nil {
		t.Fatal(err)
	}
	if d.Add.Len() != 2 || len(d.Kept)+len(d.Remove) != 0 {
		t.Fatalf("diff = %+v", d)
	}
	if got := string(d.ApplyBatch(p.Host(0)).Bytes()); got != "route add 100.64.1.0/24 via 198.18.0.11 table 100 proto 114\nroute add 100.64.2.0/24 via 198.18.0.12 table 100 proto 114\n" {
		t.Errorf("apply batch: %q", got)
	}
	current[0].Table = "100"
	if d, _ = ComputeDiff(p.Host(0), current); d.Unchanged != 1 || d.Add.Len() != 1 {
		t.Errorf("with the route in table 100: %+v", d)
	}
}

func TestPlanMetric(t *testing.T) {
	t.Parallel()
	m := uint32(100)
	p := NewPlanWith(labNodes(2), PlanOptions{Protocol: DefaultProtocol, Metric: &m})
	d, err := ComputeDiff(p.Host(0), mustRoutes(t, "unicast 100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope global\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The metric-0 route is routepush's but no longer planned: stale.
	if d.Add.Len() != 1 || kinds(d.Kept) != "stale 100.64.1.0/24" {
		t.Fatalf("diff = %+v", d)
	}
	if got := string(d.ApplyBatch(p.Host(0)).Bytes()); got != "route add 100.64.1.0/24 via 198.18.0.11 proto 114 metric 100\n" {
		t.Errorf("apply batch: %q", got)
	}
}

func TestComputeDiffRefusesUnrestorable(t *testing.T) {
	t.Parallel()
	p := NewPlanWith(labNodes(2), PlanOptions{Protocol: DefaultProtocol, Adopt: true})
	current := mustRoutes(t, "100.64.1.0/24 via 198.18.0.99 dev eth0 expires 30sec\n")
	_, err := ComputeDiff(p.Host(0), current)
	if err == nil || !strings.Contains(err.Error(), "cannot be restored") {
		t.Errorf("ComputeDiff() error = %v, want a refusal", err)
	}
}

// PruneDst deletes the stale routes to the destinations it names, and no
// other, without --prune: what the watcher asks for a node that left.
func TestComputeDiffPruneDst(t *testing.T) {
	t.Parallel()
	table := mustRoutes(t, `unicast 100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope global
unicast 100.64.8.0/24 via 198.18.0.18 dev eth0 proto 114 scope global
unicast 100.64.9.0/24 via 198.18.0.19 dev eth0 proto 114 scope global
unicast 100.64.7.0/24 via 198.18.0.17 dev eth0 proto boot scope global
`)
	gone := netip.MustParsePrefix("100.64.9.0/24")
	foreign := netip.MustParsePrefix("100.64.7.0/24")
	p := NewPlanWith(labNodes(2), PlanOptions{Protocol: DefaultProtocol, PruneDst: func(dst netip.Prefix) bool { return dst == gone || dst == foreign }})
	d, err := ComputeDiff(p.Host(0), table)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(d.Remove), "stale 100.64.9.0/24"; got != want {
		t.Errorf("remove:\n got %s\nwant %s", got, want)
	}
	if got, want := kinds(d.Kept), "stale 100.64.8.0/24"; got != want {
		t.Errorf("kept:\n got %s\nwant %s", got, want)
	}
}
