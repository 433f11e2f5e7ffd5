package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A run whose process died left its lock on nodes: with Options.TakeOver
// saying it is gone, the next run undoes what it half did (a node whose
// record ends failed), releases the locks where it changed nothing (no
// record) or finished (verified), and converges every node; without
// TakeOver, or when TakeOver says the holder lives, the node stays
// refused and its lock untouched.
func TestRunTakesOverTheLocksOfADeadRun(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	plan := NewPlan(nodes, DefaultProtocol)
	dead := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 7, Started: time.Now()}
	// The dead run: node-3 failed half-way and was not rolled back; the
	// others verified. Its lock is then put back on node-1 (verified),
	// node-3 (failed) and node-2 (a lock without a record of that run).
	c.kernels["node-3"].failDst = "100.64.2.0/24"
	if rep := Run(context.Background(), plan, c.connect, Options{Holder: dead, Rollback: RollbackNone, Concurrency: 1}); !rep.Failed() {
		t.Fatal("the dead run did not fail")
	}
	c.kernels["node-3"].failDst = ""
	delete(c.kernels["node-2"].runs, dead.RunID)
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		c.kernels[n].lock = dead.lockText()
	}
	applied := map[string]int{}
	for n, k := range c.kernels {
		applied[n] = k.applied
	}

	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 42, Started: time.Now()}
	alive := Run(context.Background(), plan, c.connect, Options{Holder: self, TakeOver: func(Holder) bool { return false }})
	if err := fmt.Sprint(alive.Errors()); !alive.Failed() || !strings.Contains(err, "node-1: locked by run "+dead.RunID) {
		t.Fatalf("TakeOver saying the holder lives: errors %s", err)
	}
	if string(c.kernels["node-1"].lock) != string(dead.lockText()) {
		t.Fatal("a live holder's lock was touched")
	}

	var asked []Holder
	self.RunID = NewRunID(time.Now().Add(2 * time.Second))
	rep := Run(context.Background(), plan, c.connect, Options{Holder: self, TakeOver: func(h Holder) bool {
		asked = append(asked, h)
		return h.PID == dead.PID && h.Host == dead.Host
	}, Concurrency: 1})
	if rep.Failed() {
		t.Fatalf("run after taking over: %v", rep.Errors())
	}
	if len(asked) != 3 || asked[0].RunID != dead.RunID {
		t.Errorf("TakeOver asked about %v, want the dead run on 3 nodes", asked)
	}
	for name, k := range c.kernels {
		if k.lock != nil {
			t.Errorf("%s still locked: %s", name, k.lock)
		}
	}
	// node-3 was undone (its record says so), then converged; node-1
	// (verified) was not undone: only the record of node-3 grew.
	if rec := string(c.kernels["node-3"].runs[dead.RunID]); !strings.Contains(rec, `"state":"rolled-back"`) {
		t.Errorf("node-3's record of the dead run:\n%s", rec)
	}
	if rec := string(c.kernels["node-1"].runs[dead.RunID]); strings.Contains(rec, "rolled-back") {
		t.Errorf("node-1 (verified) was undone:\n%s", rec)
	}
	if d := c.kernels["node-1"].applied - applied["node-1"]; d != 0 {
		t.Errorf("node-1 got %d batches, want none (it was in sync)", d)
	}
	if d := c.kernels["node-3"].applied - applied["node-3"]; d != 2 {
		t.Errorf("node-3 got %d batches, want 2 (the undo, then its plan)", d)
	}
	check := Run(context.Background(), plan, c.connect, Options{Check: true})
	for _, n := range check.Nodes {
		if n.Outcome != InSync {
			t.Errorf("%s after taking over: %s", n.Name, n.Outcome)
		}
	}
}
