package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
)

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
		if rep.Nodes[i].Outcome != Changed || rep.Nodes[i].Added() != 4 {
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
			c.kernels["node-0"].seed(t, "100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n")
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
					if same || n.Outcome != Changed {
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
		if n.Outcome != Changed || n.RolledBack {
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
		if n.Outcome != Changed || n.RolledBack {
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

// An independent run (the watcher's): a node whose connect hangs holds
// back no other, a node whose batch fails is rolled back alone and
// stops nothing, and every other node converges and is released.
func TestRunIndependent(t *testing.T) {
	t.Parallel()
	nodes := labNodes(5)
	c := newFakeCluster(nodes)
	c.kernels["node-3"].failDst = "100.64.4.0/24"
	// node-2 has another owner's route to a planned destination: refused,
	// and so left exactly as it is.
	c.kernels["node-2"].seed(t, "100.64.1.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n")
	before := c.digests()
	release := make(chan struct{})
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		if n.Name == "node-0" { // first by name: a phased run locks it alone first
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, &host.UnreachableError{Err: fmt.Errorf("%s: i/o timeout", n.Name)}
		}
		return c.connect(ctx, n)
	}
	plan := NewPlan(nodes, DefaultProtocol)
	done := make(chan *Report, 1)
	go func() {
		done <- Run(context.Background(), plan, connect, Options{Independent: true, Holder: Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1}, Concurrency: 5,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	// node-1, node-2 and node-4 converge while node-0 hangs.
	deadline := time.After(10 * time.Second)
	for _, name := range []string{"node-1", "node-4"} {
		k := c.kernels[name]
		for {
			k.mu.Lock()
			n := len(k.routes)
			held := k.lock != nil
			k.mu.Unlock()
			if n == 5 && !held {
				break
			}
			select {
			case <-deadline:
				t.Fatalf("%s not converged and released while node-0 hangs", name)
			case <-time.After(time.Millisecond):
			}
		}
	}
	close(release)
	rep := <-done
	after := c.digests()
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		switch n.Name {
		case "node-0":
			if n.Outcome != Unreachable {
				t.Errorf("node-0: %s, want unreachable", n.Outcome)
			}
		case "node-3":
			if n.Outcome != Failed || !n.RolledBack || before[n.Name] != after[n.Name] {
				t.Errorf("node-3: %s, rolled back %v, restored %v", n.Outcome, n.RolledBack, before[n.Name] == after[n.Name])
			}
		case "node-2":
			if n.Outcome != Refused || before[n.Name] != after[n.Name] {
				t.Errorf("node-2: %s, unchanged %v; want refused and untouched", n.Outcome, before[n.Name] == after[n.Name])
			}
		default:
			if n.Outcome != Changed {
				t.Errorf("%s: %s, want changed", n.Name, n.Outcome)
			}
		}
	}
	for name, k := range c.kernels {
		if k.lock != nil {
			t.Errorf("%s still locked", name)
		}
	}
}

// Settling is bounded per node, from when its turn comes: a run whose
// nodes take longer to release, all together, than SettleTimeout still
// releases every one of them. One bound for the whole of settle left the
// last nodes of a large cluster locked.
func TestRunSettlesEveryNodeWithinItsOwnBound(t *testing.T) {
	t.Parallel()
	nodes := labNodes(8)
	c := newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.slowUnlock = 300 * time.Millisecond // one at a time: 2.4 s in all
	}
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	opts := Options{Holder: holder, Concurrency: 1, SettleTimeout: 2 * time.Second}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, opts)
	if rep.Failed() {
		t.Fatalf("run failed: %v", rep.Errors())
	}
	for name, k := range c.kernels {
		if k.lock != nil {
			t.Errorf("%s still locked after the run: %s", name, k.lock)
		}
	}
}

// The bound holds: a node whose release hangs is given up on after
// SettleTimeout, and the report says its lock stays.
func TestRunSettleBoundCutsAHungNode(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].slowUnlock = time.Hour
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	start := time.Now()
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, SettleTimeout: 200 * time.Millisecond})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the run took %s with one node's release hung", d)
	}
	if err := rep.Nodes[1].RecordErr; err == nil || !strings.Contains(err.Error(), "could not release its lock") {
		t.Errorf("node-1: %v, want its lock reported as left", err)
	}
}
