package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// lostOnInterrupt is a node whose connection is lost mid-batch while the
// run is being interrupted: the batch reaches its kernel, ip never says
// how it went.
type lostOnInterrupt struct {
	*fakeKernel
	interrupt context.CancelCauseFunc
}

func (l *lostOnInterrupt) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	if force {
		return l.fakeKernel.Apply(ctx, batch, force, fams, expect) // the rollback
	}
	_, _ = l.fakeKernel.Apply(ctx, batch, force, fams, expect)
	l.interrupt(errors.New("interrupt received"))
	return host.ApplyResult{}, &host.LostError{Err: fmt.Errorf("%s: ip -batch -: connection lost", l.name)}
}

// A batch whose connection is lost while the run is being interrupted is
// not reconnected to (the run is ending): the node fails with the lost
// connection as its error, as ip's own refusal would, and is rolled back.
// It is no verify failure: nothing was read after the batch.
func TestLostBatchWhileInterruptedFailsTheNodeWithItsError(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	before := c.digests()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		h, err := c.connect(ctx, n)
		if err == nil && n.Name == "node-0" {
			h = &lostOnInterrupt{fakeKernel: h.(*fakeKernel), interrupt: cancel}
		}
		return h, err
	}
	rep := Run(ctx, NewPlan(nodes, DefaultProtocol), connect, Options{Concurrency: 1})
	n := rep.Nodes[0]
	var lost *host.LostError
	if n.Outcome != Failed || !errors.As(n.Err, &lost) || n.Err.Error() != "node-0: ip -batch -: connection lost" {
		t.Errorf("node-0: %s, %v; want failed with the lost connection as its error", n.Outcome, n.Err)
	}
	if !n.RolledBack || c.digests()["node-0"] != before["node-0"] {
		t.Errorf("node-0 not rolled back: %v", n.RollbackErr)
	}
	if got := c.kernels["node-0"].connects; got != 1 {
		t.Errorf("node-0 connected %d times, want 1: an interrupted run does not reconnect", got)
	}
}
