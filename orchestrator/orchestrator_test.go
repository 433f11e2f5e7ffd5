package orchestrator

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
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

func TestComputeDiff(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(4), DefaultProtocol)
	current := mustRoutes(t, `unicast 100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope global
unicast 100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global
unicast 100.64.3.0/24 via 198.18.0.13 dev eth0 proto boot scope global metric 1
unicast 198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.0.10
`)
	d, err := ComputeDiff(p.Host(0), current)
	if err != nil {
		t.Fatal(err)
	}
	// 100.64.1.0/24 is right; 100.64.2.0/24 goes elsewhere; the metric-1
	// route is another key, so 100.64.3.0/24 is still to add.
	if d.Unchanged != 1 || len(d.Replace) != 1 || d.Add.Len() != 1 {
		t.Fatalf("diff = %+v", d)
	}
	if got := d.ApplyBatch(p.Host(0)).Bytes(); string(got) != "route replace 100.64.3.0/24 via 198.18.0.13 proto 114\nroute replace 100.64.2.0/24 via 198.18.0.12 proto 114\n" {
		t.Errorf("apply batch:\n%s", got)
	}
	if got := d.UndoBatch(p.Host(0)).Bytes(); string(got) != "route del 100.64.3.0/24 via 198.18.0.13 proto 114 metric 0\nroute replace 100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n" {
		t.Errorf("undo batch:\n%s", got)
	}
}

func TestComputeDiffRefusesUnrestorable(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(2), DefaultProtocol)
	current := mustRoutes(t, "100.64.1.0/24 via 198.18.0.99 dev eth0 expires 30sec\n")
	_, err := ComputeDiff(p.Host(0), current)
	if err == nil || !strings.Contains(err.Error(), "cannot be restored") {
		t.Errorf("ComputeDiff() error = %v, want a refusal", err)
	}
}

func TestRunCheckThenApplyThenInSync(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	c := newFakeCluster(nodes)
	p := NewPlan(nodes, DefaultProtocol)
	ctx := context.Background()

	rep := Run(ctx, p, c.connect, Options{Check: true})
	if rep.Failed() || !rep.Changes() {
		t.Fatalf("check: failed=%v changes=%v", rep.Failed(), rep.Changes())
	}
	for name, k := range c.kernels {
		if k.applied != 0 {
			t.Errorf("check sent %d batches to %s", k.applied, name)
		}
	}
	var diff strings.Builder
	rep.WriteDiff(&diff)
	if n := strings.Count(diff.String(), "\n  + "); n != 20 {
		t.Errorf("check diff lists %d additions, want 20:\n%s", n, diff.String())
	}

	rep = Run(ctx, p, c.connect, Options{})
	if rep.Failed() {
		t.Fatalf("apply failed: %v", rep.Errors())
	}
	for i := range rep.Nodes {
		if rep.Nodes[i].Outcome != Applied || rep.Nodes[i].Added() != 4 {
			t.Errorf("%s: %s, %d added", rep.Nodes[i].Name, rep.Nodes[i].Outcome, rep.Nodes[i].Added())
		}
	}
	rep = Run(ctx, p, c.connect, Options{Check: true})
	if rep.Changes() {
		t.Error("check after apply still finds changes")
	}
}

func TestRunRollsBackEveryChangedNode(t *testing.T) {
	t.Parallel()
	for _, mode := range []RollbackMode{RollbackAll, RollbackHost, RollbackNone} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			nodes := labNodes(5)
			c := newFakeCluster(nodes)
			// A pre-existing route that the plan replaces must come back too.
			c.kernels["node-0"].routes = mustRoutes(t, "100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n")
			c.kernels["node-3"].failDst = "100.64.4.0/24"
			before := c.digests()
			rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Rollback: mode, Concurrency: 1})
			if !rep.Failed() {
				t.Fatal("run did not fail")
			}
			errs := fmt.Sprint(rep.Errors())
			if !strings.Contains(errs, "Nexthop has invalid gateway") || !strings.Contains(errs, "route replace 100.64.4.0/24") {
				t.Errorf("errors do not carry the kernel's message and line: %s", errs)
			}
			after := c.digests()
			for i := range rep.Nodes {
				n := rep.Nodes[i]
				same := before[n.Name] == after[n.Name]
				switch {
				case n.Name == "node-3" && mode != RollbackNone:
					if !same || !n.RolledBack || n.Outcome != Failed {
						t.Errorf("%s: same=%v outcome=%s rolledBack=%v", n.Name, same, n.Outcome, n.RolledBack)
					}
				case n.Outcome == Skipped:
					if !same {
						t.Errorf("%s was skipped but its table changed", n.Name)
					}
				case mode == RollbackAll:
					if !same || n.Outcome != RolledBack {
						t.Errorf("%s: same=%v outcome=%s", n.Name, same, n.Outcome)
					}
				case n.Name != "node-3":
					if same || n.Outcome != Applied {
						t.Errorf("mode %s: %s: same=%v outcome=%s, want it left applied", mode, n.Name, same, n.Outcome)
					}
				}
			}
		})
	}
}

