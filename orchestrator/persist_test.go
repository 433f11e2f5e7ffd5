package orchestrator

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestPersistFileIsThePlanAsReplaceLines(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(3), DefaultProtocol)
	got := string(PersistFile(p.Host(0)))
	want := "\nroute replace 100.64.1.0/24 via 198.18.0.11 proto 114\nroute replace 100.64.2.0/24 via 198.18.0.12 proto 114\n"
	if !strings.HasPrefix(got, "# ") || !strings.HasSuffix(got, want) {
		t.Errorf("routes file:\n%s\nwant comments, then:\n%s", got, want)
	}
}

// --check reports a node whose routes are in sync but whose routes file is
// missing or stale; apply writes only the file; then all is in sync.
func TestRunPersistCheckApplyInSync(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.systemd = true
	}
	p := NewPlan(nodes, DefaultProtocol)
	ctx := context.Background()
	if rep := Run(ctx, p, c.connect, Options{}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	c.kernels["node-2"].persisted = []byte("route replace 100.64.9.0/24 via 198.18.0.19 proto 114\n")

	rep := Run(ctx, p, c.connect, Options{Check: true, Persist: true})
	if rep.Failed() || !rep.Changes() {
		t.Fatalf("check: failed=%v changes=%v", rep.Failed(), rep.Changes())
	}
	var diff strings.Builder
	rep.WriteDiff(&diff)
	for _, want := range []string{"node-0: 3 routes in sync; the routes file to write", "+ /etc/routepush/routes (routes file missing", "~ /etc/routepush/routes (routes file differs from the plan: 3 routes missing, 1 extra)"} {
		if !strings.Contains(diff.String(), want) {
			t.Errorf("diff lacks %q:\n%s", want, diff.String())
		}
	}

	batches := c.kernels["node-0"].applied
	rep = Run(ctx, p, c.connect, Options{Persist: true})
	if rep.Failed() {
		t.Fatal(rep.Errors())
	}
	for i, n := range rep.Nodes {
		k := c.kernels[n.Name]
		if n.Outcome != Changed || !n.Persist.Written || !bytes.Equal(k.persisted, PersistFile(p.Host(i))) {
			t.Errorf("%s: %s, written %v, file:\n%s", n.Name, n.Outcome, n.Persist.Written, k.persisted)
		}
	}
	if c.kernels["node-0"].applied != batches {
		t.Error("a node whose routes were in sync got a batch")
	}
	if rep := Run(ctx, p, c.connect, Options{Check: true, Persist: true}); rep.Changes() {
		t.Errorf("check after persisting still finds changes: %+v", rep.Nodes[0].Persist)
	}
}

// A node whose routes file cannot be written fails; the run rolls back
// every node's routes and puts back every routes file as it was.
func TestRunPersistFailureRestoresFiles(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	old := []byte("# an older run's\n")
	c.kernels["node-1"].persisted = old
	c.kernels["node-3"].failPersist = true
	before := c.digests()
	p := NewPlan(nodes, DefaultProtocol)
	rep := Run(context.Background(), p, c.connect, Options{Persist: true, Concurrency: 1})
	if !rep.Failed() || !strings.Contains(fmtErrs(rep), "node-3: write /etc/routepush/routes: disk full") {
		t.Fatalf("run: %v", rep.Errors())
	}
	after := c.digests()
	for _, n := range rep.Nodes {
		k := c.kernels[n.Name]
		if before[n.Name] != after[n.Name] {
			t.Errorf("%s: routes not restored (%s)", n.Name, n.Outcome)
		}
		want := []byte(nil)
		if n.Name == "node-1" {
			want = old
		}
		if !bytes.Equal(k.persisted, want) {
			t.Errorf("%s: routes file %q, want %q", n.Name, k.persisted, want)
		}
	}
	if c.kernels["node-0"].persistWrites != 1 {
		t.Errorf("node-0 written %d times, want 1 (then restored)", c.kernels["node-0"].persistWrites)
	}
}

// `routepush rollback` puts back the routes file from the run's record.
func TestRestorePutsBackTheRoutesFile(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	old := []byte("# before\n")
	c.kernels["node-0"].persisted = old
	dead := Holder{RunID: NewRunID(time.Now()), Host: "old-bastion", PID: 1, Started: time.Now()}
	p := NewPlan(nodes, DefaultProtocol)
	if rep := Run(context.Background(), p, c.connect, Options{Holder: dead, Persist: true}); rep.Failed() {
		t.Fatal(rep.Errors())
	}
	if bytes.Equal(c.kernels["node-0"].persisted, old) {
		t.Fatal("the run did not write node-0's routes file")
	}
	self := Holder{RunID: NewRunID(time.Now().Add(time.Second)), Host: "new-bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil || rep.Failed() {
		t.Fatalf("Restore: %v %v", err, rep.Errors())
	}
	if got := c.kernels["node-0"].persisted; !bytes.Equal(got, old) {
		t.Errorf("node-0's routes file after rollback: %q, want %q", got, old)
	}
	if got := c.kernels["node-1"].persisted; got != nil {
		t.Errorf("node-1's routes file after rollback: %q, want none", got)
	}
}

func fmtErrs(rep *Report) string {
	var b strings.Builder
	for _, err := range rep.Errors() {
		b.WriteString(err.Error() + "\n")
	}
	return b.String()
}

// A run's record is synced to the node's disk only when the run changes
// the routes file, which outlives a crash of the node: routes in the
// kernel alone do not, and syncing their record would make every node
// the run changes wait on its disk twice.
func TestRecordsDurableOnlyWhenPersisting(t *testing.T) {
	t.Parallel()
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	for _, k := range c.kernels {
		k.systemd = true
	}
	p := NewPlan(nodes, DefaultProtocol)
	run := func(persist bool) {
		t.Helper()
		holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1, Started: time.Now()}
		if rep := Run(context.Background(), p, c.connect, Options{Holder: holder, Persist: persist}); rep.Failed() || !rep.Changes() {
			t.Fatalf("persist %v: failed %v, changes %v: %v", persist, rep.Failed(), rep.Changes(), rep.Errors())
		}
	}
	run(false)
	for name, k := range c.kernels {
		if k.synced != 0 || k.unsynced != 2 {
			t.Errorf("%s, routes alone: %d record writes synced, %d not; want 0 and 2 (the record and its state)", name, k.synced, k.unsynced)
		}
		k.synced, k.unsynced = 0, 0
	}
	run(true)
	for name, k := range c.kernels {
		if k.synced != 2 || k.unsynced != 0 {
			t.Errorf("%s, routes file written: %d record writes synced, %d not; want 2 and 0", name, k.synced, k.unsynced)
		}
	}
}
