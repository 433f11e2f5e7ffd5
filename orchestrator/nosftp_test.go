package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/test/reportschema"
)

// noSFTPCluster is four nodes, node-2 without an SFTP server.
func noSFTPCluster(t *testing.T) (*fakeCluster, *Plan) {
	t.Helper()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-2"].noSFTP = true
	return c, NewPlan(nodes, DefaultProtocol)
}

func journaled() Options {
	return Options{Holder: Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()}}
}

// A node without an SFTP server converges without lock or record, and the
// report says so once, naming what to install; the other nodes are locked
// and recorded as ever.
func TestNoSFTPNodeConvergesWithOneWarning(t *testing.T) {
	t.Parallel()
	c, p := noSFTPCluster(t)
	opts := journaled()
	rep := Run(context.Background(), p, c.connect, opts)
	if rep.Failed() {
		t.Fatal(fmtErrs(rep))
	}
	for _, n := range rep.Nodes {
		k := c.kernels[n.Name]
		if n.Outcome != Changed {
			t.Errorf("%s: %s, want changed", n.Name, n.Outcome)
		}
		if recorded := len(k.runs[opts.Holder.RunID]) > 0; recorded == k.noSFTP {
			t.Errorf("%s: recorded %v, without SFTP %v", n.Name, recorded, k.noSFTP)
		}
		if k.lock != nil {
			t.Errorf("%s: lock left: %s", n.Name, k.lock)
		}
	}
	var out strings.Builder
	rep.WriteSummary(&out)
	want := "note: node-2: no SFTP server (Dropbear runs /usr/lib/sftp-server: not found, exit status 127): no lock or run record on this node"
	if strings.Count(out.String(), "no SFTP server") != 1 || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "install openssh-sftp-server") {
		t.Errorf("summary, want the note once:\n%s", out.String())
	}
	b, _ := json.Marshal(rep.JSON(opts.Holder.RunID))
	if err := reportschema.Validate(b); err != nil {
		t.Errorf("JSON report with a warning: %v", err)
	}
	if strings.Count(string(b), "no SFTP server") != 1 || !strings.Contains(string(b), `"warnings":["node-2: no SFTP server`) {
		t.Errorf("JSON, want one warning on node-2: %s", b)
	}
	// In sync, the next run neither locks nor records there, and so
	// never asks for SFTP: nothing to warn of.
	rep = Run(context.Background(), p, c.connect, journaled())
	if n := rep.Nodes[2]; n.Outcome != InSync || n.NoSFTPWarning() != "" {
		t.Errorf("second run: node-2 %s, warning %q", n.Outcome, n.NoSFTPWarning())
	}
}

// A failing run restores the node without SFTP from the run's own
// snapshot, as every other node.
func TestNoSFTPNodeRestoredOnFailure(t *testing.T) {
	t.Parallel()
	c, p := noSFTPCluster(t)
	c.kernels["node-3"].failDst = "100.64.0.0/24"
	before := c.digests()
	opts := journaled()
	opts.Concurrency = 1 // node-2's batch goes before node-3's fails
	rep := Run(context.Background(), p, c.connect, opts)
	if !rep.Failed() {
		t.Fatal("the run did not fail")
	}
	if c.kernels["node-2"].applied == 0 {
		t.Fatal("node-2 got no batch: the case proves nothing")
	}
	after := c.digests()
	for name, d := range before {
		if after[name] != d {
			t.Errorf("%s: not restored", name)
		}
	}
	if n := rep.Nodes[2]; !n.RolledBack {
		t.Errorf("node-2: %s, rolled back %v: %v", n.Outcome, n.RolledBack, n.Err)
	}
}

