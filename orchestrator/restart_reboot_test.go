package orchestrator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
)

// The node restarts under the batch; the run reconnects, reads the new
// boot's tables, sends nothing more (no rollback) and appends "failed"
// in the new boot. Nothing of the run is in this boot's kernel: rollback
// must find it restarted and send nothing.
func TestReconnectedButUnchangedIsRestarted(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	const b1, b2 = "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "6fa459ea-ee8a-3ca4-894e-db77e160355e"
	k := c.kernels["node-0"]
	k.boot = b1
	k.seed(t, "unicast 100.64.1.0/24 via 198.18.0.98 dev eth0 proto 114 scope global\nunicast 100.64.2.0/24 via 198.18.0.99 dev eth0 proto 114 scope global\n")
	var once sync.Once
	reboot := func(k *fakeKernel) {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.boot = b2
		k.routes = k.routes[:1]
		for _, l := range []string{
			"unicast 100.64.1.0/24 via 198.18.0.50 dev eth0 proto 114 scope global",
			"unicast 100.64.2.0/24 via 198.18.0.51 dev eth0 proto 114 scope global",
		} {
			p, _ := parseKLine(l)
			k.routes = append(k.routes, p.kroute)
		}
	}
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		h, err := c.connect(ctx, n)
		if err == nil && n.Name == "node-0" {
			h = &rebootsMidBatch{fakeKernel: h.(*fakeKernel), once: &once, boot: reboot}
		}
		return h, err
	}
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), connect, Options{Holder: holder, Rollback: RollbackNone, Concurrency: 1})
	t.Logf("run: node-0 %s, err %v, applied %d\nrecord:\n%s", rep.Nodes[0].Outcome, rep.Nodes[0].Err, k.applied, k.runs[holder.RunID])
	left := k.digest()
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rrep, err := Restore(context.Background(), nodes[:1], c.restoreConnect, RestoreOptions{Holder: self, RunID: holder.RunID})
	if err != nil {
		t.Fatal(err)
	}
	if r := rrep.Nodes[0]; r.Found != StateRestarted || k.digest() != left {
		t.Errorf("node-0: found %q, now %q (%v), table untouched %v: the run sent nothing in this boot", r.Found, r.Outcome, r.Err, k.digest() == left)
	}
}
