package orchestrator

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/route"
)

// A route another owner adds at a planned destination between the read and
// the batch is never overwritten: the node's tables are compared again
// right before its batch, and nothing is sent to a node that changed.
func TestRunRefusesANodeChangedSinceItsRead(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].beforeApply = func(k *fakeKernel) {
		k.seed(t, "100.64.2.0/24 via 198.18.0.12 dev eth0 proto static scope global")
		k.beforeApply = nil
	}
	before := c.digests()
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, Concurrency: 1})
	n := rep.Nodes[0]
	if n.Outcome != Refused || !strings.Contains(fmt.Sprint(n.Err), "node-0: refusing to change the node: its table changed since it was read: route 100.64.2.0/24 via 198.18.0.12 dev eth0 proto static (proto static: an administrator) is in the way") {
		t.Fatalf("node-0: %s, %v", n.Outcome, n.Err)
	}
	if c.kernels["node-0"].applied != 0 {
		t.Errorf("node-0 got %d batches", c.kernels["node-0"].applied)
	}
	after := c.digests()
	for _, name := range []string{"node-1", "node-2"} {
		if after[name] != before[name] {
			t.Errorf("%s not rolled back", name)
		}
	}
	if rec, _ := ParseRunRecord(c.kernels["node-0"].runs[holder.RunID]); rec.State != StateNotApplied {
		t.Errorf("node-0's record says %s, want %s", rec.State, StateNotApplied)
	}
	if got := c.kernels["node-0"].routes; !strings.Contains(fmt.Sprint(got), "proto static") {
		t.Errorf("node-0 lost the intruder's route: %v", got)
	}
}

// Whatever --protocol, --prune and --adopt say, a batch never deletes or
// replaces a connected route, a default route or the route back to
// routepush, and no planned route overlaps a connected subnet.
func TestRunNeverTouchesWhatKeepsANodeReachable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, table string
		proto       uint8
		source      string
		want        string
	}{
		{"kernel protocol", "", 2, "", "the batch would delete the directly connected route 198.18.0.0/16 dev eth0 proto kernel"},
		{"default route of ours", "default via 198.18.0.1 dev eth0 proto 114 scope global\n", 114, "", "the batch would delete the default route 0.0.0.0/0 via 198.18.0.1 dev eth0 proto 114"},
		{"route back to routepush", "198.19.0.0/24 via 198.18.0.2 dev eth0 proto 114 scope global\n", 114, "198.19.0.1", "the batch would delete route 198.19.0.0/24 via 198.18.0.2 dev eth0 proto 114 (proto 114), which the node needs to reach routepush at 198.19.0.1"},
		{"route through a nexthop object", "100.64.1.0/24 nhid 7 via 198.18.0.11 dev eth0 proto 114 scope global\n", 114, "", "route 100.64.1.0/24 nhid 7 via 198.18.0.11 dev eth0 proto 114 (proto 114) to a planned destination goes through nexthop object 7"},
		{"planned route over the session's source", "", 114, "100.64.1.9", "the planned 100.64.1.0/24 via 198.18.0.11 proto 114 covers 100.64.1.9, where the node sees routepush's session come from"},
		{"pod CIDR on a connected subnet", "100.64.1.128/25 dev eth1 proto kernel scope link\n", 114, "", "the planned 100.64.1.0/24 via 198.18.0.11 proto 114 overlaps the node's directly connected subnet 100.64.1.128/25 (dev eth1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := labNodes(3)
			c := newFakeCluster(nodes)
			k := c.kernels["node-0"]
			if tc.table != "" {
				k.seed(t, tc.table)
			}
			if tc.source != "" {
				k.source = netip.MustParseAddr(tc.source)
			}
			before := c.digests()
			plan := NewPlanWith(nodes, PlanOptions{Protocol: routeProto(tc.proto), Prune: true, Adopt: true})
			rep := Run(context.Background(), plan, c.connect, Options{Concurrency: 1})
			if n := rep.Nodes[0]; n.Outcome != Refused || !strings.Contains(fmt.Sprint(n.Err), tc.want) {
				t.Errorf("node-0: %s, %v\nwant refused: %s", n.Outcome, n.Err, tc.want)
			}
			if after := c.digests(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Error("a table changed")
			}
		})
	}
}

