package orchestrator

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
	"github.com/routepush/routepush/test/reportschema"
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
			c.kernels["node-0"].routes = append(c.kernels["node-0"].routes, mustRoutes(t, "100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n")...)
			c.kernels["node-3"].failDst = "100.64.4.0/24"
			before := c.digests()
			plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true})
			rep := Run(context.Background(), plan, c.connect, Options{Rollback: mode, Concurrency: 1})
			if !rep.Failed() {
				t.Fatal("run did not fail")
			}
			errs := fmt.Sprint(rep.Errors())
			if !strings.Contains(errs, "Nexthop has invalid gateway") || !strings.Contains(errs, "route add 100.64.4.0/24") {
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
				case n.Name == "node-3":
					// Left as the failed batch left it: the lines
					// before the refused one are in.
					if same || n.RolledBack || n.Outcome != Failed {
						t.Errorf("mode none: %s: same=%v outcome=%s rolledBack=%v, want it failed and left half-applied", n.Name, same, n.Outcome, n.RolledBack)
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

// A node that applied and verified keeps its connection and its lock until
// the run's outcome is final: rolled back over the same connection, never
// connected to again, never found locked by its own run.
func TestRunKeepsVerifiedNodesUntilTheEnd(t *testing.T) {
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
		return c.kernels[n.Name], nil
	}
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), connect, Options{Holder: holder, Concurrency: 1})
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	after := c.digests()
	for _, n := range rep.Nodes {
		k := c.kernels[n.Name]
		want := RolledBack
		if n.Name == "node-4" {
			want = Failed
		}
		if connects[n.Name] != 1 || n.Outcome != want || !n.RolledBack || n.RollbackErr != nil {
			t.Errorf("%s: %d connections, %s, rolled back %v, %v", n.Name, connects[n.Name], n.Outcome, n.RolledBack, n.RollbackErr)
		}
		if after[n.Name] != before[n.Name] {
			t.Errorf("%s: table differs from before the run", n.Name)
		}
		if k.closed != 1 || k.lock != nil {
			t.Errorf("%s: closed %d times, lock %q", n.Name, k.closed, k.lock)
		}
	}
}

func TestRunRecordsEveryStateAndReleasesLocks(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-3"].failDst = "100.64.2.0/24"
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, Concurrency: 1})
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	for name, k := range c.kernels {
		if k.lock != nil {
			t.Errorf("%s still locked: %s", name, k.lock)
		}
		rec, err := ParseRunRecord(k.runs[holder.RunID])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rec.State != StateRolledBack || rec.Holder.PID != 42 || !strings.Contains(rec.Undo, "route del 100.64.") || !strings.Contains(rec.Apply, "route add 100.64.") {
			t.Errorf("%s: record %+v", name, rec)
		}
		states := regexp.MustCompile(`"state":"([a-z-]+)"`).FindAllStringSubmatch(string(k.runs[holder.RunID]), -1)
		var got []string
		for _, s := range states {
			got = append(got, s[1])
		}
		want := "applying verified rolled-back"
		if name == "node-3" {
			want = "applying failed rolled-back"
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s went through %v, want %s", name, got, want)
		}
	}
}

// A state the run could not append to a node's record fails the run
// (exit 1, the node's error says so) and changes nothing that was done:
// the node stays changed and verified, nothing is rolled back.
func TestRunReportsAStateItCouldNotRecord(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].failAppend = true
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, Concurrency: 1})
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if n.Outcome != Applied || n.RolledBack {
			t.Errorf("%s: outcome %s, rolled back %v; want changed, not rolled back", n.Name, n.Outcome, n.RolledBack)
		}
		if (n.RecordErr != nil) != (n.Name == "node-1") {
			t.Errorf("%s: record error %v", n.Name, n.RecordErr)
		}
	}
	j := rep.JSON(holder.RunID)
	if !j.Failed || !strings.Contains(j.Nodes[1].Error, "node-1: could not record state verified: node-1: append to") {
		t.Errorf("JSON report: failed %v, node-1's error %q", j.Failed, j.Nodes[1].Error)
	}
}

