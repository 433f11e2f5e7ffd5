package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// With --max-idle-connections 0 every node waits for the others with its
// connection closed (parked): it is read over one connection, applied
// over a second and released over a third, under the same lock, and the
// lab converges as with connections kept open.
func TestParkedNodesConverge(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	before := make([]int, len(l.Nodes))
	for i, n := range l.Nodes {
		before[i] = connections(t, n)
	}
	res := rp(t, l, "--inventory", l.InventoryPath(), "--max-idle-connections", "0", "--concurrency", "1")
	if res.Code != 0 {
		t.Fatalf("apply exit %d, want 0\n%s", res.Code, res)
	}
	for i, n := range l.Nodes {
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s: table\n%s\nwant\n%s", n.Name, got, want)
		}
		if got := connections(t, n) - before[i]; got != 3 {
			t.Errorf("%s: %d connections, want 3 (read, apply, release)", n.Name, got)
		}
	}
	assertNoLocks(t, l)
	for name, recs := range records(t, l) {
		if len(recs) != 1 || !strings.Contains(recs[0].last, `"state":"verified"`) {
			t.Errorf("%s: records %+v, want one, ending verified", name, recs)
		}
	}
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--check"); res.Code != 0 {
		t.Errorf("--check after: exit %d, want 0\n%s", res.Code, res)
	}
}

// 14-A3: a foreign route added on a node while it waits parked, between
// its read and its apply: the new connection's re-check sees it, the node
// is refused with nothing sent, and every node applied before it is
// rolled back over a connection of its own.
func TestSafeCompareBeforeSwapAfterParking(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-A3 (foreign route while the node waited unconnected: refused on reconnecting, the others rolled back)")
	l := newLab(t, 4)
	// node-0 is applied first (concurrency 1, name order); its first batch
	// line is held once every node has been read and parked.
	h := holdNode(t, l, l.Nodes[0], "first-batch", atBatchLine, 1, "")
	want := snapshot(t, l)
	before := make([]int, len(l.Nodes))
	for i, n := range l.Nodes {
		before[i] = connections(t, n)
	}
	done := startRun(t, l, "--max-idle-connections", "0", "--concurrency", "1")
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-0 never got a batch line:\n%s", res)
	}
	victim := l.Nodes[3]
	ipRun(t, victim, "route", "add", "100.64.2.0/24", "via", "198.18.0.12", "proto", "static")
	want[victim.Name] = detailed(t, l, victim)
	h.release(t)
	res := <-done
	t.Logf("run: %s", res)
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	if !row(victim.Name, "refused").MatchString(res.Stdout) {
		t.Errorf("the report does not show %s refused", victim.Name)
	}
	for _, s := range []string{victim.Name + ":", "table changed since it was read", "proto static"} {
		if !strings.Contains(res.Stderr, s) {
			t.Errorf("stderr does not contain %q", s)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^node-[012] +rolled back\b`).FindAllString(res.Stdout, -1)); n != 3 {
		t.Errorf("the report shows %d of node-0..2 rolled back, want 3", n)
	}
	assertUnchanged(t, l, want)
	assertNoLocks(t, l)
	// Parked, each node connected again: node-3 to apply (refused, then
	// released over that connection), the others to apply and then to
	// roll back and release.
	for i, n := range l.Nodes {
		want := 3
		if n == victim {
			want = 2
		}
		if got := connections(t, n) - before[i]; got != want {
			t.Errorf("%s: %d connections, want %d", n.Name, got, want)
		}
	}
}

// A fifth of the nodes kept waiting with their connection open keep their
// SFTP session open too; the others close it after their record and after
// their verify, and open another for what comes next (the verified state,
// the release): 3 SFTP sessions on one connection instead of 1. With
// --max-idle-connections 10 two nodes keep theirs: node-0 (locked alone,
// first) and node-1 (read next, --concurrency 1).
func TestWaitingNodesCloseSFTPPastTheirPlaces(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	for _, n := range l.Nodes {
		if err := os.Truncate(filepath.Join(n.Dir, "sshd.log"), 0); err != nil {
			t.Fatal(err)
		}
	}
	res := rp(t, l, "--inventory", l.InventoryPath(), "--max-idle-connections", "10", "--concurrency", "1")
	if res.Code != 0 {
		t.Fatalf("apply exit %d, want 0\n%s", res.Code, res)
	}
	for i, n := range l.Nodes {
		want := 3
		if i < 2 {
			want = 1
		}
		if got := strings.Count(sshdLog(t, n.Dir), "subsystem 'sftp'"); got != want {
			t.Errorf("%s: %d SFTP sessions, want %d", n.Name, got, want)
		}
		if got := connections(t, n); got != 1 {
			t.Errorf("%s: %d connections, want 1 (kept open)", n.Name, got)
		}
	}
	assertConverged(t, l)
	assertNoLocks(t, l)
	for name, recs := range records(t, l) {
		if len(recs) != 1 || !strings.Contains(recs[0].last, `"state":"verified"`) {
			t.Errorf("%s: records %+v, want one, ending verified", name, recs)
		}
	}
}