// A rollback leaves alone a node whose tables changed since the run
// changed them, and says so; the others are restored.
func TestRollbackLeavesANodeChangedSinceAlone(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	c.kernels["node-2"].failDst = "100.64.0.0/24"
	c.kernels["node-2"].beforeApply = func(*fakeKernel) {
		// node-0 and node-1 have verified by now (Concurrency 1).
		c.kernels["node-1"].seed(t, "100.64.200.0/24 via 198.18.0.12 dev eth0 proto static scope global")
	}
	before := c.digests()
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: holder, Concurrency: 1})
	n := rep.Nodes[1]
	if n.Outcome != RollbackFailed || !strings.Contains(fmt.Sprint(n.RollbackErr), "node-1: rollback: left as it is: its route table changed since run "+holder.RunID) {
		t.Fatalf("node-1: %s, %v", n.Outcome, n.RollbackErr)
	}
	if got := fmt.Sprint(c.kernels["node-1"].routes); !strings.Contains(got, "proto static") || !strings.Contains(got, "proto 114") {
		t.Errorf("node-1 was touched: %s", got)
	}
	after := c.digests()
	if after["node-0"] != before["node-0"] || after["node-2"] != before["node-2"] {
		t.Error("the other nodes were not restored")
	}
	// routepush rollback says the same, and --force undoes the run's routes.
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 43, Started: time.Now()}
	r2, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self, RunID: holder.RunID})
	if err != nil || !strings.Contains(fmt.Sprint(r2.Errors()), "left as it is") {
		t.Fatalf("Restore: %v, %v", err, r2.Errors())
	}
	if _, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self, RunID: holder.RunID, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.kernels["node-1"].routes); !strings.Contains(got, "proto static") || strings.Contains(got, "proto 114") {
		t.Errorf("after --force node-1 has: %s", got)
	}
}

// routepush rollback never takes a lock from a live process of this host,
// and refuses to undo a run older than one that changed the node since.
func TestRestoreRefusesLiveHoldersAndOlderRuns(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	first := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 41, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: first}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	c.kernels["node-0"].lock = first.lockText()
	alive := func(pid int) bool { return pid == 41 }
	self := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 50, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self, ProcessAlive: alive, Force: true})
	if err != nil || !strings.Contains(fmt.Sprint(rep.Errors()), "node-0: locked by run "+first.RunID+" (routepush pid 41 on bastion") || !strings.Contains(fmt.Sprint(rep.Errors()), "which is still running") {
		t.Fatalf("Restore over a live holder: %v, %v", err, rep.Errors())
	}
	c.kernels["node-0"].lock = nil
	// A later run changes node-1 (its record is newer on the node).
	time.Sleep(10 * time.Millisecond)
	second := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}
	metric := uint32(7)
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Metric: &metric, Prune: true})
	if rep := Run(context.Background(), plan, c.connect, Options{Holder: second, Limit: func(n string) bool { return n == "node-1" }}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	rep, err = Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self, RunID: first.RunID})
	if err != nil || !strings.Contains(fmt.Sprint(rep.Errors()), "node-1: run "+second.RunID+" changed the node after run "+first.RunID) {
		t.Fatalf("Restore of the older run: %v, %v", err, rep.Errors())
	}
	// Without --run each node undoes its own newest run.
	rep, err = Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil || rep.Failed() || rep.Nodes[1].RunID != second.RunID {
		t.Fatalf("Restore: %v, %v, %+v", err, rep.Errors(), rep.Nodes)
	}
}

func TestSettledRecord(t *testing.T) {
	t.Parallel()
	for state, want := range map[RunState]bool{StateApplying: false, StateFailed: false, StateRollbackFailed: false, StateVerified: true, StateRolledBack: true, StateNotApplied: true} {
		tail := append([]byte(`...torn record"}`+"\n"), marshalState(state, time.Now(), nil, nil, "")...)
		if got := settledRecord(tail); got != want {
			t.Errorf("%s: settled %v, want %v", state, got, want)
		}
	}
	if settledRecord([]byte(`{"run_id":"x","state":"applying"}` + "\n")) {
		t.Error("a record with no state line yet is settled")
	}
}

