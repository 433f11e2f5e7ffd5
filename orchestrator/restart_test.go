package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

const bootA, bootB = "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "6fa459ea-ee8a-3ca4-894e-db77e160355e"

// deadRunThenRestart: a run fails on node-3 (not rolled back) and dies;
// node-1 then crashes and restarts. before is every node's table before
// the run.
func deadRunThenRestart(t *testing.T) (c *fakeCluster, dead Holder, before map[string][32]byte) {
	t.Helper()
	nodes := labNodes(4)
	c = newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.boot = bootA
	}
	c.kernels["node-3"].failDst = "100.64.2.0/24"
	before = c.digests()
	dead = Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: dead, Rollback: RollbackNone, Concurrency: 1}); !rep.Failed() {
		t.Fatal("run did not fail")
	}
	c.kernels["node-1"].boot = bootB
	return c, dead, before
}

// `routepush rollback` without --run after a node restarted: every other
// node names the dead run; the restarted one must say restarted (not "no
// record") and have the dead run's lock released, as README says.
func TestRollbackWithoutRunReleasesARestartedNodesLock(t *testing.T) {
	t.Parallel()
	c, dead, _ := deadRunThenRestart(t)
	c.kernels["node-1"].lock = dead.lockText()
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), labNodes(4), c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore: %v, %v", err, rep.Errors())
	}
	n := rep.Nodes[1]
	if n.Found != StateRestarted || c.kernels["node-1"].lock != nil {
		t.Errorf("node-1: run %q found %q; lock %q (want restarted, released)", n.RunID, n.Found, c.kernels["node-1"].lock)
	}
}

// A crash leaves the lock as it leaves a record: not synced, its name
// with no content. Nothing live ever holds an empty lock (its holder is
// written before the link), so rollback releases it.
func TestRollbackReleasesALockCutShort(t *testing.T) {
	t.Parallel()
	c, dead, _ := deadRunThenRestart(t)
	c.kernels["node-1"].lock = []byte{}
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), labNodes(4), c.restoreConnect, RestoreOptions{Holder: self, RunID: dead.RunID})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore with node-1's lock cut short: %v, %v", err, rep.Errors())
	}
	if c.kernels["node-1"].lock != nil {
		t.Errorf("node-1 still locked: %q", c.kernels["node-1"].lock)
	}
}

// The boot id only tells a run without --persist from the node's next
// boot: a node whose boot id cannot be read (sftp-server confined away
// from /proc) must still be rolled back from a --persist run's record.
func TestRollbackNeedsNoBootIDForAPersistRun(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.systemd = true
	}
	before := c.digests()
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, Persist: true}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	c.kernels["node-1"].bootErr = errors.New("node-1: /proc/sys/kernel/random/boot_id: permission denied")
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self, RunID: holder.RunID})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore: %v, %v", err, rep.Errors())
	}
	if c.digests()["node-1"] != before["node-1"] {
		t.Error("node-1 not rolled back")
	}
}

// A record a crash left empty, to which the run (still alive, reconnected
// after the node came back: reconnectAndRead, rollback's reconnect) then
// appended its state by name: no header, only a state line. Its run left
// nothing, as with an empty record; the node must not be refused a
// rollback of anything for it.
func TestRestoreSkipsARecordCutShortThenAppendedTo(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	c.kernels["node-1"].runs[holder.RunID] = marshalState(StateRollbackFailed, time.Now(), errors.New("tables changed"), nil, "")
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore: %v, node errors %v", err, rep.Errors())
	}
}

// An empty lock, which only a crash of the node leaves, is released by a
// run that takes over dead runs' locks (a watcher's), which then goes on;
// a run that takes over none says what it is and what to do.
func TestEmptyLockReleasedByATakeOver(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].lock = []byte{}
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder})
	if !rep.Failed() || !strings.Contains(fmt.Sprint(rep.Errors()), "node-1: locked by an empty lock, which only a crash of the node leaves") {
		t.Errorf("a run that takes over nothing: %v", rep.Errors())
	}
	holder.RunID = NewRunID(time.Now().Add(time.Second))
	rep = Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, TakeOver: func(Holder) bool { return false }})
	if rep.Failed() || c.kernels["node-1"].lock != nil {
		t.Errorf("a run that takes over dead runs' locks: %v; lock %q", rep.Errors(), c.kernels["node-1"].lock)
	}
}

