package orchestrator

import (
	"context"
	"strings"
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