// A lock the run could not release stays on the node, and the next run
// is refused there: the run fails (exit 1) and says which node, though
// every node's routes are as its outcome says.
func TestRunReportsALockItCouldNotRelease(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	c.kernels["node-2"].failUnlock = true
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, Concurrency: 1})
	if c.kernels["node-2"].lock == nil {
		t.Fatal("the fake released the lock anyway")
	}
	if !rep.Failed() {
		t.Error("run with node-2's lock left behind did not fail")
	}
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if n.Outcome != Applied || n.RolledBack {
			t.Errorf("%s: outcome %s, rolled back %v; want changed, not rolled back", n.Name, n.Outcome, n.RolledBack)
		}
		if (n.RecordErr != nil) != (n.Name == "node-2") {
			t.Errorf("%s: record error %v", n.Name, n.RecordErr)
		}
	}
	if err := fmt.Sprint(rep.Errors()); !strings.Contains(err, "node-2: could not release its lock") {
		t.Errorf("errors: %s", err)
	}
}

func TestRunRefusesLockedNode(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	other := Holder{RunID: "20261126T101010.000Z-abcdef", Host: "bastion", PID: 7, Started: time.Now()}
	c.kernels["node-2"].lock = other.lockText()
	self := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: self, ProcessAlive: func(int) bool { return false }})
	err := fmt.Sprint(rep.Errors())
	if !rep.Failed() || !strings.Contains(err, "node-2: locked by run 20261126T101010.000Z-abcdef (routepush pid 7 on bastion") ||
		!strings.Contains(err, "that process is gone: `routepush rollback --run 20261126T101010.000Z-abcdef`") {
		t.Errorf("errors = %s", err)
	}
	for name, k := range c.kernels {
		if k.applied != 0 {
			t.Errorf("%s was changed", name)
		}
		if name != "node-2" && k.lock != nil {
			t.Errorf("%s still locked", name)
		}
	}
	if string(c.kernels["node-2"].lock) != string(other.lockText()) {
		t.Error("the other run's lock was touched")
	}
}

// A run that died part-way (here: left applied with --rollback none, and
// its lock still on node-1) is undone from the nodes' records alone.
func TestRestoreFromRecords(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].routes = append(c.kernels["node-0"].routes, mustRoutes(t, "100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n")...)
	c.kernels["node-3"].failDst = "100.64.2.0/24"
	before := c.digests()
	dead := Holder{RunID: NewRunID(time.Now()), Host: "old-bastion", PID: 1, Started: time.Now()}
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true})
	if rep := Run(context.Background(), plan, c.connect, Options{Holder: dead, Rollback: RollbackNone, Concurrency: 1}); !rep.Failed() {
		t.Fatal("run did not fail")
	}
	c.kernels["node-1"].lock = dead.lockText()
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "new-bastion", PID: 2, Started: time.Now()}
	// The dead run's lock is another host's: only --force takes it over.
	// The other nodes are restored meanwhile: each node stands alone.
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil || !strings.Contains(fmt.Sprint(rep.Errors()), "node-1: locked by run "+dead.RunID) || len(rep.Errors()) != 1 {
		t.Fatalf("Restore without --force: %v, %v", err, rep.Errors())
	}
	rep2, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self, Force: true})
	if err != nil || rep2.Failed() || fmt.Sprint(rep2.RunIDs()) != fmt.Sprint([]string{dead.RunID}) {
		t.Fatalf("Restore --force: %v, %v, runs %v", err, rep2.Errors(), rep2.RunIDs())
	}
	after := c.digests()
	for i, n := range rep.Nodes {
		if n.Name == "node-1" {
			n = rep2.Nodes[i]
		}
		if n.Outcome != StateRolledBack || before[n.Name] != after[n.Name] {
			t.Errorf("%s: found %s, now %s, restored %v", n.Name, n.Found, n.Outcome, before[n.Name] == after[n.Name])
		}
		if k := c.kernels[n.Name]; k.lock != nil {
			t.Errorf("%s still locked: %s", n.Name, k.lock)
		}
	}
	// Nothing left to roll back.
	if _, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self}); err == nil || !strings.Contains(err.Error(), "no node has a run to roll back") {
		t.Errorf("second Restore: %v", err)
	}
}