// lockLostWithTheConnection is node-1 restarting as its batch lands: the
// connection is lost, and the lock comes back as the crash left it.
type lockLostWithTheConnection struct {
	*fakeKernel
	lost    *bool
	lockNow []byte
}

func (h *lockLostWithTheConnection) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	res, err := h.fakeKernel.Apply(ctx, batch, force, fams, expect)
	if !*h.lost {
		*h.lost = true
		h.mu.Lock()
		h.lock = h.lockNow
		h.mu.Unlock()
		return host.ApplyResult{}, &host.LostError{Err: errors.New("connection lost")}
	}
	return res, err
}

// A run that reconnects to a node makes sure it still holds its lock: an
// empty one (the node crashed before the lock reached its disk) is taken
// again and the run goes on; another run's (taken meanwhile) stops it
// there, nothing more sent, the other's lock left.
func TestReconnectedRunRetakesOrYieldsItsLock(t *testing.T) {
	t.Parallel()
	other := Holder{RunID: NewRunID(time.Now().Add(-time.Minute)), Host: "other-bastion", PID: 7, Started: time.Now()}
	for _, c := range []struct {
		name    string
		lockNow []byte
		ok      bool
	}{
		{"empty", []byte{}, true},
		{"gone", nil, true},
		{"another run's", other.lockText(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			nodes := labNodes(2)
			fc := newFakeCluster(nodes)
			lost := false
			k := fc.kernels["node-1"]
			connect := func(ctx context.Context, n *inventory.Node) (Host, error) {
				if n.Name == "node-1" {
					return &lockLostWithTheConnection{k, &lost, c.lockNow}, nil
				}
				return fc.kernels[n.Name], nil
			}
			holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
			rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), connect, Options{Holder: holder, Concurrency: 1, Rollback: RollbackHost})
			n := rep.Nodes[1]
			switch {
			case c.ok && (n.Outcome != Changed || k.lock != nil):
				t.Errorf("outcome %s, lock %q; errors %v", n.Outcome, k.lock, rep.Errors())
			case !c.ok && (n.Outcome == Changed || string(k.lock) != string(other.lockText()) || k.applied != 1 || !strings.Contains(fmt.Sprint(rep.Errors()), "no longer this run's")):
				t.Errorf("outcome %s, lock %q, %d batches (want the run's one), errors %v", n.Outcome, k.lock, k.applied, rep.Errors())
			}
		})
	}
}

// What a crash can leave of a record that was not synced is cut short;
// a whole record never is.
func TestCutShort(t *testing.T) {
	head, _ := json.Marshal(RunRecord{RunID: NewRunID(time.Now()), Node: "node-1", State: StateApplying})
	state := marshalState(StateFailed, time.Now(), nil, nil, bootA)
	for name, c := range map[string]struct {
		b    []byte
		want bool
	}{
		"empty":              {nil, true},
		"zeros":              {make([]byte, 4096), true},
		"only states":        {state, true},
		"a record":           {append(append(head, '\n'), state...), false},
		"garbage, not short": {[]byte("not json\n"), false},
	} {
		if got := cutShort(c.b); got != c.want {
			t.Errorf("%s: cut short %v, want %v", name, got, c.want)
		}
	}
}

// A boot id the node will not give is unknown: the run goes on, its
// record as one from before boot ids.
func TestRunGoesOnWithoutABootID(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].bootErr = errors.New("node-1: /proc/sys/kernel/random/boot_id: permission denied")
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder}); rep.Failed() {
		t.Errorf("a node with no boot id to give: %v", rep.Errors())
	}
}
