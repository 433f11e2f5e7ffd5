package orchestrator

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A run locks a node after reading it, and only if it will change it or
// the read could not say the node has no lock: a converged cluster costs
// no lock (no SFTP) but on the first node by name, locked alone first.
func TestInSyncNodesAreNotLocked(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	p := NewPlan(nodes, DefaultProtocol)
	if rep := Run(context.Background(), p, c.connect, journaled()); rep.Failed() {
		t.Fatalf("first run: %v", rep.Errors())
	}
	for _, k := range c.kernels {
		if k.locks != 1 || k.lock != nil {
			t.Errorf("%s: first run locked %d times, lock left %q; want once, released", k.name, k.locks, k.lock)
		}
		k.locks = 0
	}
	rep := Run(context.Background(), p, c.connect, journaled())
	for _, n := range rep.Nodes {
		k := c.kernels[n.Name]
		want := 0
		if n.Name == "node-0" {
			want = 1 // locked alone, before its read
		}
		if n.Outcome != InSync || k.locks != want || k.lock != nil {
			t.Errorf("%s: %s, locked %d times (want %d), lock left %q", n.Name, n.Outcome, k.locks, want, k.lock)
		}
	}
}

// A node in sync that another run (or a dead one) holds is still
// refused: its read saw the lock, so the run asks for it.
func TestInSyncNodeWithALockIsStillRefused(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	p := NewPlan(nodes, DefaultProtocol)
	if rep := Run(context.Background(), p, c.connect, journaled()); rep.Failed() {
		t.Fatalf("first run: %v", rep.Errors())
	}
	other := Holder{RunID: "20261126T101010.000Z-abcdef", Host: "elsewhere", PID: 7}
	c.kernels["node-2"].lock = other.lockText()
	rep := Run(context.Background(), p, c.connect, journaled())
	n := rep.Nodes[2]
	if n.Outcome != Failed || n.Err == nil || !strings.Contains(n.Err.Error(), "node-2: locked by") {
		t.Fatalf("node-2: %s, %v; want failed, locked by the other run", n.Outcome, n.Err)
	}
	if string(c.kernels["node-2"].lock) != string(other.lockText()) {
		t.Errorf("node-2's lock is now %q", c.kernels["node-2"].lock)
	}
}

// Where a read cannot look for the lock (become), every node is locked,
// in sync or not, and released.
func TestNodesThatCannotLookAreLocked(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.cannotLook = true
	}
	p := NewPlan(nodes, DefaultProtocol)
	for run := range 2 {
		rep := Run(context.Background(), p, c.connect, journaled())
		for _, n := range rep.Nodes {
			k := c.kernels[n.Name]
			if rep.Failed() || k.locks != 1 || k.lock != nil {
				t.Errorf("run %d, %s: %s, locked %d times, lock left %q", run, n.Name, n.Outcome, k.locks, k.lock)
			}
			k.locks = 0
		}
	}
}

// A node whose lock the run waited for is read again under it: the run
// that held it changed the node meanwhile, and the batch is planned from
// the node as it is now, not refused as changed since the first read.
func TestLockWaitedForRereadsTheNode(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	other := Holder{RunID: "20261126T101010.000Z-abcdef", Host: "bastion", PID: 7}
	k := c.kernels["node-2"]
	k.lock = other.lockText()
	go func() {
		time.Sleep(300 * time.Millisecond)
		k.mu.Lock()
		k.seed(t, "100.64.0.0/24 via 198.18.0.10 dev eth0 proto 114 scope global")
		k.mu.Unlock()
		_ = k.Unlock(context.Background(), other.lockText())
	}()
	opts := journaled()
	opts.WaitLock = 5 * time.Second
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, opts)
	if rep.Failed() {
		t.Fatalf("run failed although the lock was released: %v", rep.Errors())
	}
	n := rep.Nodes[2]
	if n.Outcome != Changed || n.Diff.Add.Len() != 1 {
		t.Errorf("node-2: %s, %d added; want changed, 1 added (the other was the other run's)", n.Outcome, n.Diff.Add.Len())
	}
	if k.lock != nil {
		t.Errorf("node-2's lock left: %q", k.lock)
	}
}