func TestRunWaitsForALock(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	other := Holder{RunID: "20261126T101010.000Z-abcdef", Host: "bastion", PID: 7}
	c.kernels["node-1"].lock = other.lockText()
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = c.kernels["node-1"].Unlock(context.Background(), other.lockText())
	}()
	self := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: self, WaitLock: 5 * time.Second})
	if rep.Failed() {
		t.Fatalf("run failed although the lock was released: %v", rep.Errors())
	}
}

// lostAfterApply applies the batch, then loses the connection before ip's
// answer, once.
type lostAfterApply struct {
	*fakeKernel
	lost *bool
}

type fakeLost struct{}

func (fakeLost) Error() string { return "connection lost" }
func (fakeLost) Lost() bool    { return true }

func (h *lostAfterApply) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (route.Table, error, error) {
	t, applyErr, err := h.fakeKernel.Apply(ctx, batch, force, fams, expect)
	if !*h.lost {
		*h.lost = true
		return route.Table{}, fakeLost{}, fakeLost{}
	}
	return t, applyErr, err
}

// A connection lost after the batch landed: the node is reached again,
// its table verifies, and the run succeeds.
func TestRunReconnectsAfterALostBatch(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	lost := false
	connects := 0
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		if n.Name == "node-1" {
			connects++
			return &lostAfterApply{c.kernels[n.Name], &lost}, nil
		}
		return c.kernels[n.Name], nil
	}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), connect, Options{Concurrency: 1})
	if rep.Failed() || rep.Nodes[1].Outcome != Applied || connects != 2 {
		t.Errorf("outcome %s after %d connections; errors %v", rep.Nodes[1].Outcome, connects, rep.Errors())
	}
}

// With --canary 2, a failing canary stops the run before any other node
// gets a batch.
func TestRunCanaryFirst(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].failDst = "100.64.0.0/24"
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Canary: 2, Concurrency: 1})
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	for _, n := range []string{"node-2", "node-3", "node-4"} {
		if c.kernels[n].applied != 0 {
			t.Errorf("%s got a batch although a canary failed", n)
		}
	}
	if c.kernels["node-0"].applied == 0 {
		t.Error("canary node-0 got no batch")
	}
	c.kernels["node-1"].failDst = ""
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Canary: 2, Concurrency: 1}); rep.Failed() {
		t.Errorf("run with good canaries: %v", rep.Errors())
	}
}

