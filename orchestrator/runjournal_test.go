package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// A run that died part-way (here: left applied with --rollback none, and
// its lock still on node-1) is undone from the nodes' records alone.
func TestRestoreFromRecords(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].seed(t, "100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n")
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

func (h *lostAfterApply) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	res, err := h.fakeKernel.Apply(ctx, batch, force, fams, expect)
	if !*h.lost {
		*h.lost = true
		return host.ApplyResult{}, &host.LostError{Err: errors.New("connection lost")}
	}
	return res, err
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
	if rep.Failed() || rep.Nodes[1].Outcome != Changed || connects != 2 {
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

// A node that restarted since a run that changed only its kernel's
// tables has nothing of that run left: `routepush rollback` finds it
// restarted, releases the lock the run left and sends it nothing; the
// other nodes are undone as before.
func TestRestoreLeavesARestartedNodeAlone(t *testing.T) {
	t.Parallel()
	c, dead, before := deadRunThenRestart(t)
	restarted := c.kernels["node-1"]
	restarted.lock = dead.lockText()
	left := c.digests()["node-1"]
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), labNodes(4), c.restoreConnect, RestoreOptions{Holder: self, RunID: dead.RunID})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore: %v, %v", err, rep.Errors())
	}
	after := c.digests()
	for _, n := range rep.Nodes {
		switch {
		case n.Name == "node-1":
			if n.Found != StateRestarted || after[n.Name] != left || restarted.lock != nil || restarted.applied != 1 {
				t.Errorf("node-1: found %s, now %s, table untouched %v, lock %q, %d batches (want restarted, untouched, unlocked, the run's 1)", n.Found, n.Outcome, after[n.Name] == left, restarted.lock, restarted.applied)
			}
		case n.Outcome != StateRolledBack || before[n.Name] != after[n.Name]:
			t.Errorf("%s: found %s, now %s, restored %v", n.Name, n.Found, n.Outcome, before[n.Name] == after[n.Name])
		}
	}
}

// A record cut short by a crash of the node (not synced, it may be left
// with no content) is no run to undo, nor one to keep: the node is found
// restarted, and sent nothing.
func TestRestoreSkipsARecordCutShort(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	k := c.kernels["node-1"]
	if k.synced != 0 {
		t.Fatalf("%d synced record writes: the case is not what it says", k.synced)
	}
	k.runs[holder.RunID] = nil
	left := c.digests()["node-1"]
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore after node-1's record was cut short: %v, node errors %v", err, rep.Errors())
	}
	if n := rep.Nodes[1]; n.Found != StateRestarted || c.digests()["node-1"] != left {
		t.Errorf("node-1: found %q, now %q, table untouched %v", n.Found, n.Outcome, c.digests()["node-1"] == left)
	}
	if n := rep.Nodes[0]; n.Outcome != StateRolledBack {
		t.Errorf("node-0: found %q, now %q", n.Found, n.Outcome)
	}
	if !settledRecord(nil) {
		t.Error("a record cut short is kept by pruning")
	}
}

// Only a run that changed nothing but the kernel's tables is gone with a
// restart: one that wrote the routes file is not.
func TestRestartedSince(t *testing.T) {
	const a, b = bootA, bootB
	for _, c := range []struct {
		rec  RunRecord
		boot string
		want bool
	}{
		{RunRecord{Boot: a}, b, true},
		{RunRecord{Boot: a}, a, false},
		{RunRecord{Boot: a, Persist: &PersistRecord{}}, b, false},
		{RunRecord{}, b, false}, // written before records said
		{RunRecord{Boot: a}, "", false},
	} {
		if got := c.rec.restartedSince(c.boot); got != c.want {
			t.Errorf("%+v booted %q: %v, want %v", c.rec, c.boot, got, c.want)
		}
	}
}

// A node restarted since a run is found restarted, unless it restarted
// before the run's last state there (the run reconnected after the
// restart and changed it again), or the rollback is forced: then the run
// is undone as any other. Without --run, the restarted run is the node's
// answer, not the one before it.
func TestRestartedUnlessChangedSinceOrForced(t *testing.T) {
	t.Parallel()
	const a, b = bootA, bootB
	ctx := context.Background()
	for _, c := range []struct {
		name        string
		stateBoot   string // the boot the run's last state was reached in
		force       bool
		runID       bool // --run
		wantFound   RunState
		wantRestore bool
	}{
		{"restarted since", a, false, true, StateRestarted, false},
		{"restarted since, no --run", a, false, false, StateRestarted, false},
		{"changed again after the restart", b, false, true, StateFailed, true},
		{"forced", a, true, true, StateFailed, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			nodes := labNodes(3)
			fc := newFakeCluster(nodes)
			for _, k := range fc.kernels {
				k.boot = a
			}
			// An older run, verified, that the restarted one follows.
			older := Holder{RunID: NewRunID(time.Now().Add(-time.Hour)), Host: "bastion", PID: 1, Started: time.Now()}
			if rep := Run(ctx, NewPlan(nodes[:2], DefaultProtocol), fc.connect, Options{Holder: older}); rep.Failed() {
				t.Fatal(rep.Errors())
			}
			k := fc.kernels["node-1"]
			k.failDst = "100.64.2.0/24"
			run := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
			if rep := Run(ctx, NewPlan(nodes, DefaultProtocol), fc.connect, Options{Holder: run, Rollback: RollbackNone}); !rep.Failed() {
				t.Fatal("run did not fail")
			}
			k.failDst = ""
			if c.stateBoot == b {
				k.runs[run.RunID] = append(k.runs[run.RunID], marshalState(StateFailed, time.Now(), nil, nil, b)...)
			}
			k.boot = b
			opts := RestoreOptions{Holder: Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}, Force: c.force}
			if c.runID {
				opts.RunID = run.RunID
			}
			rep, err := Restore(ctx, nodes[1:2], fc.restoreConnect, opts)
			if err != nil {
				t.Fatal(err)
			}
			n := rep.Nodes[0]
			if n.RunID != run.RunID || n.Found != c.wantFound || (n.Outcome == StateRolledBack) != c.wantRestore {
				t.Errorf("node-1: run %s found %s, now %s; want run %s found %s, restored %v", n.RunID, n.Found, n.Outcome, run.RunID, c.wantFound, c.wantRestore)
			}
		})
	}
}