// --persist refuses the node without SFTP before anything changes
// anywhere, naming what to install; --check --persist says the same.
// The refusal is the only mention of the missing server.
func TestNoSFTPNodePersistRefused(t *testing.T) {
	t.Parallel()
	for _, check := range []bool{false, true} {
		c, p := noSFTPCluster(t)
		opts := journaled()
		opts.Persist, opts.Check = true, check
		rep := Run(context.Background(), p, c.connect, opts)
		if !rep.Failed() {
			t.Fatalf("check %v: the run did not fail", check)
		}
		n := rep.Nodes[2]
		want := "node-2: refusing to change the node: --persist writes the routes file and boot unit over SFTP, and the node has no SFTP server (Dropbear runs /usr/lib/sftp-server: not found, exit status 127); install openssh-sftp-server"
		if n.Outcome != Refused || n.Err == nil || n.Err.Error() != want {
			t.Errorf("check %v: node-2 %s: %v\nwant refused: %s", check, n.Outcome, n.Err, want)
		}
		if _, ok := errors.AsType[*host.NoSFTPError](n.Err); !ok {
			t.Errorf("check %v: the refusal does not wrap the *host.NoSFTPError", check)
		}
		for name, k := range c.kernels {
			if k.applied != 0 || k.persistWrites != 0 {
				t.Errorf("check %v: %s changed: %d batches, %d routes files", check, name, k.applied, k.persistWrites)
			}
			if name != "node-2" && rep.Nodes[k.index(rep)].Err != nil {
				t.Errorf("check %v: %s: %v", check, name, rep.Nodes[k.index(rep)].Err)
			}
		}
		var out, diff strings.Builder
		rep.WriteSummary(&out)
		rep.WriteDiff(&diff)
		if strings.Contains(out.String(), "no SFTP server") {
			t.Errorf("check %v: a note besides the refusal:\n%s", check, out.String())
		}
		if !strings.Contains(diff.String(), "node-2: refused: no SFTP server for --persist's routes file; 3 to add") {
			t.Errorf("check %v: diff:\n%s", check, diff.String())
		}
	}
}

// --check without --persist needs no SFTP at all: the node is diffed and
// no file operation is even tried.
func TestNoSFTPNodeCheck(t *testing.T) {
	t.Parallel()
	c, p := noSFTPCluster(t)
	opts := journaled()
	opts.Check = true
	rep := Run(context.Background(), p, c.connect, opts)
	if n := rep.Nodes[2]; rep.Failed() || n.Outcome != WouldChange || n.Added() != 3 {
		t.Fatalf("node-2: %s, %d to add: %s", n.Outcome, n.Added(), fmtErrs(rep))
	}
	if ops := c.kernels["node-2"].fileOps; ops != 0 {
		t.Errorf("check tried %d file operations on node-2", ops)
	}
}

func (k *fakeKernel) index(rep *Report) int {
	for i := range rep.Nodes {
		if rep.Nodes[i].Name == k.name {
			return i
		}
	}
	return -1
}

// `routepush rollback` on a node that has no SFTP server now says it
// cannot read its run records, and leaves it as it is: it does not claim
// there are none, or that the node's routes are as the last run left
// them, which is untrue of a node that had SFTP during the run (its
// record is there, unread) and lost it since.
func TestNoSFTPNodeRollbackSaysRecordsUnreadable(t *testing.T) {
	nodes := labNodes(2)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].noSFTP = true
	self := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 2, Started: time.Now()}
	rep, err := Restore(context.Background(), nodes, c.restoreConnect, RestoreOptions{Holder: self})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() {
		t.Fatal("a node whose records cannot be read does not fail the rollback")
	}
	var got string
	for _, e := range rep.Errors() {
		got += e.Error() + "\n"
	}
	if !strings.Contains(got, "node-1: no SFTP server (") || !strings.Contains(got, "cannot read its run records (no SFTP server now)") {
		t.Errorf("rollback errors:\n%s\nwant node-1 named as one whose records cannot be read now", got)
	}
	if strings.Contains(got, "no run records there") || strings.Contains(got, "as the last run left them") {
		t.Errorf("rollback errors:\n%s\nclaim what routepush cannot know", got)
	}
}