func routeProto(p uint8) route.Protocol { return route.Protocol(p) }

// A node's run record is sent back to it as root by `routepush rollback`:
// only route add and exact route del lines as routepush writes them pass.
func TestCheckUndoRefusesWhatRoutepushNeverWrites(t *testing.T) {
	t.Parallel()
	good := "route del 100.64.1.0/24 via 198.18.0.11 proto 114 metric 0\nroute add 100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n"
	if b, err := checkUndo(good); err != nil || string(b) != good {
		t.Fatalf("checkUndo(good) = %q, %v", b, err)
	}
	for _, bad := range []string{
		"netns exec x sh -c id\n",
		"route add 100.64.2.0/24 via 198.18.0.99 proto boot\nnetns add x\n",
		"route replace 100.64.2.0/24 via 198.18.0.99 proto boot\n",
		"route add default via 198.18.0.66 proto boot\n",
		"route del 198.18.0.0/16 dev eth0 proto 2 metric 0\n",
		"route add 100.64.2.0/24 via 198.18.0.99 proto boot ; id\n",
		"-force route add 100.64.2.0/24 via 198.18.0.99\n",
	} {
		if _, err := checkUndo(bad); err == nil {
			t.Errorf("checkUndo(%q) passed", bad)
		}
	}
}

// Without --run, nodes whose newest runs not rolled back differ are not
// each rolled back to a point of their own: routepush rollback asks which.
func TestRestoreAsksWhichRunWhenNodesDisagree(t *testing.T) {
	t.Parallel()
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	first := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 41, Started: time.Now()}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Holder: first}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	second := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "bastion", PID: 42, Started: time.Now()}
	metric := uint32(7)
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Metric: &metric, Prune: true})
	if rep := Run(context.Background(), plan, c.connect, Options{Holder: second, Limit: func(n string) bool { return n == "node-1" }}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	before := c.digests()
	self := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 50, Started: time.Now()}
	_, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err == nil || !strings.Contains(err.Error(), "node-0: "+first.RunID) || !strings.Contains(err.Error(), "node-1: "+second.RunID) || !strings.Contains(err.Error(), "--run") {
		t.Fatalf("Restore = %v, want the nodes' runs named and --run asked for", err)
	}
	if after := c.digests(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("a node was changed")
	}
}

// A rollback puts back every attribute of the routes the run replaced or
// deleted: the fake kernel reads the undo lines with its own tokenizer
// and digests its own model of the table, so a renderer that dropped an
// attribute (the metric, the protocol, a route metric such as mtu) would
// leave a different table, whatever package route's parser reads back.
func TestRollbackRestoresEveryAttribute(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	k := c.kernels["node-0"]
	k.seed(t, `100.64.2.0/24 via 198.18.0.99 dev eth0 proto boot scope global mtu 1400
100.64.9.0/24 via 198.18.0.19 dev eth0 proto 114 scope global metric 7 advmss 1360`)
	c.kernels["node-2"].failDst = "100.64.0.0/24"
	before := c.digests()
	wantRoutes := fmt.Sprint(k.routes)
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Prune: true, Adopt: true})
	rep := Run(context.Background(), plan, c.connect, Options{Concurrency: 1})
	if d := rep.Nodes[0].Diff; len(d.Replace) != 1 || len(d.Remove) != 1 {
		t.Fatalf("node-0's diff replaces %d and removes %d routes, want 1 and 1", len(d.Replace), len(d.Remove))
	}
	if n := rep.Nodes[0]; n.Outcome != RolledBack || n.RollbackErr != nil {
		t.Fatalf("node-0: %s, %v", n.Outcome, n.RollbackErr)
	}
	if got := fmt.Sprint(k.routes); c.digests()["node-0"] != before["node-0"] {
		t.Errorf("node-0 not restored exactly:\n got %s\nwant %s", got, wantRoutes)
	}
}
