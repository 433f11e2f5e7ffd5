package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/route"
)

// Every node probes k others and is probed by k others; the choice is
// the same every time, whatever order the nodes come in.
func TestProbeTargetsRingEveryNode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, k, want int }{{6, 3, 3}, {3, 3, 2}, {2, 1, 1}, {5, ProbeAll, 4}, {1, 3, 0}} {
		targets := probeTargets(tc.n, tc.k)
		probedBy := make([]int, tc.n)
		for p, ts := range targets {
			if len(ts) != tc.want {
				t.Errorf("n=%d k=%d: %d probes %d, want %d", tc.n, tc.k, p, len(ts), tc.want)
			}
			for _, q := range ts {
				if q == p || len(slices.DeleteFunc(slices.Clone(ts), func(x int) bool { return x != q })) != 1 {
					t.Errorf("n=%d k=%d: %d probes %v", tc.n, tc.k, p, ts)
				}
				probedBy[q]++
			}
		}
		for q, c := range probedBy {
			if c != tc.want {
				t.Errorf("n=%d k=%d: %d probed by %d, want %d", tc.n, tc.k, q, c, tc.want)
			}
		}
	}
	names := []string{"a", "b", "c", "d", "e"}
	order := probeOrder(names)
	rev := slices.Clone(names)
	slices.Reverse(rev)
	var fwd, back []string
	for _, i := range order {
		fwd = append(fwd, names[i])
	}
	for _, i := range probeOrder(rev) {
		back = append(back, rev[i])
	}
	if !slices.Equal(fwd, back) {
		t.Errorf("order depends on the input's: %v and %v", fwd, back)
	}
}

// withPodAddresses gives every fake node the facts of a lab node: its
// pod address on lo, forwarding on.
func withPodAddresses(c *fakeCluster, nodes int) {
	for i := range nodes {
		c.kernels[fmt.Sprintf("node-%d", i)].facts = &route.Facts{
			Netconf:   []route.Netconf{{Family: route.IPv4, Interface: "all", Forwarding: true}},
			Addresses: []route.Address{{Interface: "lo", Prefix: netip.MustParsePrefix(fmt.Sprintf("100.64.%d.1/32", i))}},
		}
	}
}

// After apply, K×N pairs are probed and pass; an address that answers
// nothing fails exactly the K pairs that probe it, each with a cause;
// the run itself still succeeds and nothing is rolled back.
func TestRunProbesKPairsPerNode(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	withPodAddresses(c, 6)
	p := NewPlan(nodes, DefaultProtocol)
	rep := Run(context.Background(), p, c.connect, Options{Probe: 3})
	if rep.Failed() || rep.Probe == nil {
		t.Fatalf("failed=%v probe=%v: %v", rep.Failed(), rep.Probe, rep.Errors())
	}
	if pairs, passed, failed := rep.Probe.Counts(); pairs != 18 || passed != 18 || failed != 0 {
		t.Errorf("pairs %d passed %d failed %d, want 18 18 0", pairs, passed, failed)
	}
	for name, k := range c.kernels {
		if k.probes != 1 || k.connects != 1 {
			t.Errorf("%s: %d probes over %d connections, want 1 over the run's one", name, k.probes, k.connects)
		}
	}

	// node-4's pod address drops echo requests from everyone; the
	// converged lab probes again over held in-sync connections.
	dead := netip.MustParseAddr("100.64.4.1")
	for _, k := range c.kernels {
		k.unanswered = map[netip.Addr]bool{dead: true}
	}
	c.kernels["node-4"].facts.Forward = []route.ForwardChain{{Family: route.IPv4, Tool: "iptables", Table: "filter", Chain: "FORWARD", Drop: true}}
	rep = Run(context.Background(), p, c.connect, Options{Probe: 3})
	_, _, failed := rep.Probe.Counts()
	if failed != 3 {
		t.Errorf("%d failed pairs, want the 3 that probe node-4", failed)
	}
	for _, q := range rep.Probe.Pairs {
		if q.Passed() == (q.To == "node-4") {
			t.Errorf("%s -> %s passed=%v", q.From, q.To, q.Passed())
		}
		if !q.Passed() && !strings.Contains(q.Cause, "node-4: forward-drop") {
			t.Errorf("%s -> %s: cause %q, want node-4's finding", q.From, q.To, q.Cause)
		}
	}
	var out strings.Builder
	rep.WriteSummary(&out)
	rep.WriteProbe(&out, true)
	for _, want := range []string{"probe: 18 pairs, 15 answered, 3 did not", "PROBE FAILED", "100.64.4.1", "probe matrix"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "X") - 1; n != 3 { // the legend's X
		t.Errorf("matrix has %d X, want 3:\n%s", n, out.String())
	}
}

