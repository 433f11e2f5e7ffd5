package orchestrator

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// rebootsMidBatch is a node that restarts as its batch arrives: the
// connection is lost, and the node comes back with a new boot id and the
// routes its own configuration installs at boot.
type rebootsMidBatch struct {
	*fakeKernel
	once *sync.Once
	boot func(k *fakeKernel)
}

func (r *rebootsMidBatch) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	rebooted := false
	if !force {
		r.once.Do(func() { rebooted = true; r.boot(r.fakeKernel) })
	}
	if rebooted {
		return host.ApplyResult{}, &host.LostError{Err: fmt.Errorf("%s: ip -batch -: connection lost", r.name)}
	}
	return r.fakeKernel.Apply(ctx, batch, force, fams, expect)
}

// rebootingCluster is 3 nodes whose node-0 (booted as bootA, with two
// routes of routepush's) restarts as bootB when the first batch reaches
// it: the connection is lost, and it comes back with the routes its own
// configuration installs at boot, and failDst failing there.
func rebootingCluster(t *testing.T, failDst string) ([]inventory.Node, *fakeCluster, *fakeKernel, Connector) {
	t.Helper()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	k := c.kernels["node-0"]
	k.boot = bootA
	k.seed(t, "unicast 100.64.1.0/24 via 198.18.0.98 dev eth0 proto 114 scope global\nunicast 100.64.2.0/24 via 198.18.0.99 dev eth0 proto 114 scope global\n")
	var once sync.Once
	reboot := func(k *fakeKernel) {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.boot = bootB
		k.routes = k.routes[:1] // the link route
		for _, l := range []string{
			"unicast 100.64.1.0/24 via 198.18.0.50 dev eth0 proto 114 scope global",
			"unicast 100.64.2.0/24 via 198.18.0.51 dev eth0 proto 114 scope global",
		} {
			p, _ := parseKLine(l)
			k.routes = append(k.routes, p.kroute)
		}
		k.failDst = failDst
	}
	connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
		h, err := c.connect(ctx, n)
		if err == nil && n.Name == "node-0" {
			h = &rebootsMidBatch{fakeKernel: h.(*fakeKernel), once: &once, boot: reboot}
		}
		return h, err
	}
	return nodes, c, k, connect
}

// The record is stamped with the boot id when it is written; the run
// itself then changes the node in a later boot (its rollback, through a
// reconnect), and says so in the state it appends. When that rollback
// fails half-way, `routepush rollback --run` must not conclude "restarted:
// nothing of that run is left" and send nothing: the half-sent undo is in
// this boot's kernel.
func TestRollbackUndoesARunThatChangedTheNodeAfterItsRestart(t *testing.T) {
	t.Parallel()
	nodes, c, k, connect := rebootingCluster(t, "100.64.2.0/24") // the undo's second line fails in this boot
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), connect, Options{Holder: holder, Rollback: RollbackHost, Concurrency: 1})
	n0 := rep.Nodes[0]
	t.Logf("run: node-0 %s, err %v, rollback err %v, applied %d", n0.Outcome, n0.Err, n0.RollbackErr, k.applied)
	if k.applied == 0 {
		t.Fatal("the run sent nothing after the restart: the case is not what it says")
	}
	left := k.digest()
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rrep, err := Restore(context.Background(), nodes[:1], c.restoreConnect, RestoreOptions{Holder: self, RunID: holder.RunID})
	if err != nil {
		t.Fatal(err)
	}
	r := rrep.Nodes[0]
	if r.Found == StateRestarted {
		t.Errorf("node-0: rollback --run found %q (nothing to undo) and sent nothing (table untouched: %v), "+
			"though the run's own rollback changed this boot's kernel (%d batches sent after the restart) and failed half-way: %v",
			r.Found, k.digest() == left, k.applied, n0.RollbackErr)
	}
}

// Without --run, a record found restarted is the node's answer: after a
// restart `routepush rollback` (meant for the newest run, which the
// restart already undid) must not go one run further back and undo the
// newest --persist run, the configuration the node came back up with.
// (Here the nodes then name different runs, and the rollback asks which.)
func TestRollbackWithoutRunNeverSkipsPastARestartedRun(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.boot, k.systemd = bootA, true
	}
	v := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: v, Persist: true}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	booted := map[string][]kroute{}
	for name, k := range c.kernels {
		booted[name] = append([]kroute(nil), k.routes...) // what its routes file installs at boot
	}
	// Run x (no --persist) moves node-1's pod CIDR; it is killed mid-way
	// (left "failed", no rollback), then every node restarts.
	moved := labNodes(2)
	moved[1].PodCIDRs = []netip.Prefix{netip.MustParsePrefix("100.64.9.0/24")}
	c.kernels["node-0"].failDst = "100.64.9.0/24"
	x := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(moved, DefaultProtocol), c.connect, Options{Holder: x, Rollback: RollbackNone}); !rep.Failed() {
		t.Fatal("run x did not fail")
	}
	for name, k := range c.kernels {
		k.boot, k.routes, k.failDst, k.lock = bootB, booted[name], "", nil
	}
	self := Holder{RunID: NewRunID(time.Now().Add(2 * time.Second)), Host: "bastion", PID: 3, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil {
		t.Logf("Restore refused: %v", err)
		return
	}
	for _, n := range rep.Nodes {
		if n.RunID == v.RunID {
			t.Errorf("%s: `routepush rollback` (no --run) after the restart undid run %s, the older --persist run (now %s, routes file %q), not the newest run %s", n.Name, n.RunID, n.Outcome, c.kernels[n.Name].persisted, x.RunID)
		}
	}
}

// The node restarts under the batch; the run reconnects, reads the new
// boot's tables, sends nothing more (no rollback) and appends "failed"
// in the new boot. Nothing of the run is in this boot's kernel: rollback
// must find it restarted and send nothing.
func TestReconnectedButUnchangedIsRestarted(t *testing.T) {
	t.Parallel()
	nodes, c, k, connect := rebootingCluster(t, "")
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