// The --output json document of a check, of an adopting apply and of a
// failed one (rolled back) each match the checked-in schema.
func TestJSONReportMatchesSchema(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].routes = append(c.kernels["node-0"].routes, mustRoutes(t, foreignTable)...)
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true, Prune: true})
	check := Run(context.Background(), plan, c.connect, Options{Check: true, Persist: true})
	c.kernels["node-3"].failDst = "100.64.0.0/24"
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1}
	failed := Run(context.Background(), plan, c.connect, Options{Holder: holder, Concurrency: 1, Persist: true})
	for name, j := range map[string]JSONReport{"check": check.JSON(""), "failed apply": failed.JSON(holder.RunID)} {
		doc, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := reportschema.Validate(doc); err != nil {
			t.Errorf("%s: %v\n%s", name, err, doc)
		}
	}
	if err := reportschema.Validate([]byte(`{"schema_version": 1}`)); err == nil {
		t.Error("the schema accepts a document without nodes")
	}
	j := check.JSON("")
	if n := j.Nodes[0]; len(n.Removed) != 3 || len(n.Kept) != 2 || len(n.Changed) != 1 || n.Changed[0].From.Protocol != 3 {
		t.Errorf("node-0 in JSON: %+v", n)
	}
	if p := j.Nodes[1].Persist; p == nil || len(p.Drift) != 2 || len(p.Warnings) != 1 || p.Written {
		t.Errorf("node-1's persist in JSON: %+v", p)
	}
	if f := failed.JSON(holder.RunID); !f.Failed || f.Nodes[3].Error == "" || !f.Nodes[0].RolledBack {
		t.Errorf("failed apply in JSON: %+v", f)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files")

// The --check diff, plain and coloured, against golden files: stable
// ordering, every kind of line.
func TestWriteDiffGolden(t *testing.T) {
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].routes = append(c.kernels["node-0"].routes, mustRoutes(t, foreignTable)...)
	c.kernels["node-2"].routes = append(c.kernels["node-2"].routes, mustRoutes(t, "unicast 100.64.0.0/24 via 198.18.0.10 dev eth0 proto 114 scope global\n")...)
	var b strings.Builder
	for _, o := range []PlanOptions{{Protocol: DefaultProtocol}, {Protocol: DefaultProtocol, Adopt: true, Prune: true}} {
		fmt.Fprintf(&b, "# adopt=%v prune=%v\n", o.Adopt, o.Prune)
		Run(context.Background(), NewPlanWith(nodes, o), c.connect, Options{Check: true}).WriteDiff(&b)
	}
	// --persist: no routes file, a stale one, systemd and networkd.
	c.kernels["node-1"].systemd = true
	c.kernels["node-2"].persisted = []byte("route replace 100.64.9.0/24 via 198.18.0.19 proto 114\n")
	c.kernels["node-3"].systemd, c.kernels["node-3"].networkd = true, true
	b.WriteString("# adopt=true persist=true\n")
	Run(context.Background(), NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true}), c.connect, Options{Check: true, Persist: true}).WriteDiff(&b)
	var colored strings.Builder
	Run(context.Background(), NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true}), c.connect, Options{Check: true}).WriteDiffColor(&colored, true)
	golden(t, "testdata/diff.golden", b.String())
	golden(t, "testdata/diff-color.golden", colored.String())
}

// The summary table of a check and of a failed apply, against a golden
// file: durations are set, everything else is what the run reported.
func TestWriteSummaryGolden(t *testing.T) {
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].systemd = true
	c.kernels["node-2"].networkd = true
	c.kernels["node-3"].failDst = "100.64.0.0/24"
	plan := NewPlan(nodes, DefaultProtocol)
	var b strings.Builder
	for _, o := range []Options{
		{Check: true, Persist: true, Limit: func(n string) bool { return n != "node-5" }},
		{Persist: true, Concurrency: 1, Limit: func(n string) bool { return n != "node-5" }},
	} {
		rep := Run(context.Background(), plan, c.connect, o)
		rep.Duration = 1234 * time.Millisecond
		for i := range rep.Nodes {
			rep.Nodes[i].Duration = time.Duration(i+1) * 111 * time.Millisecond
		}
		fmt.Fprintf(&b, "# check=%v\n", o.Check)
		rep.WriteSummary(&b)
	}
	golden(t, "testdata/summary.golden", b.String())
}

// golden compares got with a golden file, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./orchestrator -run Golden -update rewrites it):\n%s", name, got)
	}
}

// A verified node whose kept connection died before its rollback (nothing
// of the undo sent) is reached once more, under the run's lock, and
// rolled back: not left changed as "rollback failed" while reachable.
func TestRollbackReconnectsALostConnection(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-3"].failDst = "100.64.0.0/24"
	c.kernels["node-1"].lostApplies, c.kernels["node-1"].lostAfter = 1, 1
	before := c.digests()
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol})
	rep := Run(context.Background(), plan, c.connect, Options{Rollback: RollbackAll, Concurrency: 1})
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	after := c.digests()
	for _, n := range rep.Nodes {
		if n.Name != "node-1" {
			continue
		}
		if n.Outcome != RolledBack || n.RollbackErr != nil || after["node-1"] != before["node-1"] {
			t.Errorf("node-1: outcome %s, rollback error %v, restored %v; want rolled back over a new connection", n.Outcome, n.RollbackErr, after["node-1"] == before["node-1"])
		}
	}
	if got := c.kernels["node-1"].connects; got != 2 {
		t.Errorf("node-1 connected %d times, want 2 (the run's, then the rollback's)", got)
	}
	if c.kernels["node-1"].lock != nil {
		t.Errorf("node-1 still locked: %s", c.kernels["node-1"].lock)
	}
}