// A node without a pod address is left out of the probe and said so; a
// run that fails probes nothing; a probe that cannot run fails its
// pairs, not the run.
func TestRunProbeLeavesOutWhatItCannotProbe(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	withPodAddresses(c, 4)
	c.kernels["node-2"].facts.Addresses = nil
	c.kernels["node-1"].probeErr = fmt.Errorf("node-1: sh: ping: not found")
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Probe: ProbeAll, Check: true})
	if rep.Probe == nil {
		t.Fatal("no probe")
	}
	if why := rep.Probe.Skipped["node-2"]; why != "no address in its pod CIDR" {
		t.Errorf("node-2 skipped for %q", why)
	}
	pairs, _, failed := rep.Probe.Counts()
	if pairs != 6 || failed != 2 {
		t.Errorf("%d pairs, %d failed; want 6 (3 nodes, every pair) and node-1's 2", pairs, failed)
	}
	for _, q := range rep.Probe.Pairs {
		if !q.Passed() && (q.From != "node-1" || !strings.Contains(q.Err, "ping: not found")) {
			t.Errorf("%+v", q)
		}
	}
	for _, k := range c.kernels {
		if k.applied != 0 {
			t.Errorf("check applied a batch")
		}
	}

	c.kernels["node-3"].failDst = "100.64.0.0/24"
	rep = Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Probe: 3})
	if !rep.Failed() || rep.Probe != nil {
		t.Errorf("a failed run probed: failed=%v probe=%v", rep.Failed(), rep.Probe)
	}
}

// A probe that fails, and an interrupt during the probe, come after every
// node verified: nothing is rolled back for either; the interrupt is
// reported, and no lock is left. Nodes in sync are probed over the
// connection that read them, their lock let go of at once.
func TestRunProbeRollsNothingBack(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	c := newFakeCluster(nodes)
	withPodAddresses(c, 5)
	p := NewPlan(nodes, DefaultProtocol)
	holder := func() Holder {
		return Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	}
	// node-0 and node-1 are in sync already.
	if rep := Run(context.Background(), p, c.connect, Options{Limit: func(n string) bool { return n == "node-0" || n == "node-1" }}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	for _, k := range c.kernels {
		k.connects = 0
		k.unanswered = map[netip.Addr]bool{netip.MustParseAddr("100.64.4.1"): true} // node-4's drops pings
	}
	rep := Run(context.Background(), p, c.connect, Options{Probe: 2, Holder: holder()})
	if rep.Failed() || !rep.ProbeFailed() {
		t.Fatalf("failed=%v probeFailed=%v: %v", rep.Failed(), rep.ProbeFailed(), rep.Errors())
	}
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		want := Changed
		if n.Name == "node-0" || n.Name == "node-1" {
			want = InSync
		}
		if n.Outcome != want || n.RolledBack {
			t.Errorf("%s: %s (rolled back %v), want %s", n.Name, n.Outcome, n.RolledBack, want)
		}
		k := c.kernels[n.Name]
		if k.lock != nil || k.connects != 1 {
			t.Errorf("%s: lock %q, %d connections; want none left and one", n.Name, k.lock, k.connects)
		}
		if want == InSync && k.lockedAtProbe {
			t.Errorf("%s is in sync, yet its lock was held through the probe", n.Name)
		}
	}

	// From empty again, interrupted while probing.
	c = newFakeCluster(nodes)
	withPodAddresses(c, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.kernels["node-2"].onProbe = cancel
	before := c.digests()
	rep = Run(ctx, p, c.connect, Options{Probe: 2, Holder: holder()})
	if rep.Err == nil || !errors.Is(rep.Err, context.Canceled) {
		t.Errorf("the interrupt is not reported: %v", rep.Err)
	}
	for name, d := range c.digests() {
		if d == before[name] {
			t.Errorf("%s: rolled back by an interrupt during the probe", name)
		}
		if k := c.kernels[name]; k.lock != nil {
			t.Errorf("%s: lock left", name)
		}
	}
	for i := range rep.Nodes {
		if rep.Nodes[i].Outcome != Changed {
			t.Errorf("%s: %s, want changed", rep.Nodes[i].Name, rep.Nodes[i].Outcome)
		}
	}
}

// --preflight strict refuses what it could not read as well as what it
// found: it vouches for every node it lets through.
func TestPreflightStrictRefusesWhatItCouldNotRead(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	withPodAddresses(c, 3)
	c.kernels["node-1"].facts.Unread = []string{"FORWARD policy: sudo: a password is required"}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Preflight: PreflightStrict})
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if refused := n.Outcome == Refused; refused != (n.Name == "node-1") {
			t.Errorf("%s: %s", n.Name, n.Outcome)
		}
	}
	for _, k := range c.kernels {
		if k.applied != 0 {
			t.Errorf("%s: a batch went", k.name)
		}
	}
	if err := rep.Nodes[1].Err; err == nil || !strings.Contains(err.Error(), "not read: FORWARD policy: sudo: a password is required") {
		t.Errorf("node-1: %v", err)
	}
}