// Between a node's read and its lock, another run (whose lock the read
// saw, or which took it after the read) adds a route this run plans and
// releases the node before this run's first try: the lock is taken at
// once, and the node is read again under it all the same. So the run
// changes it (not refused as changed since its read), and its record,
// made from the node as locked, is one whose rollback after a kill -9
// before the batch leaves the other run's route alone.
func staleBetweenReadAndLock(t *testing.T, lockedAtRead bool) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	other := Holder{RunID: "20261126T101010.000Z-abcdef", Host: "elsewhere", PID: 7}
	k := c.kernels["node-2"]
	if lockedAtRead {
		k.lock = other.lockText()
	}
	var once sync.Once
	k.beforeLock = func(k *fakeKernel) {
		once.Do(func() {
			k.mu.Lock()
			k.seed(t, "100.64.0.0/24 via 198.18.0.10 dev eth0 proto 114 scope global")
			k.lock = nil
			k.mu.Unlock()
		})
	}
	opts := journaled()
	var record []byte // as the batch arrives: what a kill -9 then leaves
	reads := 0        // reads before it
	k.beforeApply = func(k *fakeKernel) {
		if record == nil {
			record, reads = slices.Clone(k.runs[opts.Holder.RunID]), k.reads
		}
	}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, opts)
	n := rep.Nodes[2]
	if rep.Failed() || n.Outcome != Changed || n.Diff.Add.Len() != 1 || reads != 2 {
		t.Fatalf("node-2: %s, %d added, read %d times before its batch, %v; want changed, 1 added, read twice", n.Outcome, n.Diff.Add.Len(), reads, rep.Errors())
	}
	has := func() bool {
		return slices.ContainsFunc(k.routes, func(r kroute) bool { return r.dst.String() == "100.64.0.0/24" })
	}
	// A kill -9 just before node-2's batch: its record says applying,
	// the lock is the run's; `routepush rollback --run` follows.
	k.routes = slices.DeleteFunc(k.routes, func(r kroute) bool { return r.dst.String() != "100.64.0.0/24" })
	k.runs[opts.Holder.RunID] = record
	k.lock = opts.Holder.lockText()
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	if _, err := Restore(context.Background(), nodes[2:], c.restoreConnect, RestoreOptions{Holder: self, RunID: opts.Holder.RunID}); err != nil {
		t.Fatal(err)
	}
	if !has() {
		t.Errorf("the rollback of a run that never sent node-2 its batch deleted the other run's route")
	}
}

func TestLockReleasedBeforeTheFirstTryRereads(t *testing.T) { staleBetweenReadAndLock(t, true) }
func TestChangedBetweenReadAndLockRereads(t *testing.T)     { staleBetweenReadAndLock(t, false) }

// The read under the lock fails: the node fails, and its lock is
// released.
func TestRereadFailingReleasesTheLock(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	k := c.kernels["node-2"]
	k.failReadOn = 2
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, journaled())
	if n := rep.Nodes[2]; n.Outcome != Failed || !strings.Contains(n.Err.Error(), "connection lost") {
		t.Errorf("node-2: %s, %v; want failed, its read under the lock lost", n.Outcome, n.Err)
	}
	for _, kk := range c.kernels {
		if kk.lock != nil || kk.applied != 0 {
			t.Errorf("%s: lock left %q, %d batches", kk.name, kk.lock, kk.applied)
		}
	}
}

// Ctrl-C while a node read first waits for another run's lock: the run
// ends at once, sends nothing, leaves no lock of its own and the other
// run's as it was.
func TestInterruptWhileWaitingForALockAfterTheRead(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	other := Holder{RunID: "20261126T101010.000Z-abcdef", Host: "elsewhere", PID: 7}
	c.kernels["node-2"].lock = other.lockText()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	opts := journaled()
	opts.WaitLock = time.Minute
	t0 := time.Now()
	Run(ctx, NewPlan(nodes, DefaultProtocol), c.connect, opts)
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("the run took %s after the interrupt", d)
	}
	for _, kk := range c.kernels {
		want := []byte(nil)
		if kk.name == "node-2" {
			want = other.lockText()
		}
		if string(kk.lock) != string(want) || kk.applied != 0 {
			t.Errorf("%s: lock %q, %d batches", kk.name, kk.lock, kk.applied)
		}
	}
}
