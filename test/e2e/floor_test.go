package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run locks a node after reading it, and only where it will change it
// or its read saw a lock (the read's shell looks, with builtins): on a
// converged lab an apply opens no SFTP session but on node-0 (locked
// alone, before its read, so that two runs started at once meet there),
// starts one session per node, and leaves no lock and no record. A node
// in sync that holds a dead run's lock is still refused, naming the
// holder, and keeps the lock; nothing changes anywhere.
func TestInSyncNodesCostNoSFTP(t *testing.T) {
	t.Parallel()
	faultCase(t, "21-L1 (a node in sync holding a dead run's lock, which its read must see: refused by name, the lock kept, nothing changed)")
	l := newLab(t, 4)
	inv := []string{"--inventory", l.InventoryPath()}
	if res := rp(t, l, inv...); res.Code != 0 {
		t.Fatalf("apply: exit %d", res.Code)
	}
	records := func() int {
		n := 0
		for _, node := range l.Nodes {
			files, _ := filepath.Glob(filepath.Join(node.Dir, "var-lib-routepush", "runs", "*.json"))
			n += len(files)
		}
		return n
	}
	recorded := records()
	for _, n := range l.Nodes {
		if err := os.Truncate(filepath.Join(n.Dir, "sshd.log"), 0); err != nil {
			t.Fatal(err)
		}
	}
	res := rp(t, l, inv...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "4 in sync") {
		t.Fatalf("re-run: exit %d, want 0 with every node in sync", res.Code)
	}
	for _, n := range l.Nodes {
		log := sshdLog(t, n.Dir)
		sftp, sessions := strings.Count(log, "subsystem 'sftp'"), sshdSessions(t, n)
		want := 0
		if n.Name == "node-0" {
			want = 1
		}
		if sftp != want || sessions != want+1 {
			t.Errorf("%s: %d SFTP sessions of %d; want %d of %d", n.Name, sftp, sessions, want, want+1)
		}
	}
	if locked := lockedNodes(l); len(locked) != 0 || records() != recorded {
		t.Errorf("after a run that changed nothing: locks %v, %d records (were %d)", locked, records(), recorded)
	}

	// node-3 lost its routes: it is locked after its read and read again
	// under the lock through the ip its read left waiting, so the node
	// still costs one command session (and one SFTP session).
	ipRun(t, l.Nodes[3], "route", "flush", "proto", "114")
	if err := os.Truncate(filepath.Join(l.Nodes[3].Dir, "sshd.log"), 0); err != nil {
		t.Fatal(err)
	}
	if res := rp(t, l, inv...); res.Code != 0 || !strings.Contains(res.Stdout, "1 changed") {
		t.Fatalf("node-3 repaired: exit %d, want 0 with it changed", res.Code)
	}
	log := sshdLog(t, l.Nodes[3].Dir)
	if sftp, sessions := strings.Count(log, "subsystem 'sftp'"), sshdSessions(t, l.Nodes[3]); sftp != 1 || sessions != 2 {
		t.Errorf("node-3 repaired with %d SFTP sessions of %d; want 1 of 2", sftp, sessions)
	}
	assertConverged(t, l)

	lock := filepath.Join(l.Nodes[2].Dir, "var-lib-routepush", "lock")
	dead := `{"run_id":"20261126T101010.000Z-abcdef","host":"elsewhere","pid":7,"started":"2026-11-26T10:10:10Z"}` + "\n"
	if err := os.WriteFile(lock, []byte(dead), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l)
	res = rp(t, l, inv...)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-2: locked by run 20261126T101010.000Z-abcdef") {
		t.Errorf("node-2 in sync with a dead run's lock: exit %d, want 1 naming the lock's run; stderr:\n%s", res.Code, res.Stderr)
	}
	if got, err := os.ReadFile(lock); err != nil || string(got) != dead {
		t.Errorf("node-2's lock is now %q (%v)", got, err)
	}
	if locked := lockedNodes(l); len(locked) != 1 || locked[0] != "node-2" {
		t.Errorf("locks left: %v, want node-2's alone", locked)
	}
	assertUnchanged(t, l, before)
}
