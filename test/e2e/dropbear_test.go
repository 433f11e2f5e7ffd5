package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// noSFTPNote is how routepush says, once per run, that node-3 has no SFTP
// server and what to install there.
const noSFTPNote = "note: node-3: no SFTP server (Dropbear runs /usr/lib/sftp-server: \"bash: line 1: /usr/lib/sftp-server: Permission denied\", exit status 126): no lock or run record on this node"

// noSFTPFix is what to install, as every message about node-3 says it.
const noSFTPFix = "install openssh-sftp-server and link /usr/lib/sftp-server to /usr/lib/openssh/sftp-server"

// Nodes running Dropbear beside OpenSSH ones: node-2 with an SFTP server,
// node-3 without (its /usr/lib/sftp-server hidden). check diffs them all
// and changes nothing; a run that fails on node-1 restores every node,
// Dropbear's included; apply converges them all, node-3 without lock or
// record, said once; --persist refuses node-3 alone, before any change;
// routepush rollback undoes the run on node-2 from its record.
func TestDropbearNodes(t *testing.T) {
	t.Parallel()
	faultCase(t, "dropbear-nodes")
	l := newLabWith(t, lab.Options{Nodes: 4, Dropbear: []int{2}, DropbearNoSFTP: []int{3}})
	inv := []string{"--inventory", l.InventoryPath()}
	before := snapshot(t, l)
	notes := func(res lab.Result) int {
		return strings.Count(res.Stdout+res.Stderr, "no SFTP server")
	}

	res := rp(t, l, append(inv, "--check")...)
	if res.Code != 2 {
		t.Fatalf("--check: exit %d, want 2", res.Code)
	}
	for _, n := range l.Nodes {
		if !regexp.MustCompile(`(?m)^` + n.Name + `: 3 to add`).MatchString(res.Stdout) {
			t.Errorf("--check shows no diff of 3 additions for %s", n.Name)
		}
	}
	assertUnchanged(t, l, before)

	// node-1's kernel refuses its route to node-3: every node the run
	// changed, the Dropbear ones included, is restored byte for byte;
	// node-3 from the run's own snapshot, with no record to go by.
	rejectRouteVia(t, l, l.Nodes[1], l.Nodes[3].Addr)
	res = rp(t, l, inv...)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-1: ") {
		t.Fatalf("run with node-1 refusing a route: exit %d, want 1 naming node-1", res.Code)
	}
	assertUnchanged(t, l, before)
	for _, name := range []string{"node-2", "node-3"} {
		if !regexp.MustCompile(`(?m)^` + name + `\s+rolled back\s+3`).MatchString(res.Stdout) {
			t.Errorf("%s: not reported rolled back after its batch (the restore proves nothing without one)", name)
		}
	}
	if notes(res) != 1 || !strings.Contains(res.Stdout, noSFTPNote) {
		t.Errorf("failed run: node-3's missing SFTP server said %d times, want once as %q", notes(res), noSFTPNote)
	}
	if err := l.RestartSSHD(testContext(t), l.Nodes[1]); err != nil { // its kernel mended
		t.Fatal(err)
	}

	// Keepalives every 100 ms: Dropbear declines keepalive@openssh.com
	// (SSH_MSG_REQUEST_FAILURE), which must count as an answer. (A second
	// is left for it: two busy cores answer late, not never.)
	res = rp(t, l, append(inv, "--server-alive-interval", "100ms", "--server-alive-count-max", "10")...)
	if res.Code != 0 {
		t.Fatalf("apply: exit %d, want 0", res.Code)
	}
	if notes(res) != 1 || !strings.Contains(res.Stdout, noSFTPNote) || !strings.Contains(res.Stdout, noSFTPFix) {
		t.Errorf("apply: node-3's missing SFTP server said %d times, want once with what to install", notes(res))
	}
	runID := regexp.MustCompile(`(?m)^run (\S+)$`).FindStringSubmatch(res.Stdout)
	if runID == nil {
		t.Fatal("apply printed no run id")
	}
	for _, n := range l.Nodes {
		records, _ := filepath.Glob(filepath.Join(n.Dir, "var-lib-routepush", "runs", "*.json"))
		if recorded := len(records) > 0; recorded == n.NoSFTP {
			t.Errorf("%s: run records %v (without SFTP: %v)", n.Name, records, n.NoSFTP)
		}
	}
	res = rp(t, l, inv...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "4 nodes done") || !strings.Contains(res.Stdout, "4 in sync") {
		t.Fatalf("re-run: exit %d, want 0 with every node in sync", res.Code)
	}
	converged := snapshot(t, l)
	for _, n := range l.Nodes {
		if strings.Count(converged[n.Name], "proto 114") != 3 {
			t.Errorf("%s: want 3 routes of proto 114:\n%s", n.Name, converged[n.Name])
		}
	}

	// --persist: node-3 is refused before anything changes anywhere,
	// naming what to install; the others are left as they are.
	res = rp(t, l, append(inv, "--persist")...)
	refusal := "ERROR: node-3: refusing to change the node: --persist writes the routes file and boot unit over SFTP, and the node has no SFTP server (Dropbear runs /usr/lib/sftp-server: \"bash: line 1: /usr/lib/sftp-server: Permission denied\", exit status 126); " + noSFTPFix
	if res.Code != 1 || !strings.Contains(res.Stderr, refusal) || strings.Count(res.Stderr, "ERROR:") != 1 || notes(res) != 1 {
		t.Errorf("--persist: exit %d, want 1 and node-3 alone refused, once:\n%s", res.Code, refusal)
	}
	for _, n := range l.Nodes {
		if _, err := os.Stat(filepath.Join(n.Dir, "etc-routepush", "routes")); err == nil {
			t.Errorf("%s: --persist wrote a routes file though node-3 was refused", n.Name)
		}
	}
	assertUnchanged(t, l, converged)

	// routepush rollback --run undoes the apply on the Dropbear node with
	// SFTP from its record.
	only2 := filepath.Join(l.Dir, "node-2.yaml")
	if err := l.WriteInventory(only2, l.Nodes[2:3]); err != nil {
		t.Fatal(err)
	}
	res = rp(t, l, "rollback", "--inventory", only2, "--run", runID[1])
	if res.Code != 0 || !regexp.MustCompile(`(?m)^node-2\s+`+regexp.QuoteMeta(runID[1])+`\s+verified\s+rolled-back`).MatchString(res.Stdout) {
		t.Fatalf("rollback on node-2: exit %d, want 0 and node-2 rolled back", res.Code)
	}
	want := map[string]string{"node-0": converged["node-0"], "node-1": converged["node-1"], "node-2": before["node-2"], "node-3": converged["node-3"]}
	assertUnchanged(t, l, want)

	// Over every node: the OpenSSH ones are rolled back too; node-3,
	// which has no record, is named with what to install, and kept.
	res = rp(t, l, "rollback", "--inventory", l.InventoryPath(), "--run", runID[1])
	if res.Code != 1 || !strings.Contains(res.Stderr, "ERROR: node-3: no SFTP server (Dropbear runs /usr/lib/sftp-server: \"bash: line 1: /usr/lib/sftp-server: Permission denied\", exit status 126): cannot read its run records (no SFTP server now), so it is not rolled back and is left as it is; "+noSFTPFix) {
		t.Errorf("rollback over every node: exit %d, want 1 naming node-3's missing SFTP server", res.Code)
	}
	want["node-0"], want["node-1"] = before["node-0"], before["node-1"]
	assertUnchanged(t, l, want)
}

