package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// Regression tests from the chaos review of nodes without SFTP (review
// branch review-chaos3): a node without SFTP losing its connection, and a
// node losing its SFTP server mid-run.

// lostMidBatch loses the connection under its first batch, once the batch
// reached the kernel.
type lostMidBatch struct {
	*fakeKernel
	done *bool
}

func (l *lostMidBatch) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	if *l.done || force {
		return l.fakeKernel.Apply(ctx, batch, force, fams, expect)
	}
	*l.done = true
	_, _ = l.fakeKernel.Apply(ctx, batch, force, fams, expect)
	return host.ApplyResult{}, &host.LostError{Err: fmt.Errorf("%s: ip -batch -: connection lost", l.name)}
}

// A node without SFTP whose connection is lost mid-batch is reconnected
// to and verified as any node: relocking it must not ask for a lock it
// never had (which its missing SFTP server would fail).
func TestNoSFTPNodeLostMidBatchReconnected(t *testing.T) {
	t.Parallel()
	c, p := noSFTPCluster(t)
	done := false
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		h, err := c.connect(ctx, n)
		if err == nil && n.Name == "node-2" {
			h = &lostMidBatch{fakeKernel: h.(*fakeKernel), done: &done}
		}
		return h, err
	}
	rep := Run(context.Background(), p, connect, journaled())
	if rep.Failed() {
		t.Fatal(fmtErrs(rep))
	}
	if n := rep.Nodes[2]; n.Outcome != Changed || n.NoSFTP == nil || c.kernels["node-2"].connects < 2 {
		t.Errorf("node-2: %s (no SFTP: %v) after %d connections, want changed without SFTP after a reconnect", n.Outcome, n.NoSFTP, c.kernels["node-2"].connects)
	}
}

// A node whose SFTP server goes right after its lock was taken (its run
// record cannot be written) fails: nothing changes on any node, every
// other node's lock is released, and the lock left on it, which cannot be
// released without SFTP, is reported.
func TestSFTPLostAfterLockChangesNothing(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-2"].loseSFTPAfter = 1 // the lock is its first file operation
	before := c.digests()
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, journaled())
	if !rep.Failed() {
		t.Fatal("the run did not fail")
	}
	after := c.digests()
	for name, k := range c.kernels {
		if after[name] != before[name] {
			t.Errorf("%s changed", name)
		}
		if name != "node-2" && k.lock != nil {
			t.Errorf("%s: lock left", name)
		}
	}
	n := rep.Nodes[2]
	if c.kernels["node-2"].lock == nil || n.RecordErr == nil || !strings.Contains(n.RecordErr.Error(), "could not release its lock") {
		t.Errorf("node-2: lock %q, RecordErr %v; want the lock left and said so", c.kernels["node-2"].lock, n.RecordErr)
	}
}

// A node whose SFTP server goes once its run record was written (mid-run)
// still converges: the states it could not record and the lock it could
// not release are reported.
func TestSFTPLostAfterRecordConverges(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-2"].loseSFTPAfter = 3 // the lock, the boot id, the record
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, journaled())
	n := rep.Nodes[2]
	if n.Outcome != Changed || c.kernels["node-2"].lock == nil {
		t.Errorf("node-2: %s, lock %q; want changed, its lock left", n.Outcome, c.kernels["node-2"].lock)
	}
	for _, w := range []string{"node-2: could not record state", "node-2: could not release its lock"} {
		if n.RecordErr == nil || !strings.Contains(n.RecordErr.Error(), w) {
			t.Errorf("node-2: RecordErr %v does not say %q", n.RecordErr, w)
		}
	}
}