// A node that applied and verified is disconnected at once (a thousand
// idle connections would be most of the memory of a run) and connected to
// again only to be rolled back; one that cannot be reached then is
// reported, and the others are still restored.
func TestRunReconnectsToRollBack(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	c := newFakeCluster(nodes)
	c.kernels["node-4"].failDst = "100.64.0.0/24"
	before := c.digests()
	var mu sync.Mutex
	connects := map[string]int{}
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		mu.Lock()
		defer mu.Unlock()
		connects[n.Name]++
		if n.Name == "node-1" && connects[n.Name] > 1 {
			return nil, fmt.Errorf("%s: dial tcp %s:22: connect: no route to host", n.Name, n.Address)
		}
		return c.kernels[n.Name], nil
	}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), connect, Options{Concurrency: 1})
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	after := c.digests()
	for _, n := range rep.Nodes {
		k := c.kernels[n.Name]
		switch n.Name {
		case "node-4": // failed: kept its connection to roll back
			if connects[n.Name] != 1 || n.Outcome != Failed || !n.RolledBack {
				t.Errorf("%s: %d connections, %s, rolled back %v", n.Name, connects[n.Name], n.Outcome, n.RolledBack)
			}
		case "node-1":
			if n.Outcome != RollbackFailed || !strings.Contains(fmt.Sprint(n.RollbackErr), "rollback: node-1: dial tcp") {
				t.Errorf("%s: %s, %v", n.Name, n.Outcome, n.RollbackErr)
			}
			if after[n.Name] == before[n.Name] {
				t.Errorf("%s was not reachable to roll back, yet its table is as before", n.Name)
			}
			continue
		default:
			if connects[n.Name] != 2 || n.Outcome != RolledBack {
				t.Errorf("%s: %d connections, %s", n.Name, connects[n.Name], n.Outcome)
			}
		}
		if after[n.Name] != before[n.Name] {
			t.Errorf("%s: table differs from before the run", n.Name)
		}
		if k.closed != connects[n.Name] {
			t.Errorf("%s: %d connections, %d closed", n.Name, connects[n.Name], k.closed)
		}
	}
}

func TestRunUnreachableNodeChangesNothing(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	c := newFakeCluster(nodes)
	c.unreachable["node-2"] = true
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{})
	if !rep.Failed() || !strings.Contains(fmt.Sprint(rep.Errors()), "node-2: dial tcp") {
		t.Fatalf("errors = %v", rep.Errors())
	}
	for name, k := range c.kernels {
		if k.applied != 0 {
			t.Errorf("%s received %d batches although node-2 was unreachable", name, k.applied)
		}
	}
}

func TestRunInterruptedRollsBack(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	before := c.digests()
	ctx, cancel := context.WithCancel(context.Background())
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		return &cancelAfterApply{fakeKernel: c.kernels[n.Name], cancel: cancel}, nil
	}
	rep := Run(ctx, NewPlan(nodes, DefaultProtocol), connect, Options{Concurrency: 1})
	if rep.Err == nil || !rep.Failed() {
		t.Fatalf("interrupted run: Err=%v", rep.Err)
	}
	if after := c.digests(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("interrupted run left changes behind")
	}
}

// cancelAfterApply cancels the run once the first batch has landed, like a
// Ctrl-C in the middle of a run.
type cancelAfterApply struct {
	*fakeKernel
	cancel context.CancelFunc
}

func (h *cancelAfterApply) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family) (route.Table, error, error) {
	t, applyErr, err := h.fakeKernel.Apply(ctx, batch, force, fams)
	h.cancel()
	return t, applyErr, err
}