// routepush watch on a cluster with Dropbear nodes converges them all and
// says once, not every round, that node-3 has no SFTP server; node-3's
// routes flushed are repaired all the same, without its saying it again.
func TestDropbearWatchWarnsOnce(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 4, false)
	ctx := testContext(t)
	if err := k.UseDropbear(ctx, k.Nodes[2], false); err != nil {
		t.Fatal(err)
	}
	if err := k.UseDropbear(ctx, k.Nodes[3], true); err != nil {
		t.Fatal(err)
	}
	// Their new keys under their names too, as newKubeLab puts them.
	k.addressOnly = readFile(t, k.KnownHostsPath())
	writeFile(t, k.KnownHostsPath(), k.addressOnly+k.byName(k.Nodes...))
	all := []int{0, 1, 2, 3}
	k.registerAll(t)
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--resync", "2s", "-v")
	stopped := false
	defer func() {
		if !stopped {
			res := w.stop(t)
			t.Logf("watcher: %s\n%s", res, res.Stderr)
		}
	}()
	waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 30*time.Second)
	flushed := time.Now()
	ipRun(t, k.Nodes[3], "route", "flush", "proto", "114")
	waitTables(t, k.Lab, []int{3}, func(i int) string { return expectedOf(k.Lab, all, i) }, flushed, 10*time.Second)
	w.waitLog(t, regexp.MustCompile(`(?s)reason=resync nodes=4 converged=4 .* repaired=1 .*reason=resync nodes=4 converged=4 .*reason=resync nodes=4 converged=4 `), 20*time.Second)

	res := w.stop(t)
	stopped = true
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	if n := strings.Count(res.Stderr, "no SFTP server"); n != 1 || !strings.Contains(res.Stderr, "node-3: no SFTP server (Dropbear runs /usr/lib/sftp-server") || !strings.Contains(res.Stderr, noSFTPFix) {
		t.Errorf("%d rounds: node-3's missing SFTP server said %d times, want once with what to install:\n%s", len(w.rounds()), n, res.Stderr)
	}
	assertNoLocks(t, k.Lab)
}
