package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/routepush/routepush/test/lab"
)

// slowBatch is a node's ForceCommand that holds a batch back for a while:
// at the first `route add` line it sleeps, and forwards nothing if its
// SSH session has gone meanwhile (routepush killed), as a batch that never
// arrived.
const slowBatch = `#!/bin/sh
` + lab.ExecSFTP + `
parent=$PPID
slept=
while IFS= read -r line; do
	case "$line" in
	%[2]s) if [ -z "$slept" ]; then sleep %[1]d; slept=1; kill -0 "$parent" 2>/dev/null || exit 1; fi ;;
	esac
	printf '%%s\n' "$line"
done | sh -c "$SSH_ORIGINAL_COMMAND"
`

func slowNode(t *testing.T, l *lab.Lab, n *lab.Node, seconds int) {
	t.Helper()
	slowNodeOn(t, l, n, seconds, `"route add "*`)
}

// slowNodeOn is slowNode for the first line that matches a shell pattern.
func slowNodeOn(t *testing.T, l *lab.Lab, n *lab.Node, seconds int, pattern string) {
	t.Helper()
	withForceCommand(t, l, n, "slow-batch", fmt.Sprintf(slowBatch, seconds, pattern))
}

// startRun starts routepush apply on the lab in the background; its
// result arrives on the channel.
func startRun(t *testing.T, l *lab.Lab, args ...string) <-chan lab.Result {
	done := make(chan lab.Result, 1)
	go func() {
		res, _ := l.Routepush(testContext(t), routepush, append([]string{"--inventory", l.InventoryPath()}, args...)...)
		done <- res
	}()
	return done
}

// waitForStates waits until the run's records on the nodes reach at least
// the given counts of states.
func waitForStates(t *testing.T, l *lab.Lab, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := runStates(l)
		reached := true
		for state, n := range want {
			reached = reached && got[state] >= n
		}
		if reached {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run never reached %v: %v", want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// routepushPID finds the routepush process running on the lab.
func routepushPID(t *testing.T, l *lab.Lab) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "--", "--config "+l.ConfigPath()+" --inventory").Output()
	if err != nil {
		t.Fatalf("pgrep: %v", err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(out))[0])
	return pid
}

// runStates counts the nodes whose record of the lab's newest run is in
// each state.
func runStates(l *lab.Lab) map[string]int {
	states := map[string]int{}
	re := regexp.MustCompile(`"state":"([a-z-]+)"`)
	for _, n := range l.Nodes {
		files, _ := filepath.Glob(filepath.Join(n.Dir, "var-lib-routepush", "runs", "*.json"))
		if len(files) == 0 {
			continue
		}
		b, _ := os.ReadFile(files[len(files)-1])
		if m := re.FindAllStringSubmatch(string(b), -1); len(m) > 0 {
			states[m[len(m)-1][1]]++
		}
	}
	return states
}

func lockedNodes(l *lab.Lab) []string {
	var locked []string
	for _, n := range l.Nodes {
		if _, err := os.Stat(filepath.Join(n.Dir, "var-lib-routepush", "lock")); err == nil {
			locked = append(locked, n.Name)
		}
	}
	return locked
}

// Fault 1: routepush is killed (-9) in the middle of a 50-node apply, 40
// nodes verified and 10 with their batch in flight. The locks it left (on
// every node: a run holds them until its outcome is final) name it; `routepush rollback`, a fresh process, restores every node byte for
// byte from the records on the nodes and releases the locks; --check then
// tells the truth.
func TestKilledRunRolledBackByAnotherProcess(t *testing.T) {
	t.Parallel()
	faultCase(t, "1 (kill -9 mid-apply of 50 nodes, routepush rollback from a fresh process)")
	l := newLab(t, 50)
	for _, n := range l.Nodes[40:] {
		slowNode(t, l, n, 15)
	}
	before := snapshot(t, l)
	inv := l.InventoryPath()

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	done := make(chan lab.Result, 1)
	go func() {
		res, _ := l.Routepush(ctx, routepush, "--inventory", inv)
		done <- res
	}()
	waitForStates(t, l, map[string]int{"verified": 40, "applying": 10})
	pid := routepushPID(t, l)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.Code == 0 {
		t.Fatalf("the killed run exited 0:\n%s", res)
	}
	// A run holds every node's lock until its outcome is final, verified
	// nodes included: the killed one left all 50.
	if locked := lockedNodes(l); len(locked) != 50 {
		t.Errorf("locked after the kill: %v, want all 50", locked)
	}

	// A new run is refused at the first node by name, locked alone first,
	// and says what to do.
	res := rp(t, l, "--inventory", inv)
	if res.Code != 1 || !regexp.MustCompile(`node-0: locked by run \S+ \(routepush pid \d+ on .*that process is gone: .routepush rollback --run \S+.`).MatchString(res.Stderr) {
		t.Errorf("run over the leftover locks: exit %d, want 1 naming the dead run", res.Code)
	}

	res = rp(t, l, "rollback", "--inventory", inv)
	if res.Code != 0 || !strings.Contains(res.Stdout, "50 nodes restored") {
		t.Fatalf("rollback: exit %d", res.Code)
	}
	assertUnchanged(t, l, before)
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked after rollback: %v", locked)
	}
	if states := runStates(l); states["rolled-back"] != 50 {
		t.Errorf("records after rollback: %v, want 50 rolled-back", states)
	}
	if res := rp(t, l, "--inventory", inv, "--check"); res.Code != 2 || strings.Count(res.Stdout, "\n  + ") != 50*49 {
		t.Errorf("--check after rollback: exit %d, want 2 and every route to add", res.Code)
	}
	if res := rp(t, l, "rollback", "--inventory", inv); res.Code != 1 || !strings.Contains(res.Stderr, "no node has a run to roll back") {
		t.Errorf("second rollback: exit %d, want 1: nothing left", res.Code)
	}
}

// Fault 4: two runs started at once on the same nodes. One wins; the other
// fails naming the lock's holder and changes nothing; they never
// interleave, and the lab ends converged.
func TestConcurrentRunsDoNotInterleave(t *testing.T) {
	t.Parallel()
	faultCase(t, "4 (two runs at once; --wait-lock)")
	l := newLab(t, 5)
	slowNode(t, l, l.Nodes[4], 3)
	inv := l.InventoryPath()
	results := make(chan lab.Result, 2)
	for range 2 {
		go func() {
			res, _ := l.Routepush(testContext(t), routepush, "--inventory", inv)
			results <- res
		}()
	}
	a, b := <-results, <-results
	if a.Code == b.Code || (a.Code != 0 && b.Code != 0) {
		t.Fatalf("exits %d and %d, want one 0 and one 1:\n%s\n%s", a.Code, b.Code, a, b)
	}
	loser := a
	if a.Code == 0 {
		loser = b
	}
	if loser.Code != 1 || !regexp.MustCompile(`node-\d: locked by run \d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6} \(routepush pid \d+ on `).MatchString(loser.Stderr) {
		t.Errorf("the losing run: exit %d, want 1 naming the holder:\n%s", loser.Code, loser.Stderr)
	}
	if strings.Contains(loser.Stdout, "changed ") {
		t.Errorf("the losing run changed nodes:\n%s", loser.Stdout)
	}
	assertConverged(t, l)
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked: %v", locked)
	}

	// With --wait-lock the second waits for the first instead, and finds
	// the nodes in sync.
	ipRun(t, l.Nodes[0], "route", "flush", "proto", "114")
	for range 2 {
		go func() {
			res, _ := l.Routepush(testContext(t), routepush, "--inventory", inv, "--wait-lock", "30s")
			results <- res
		}()
	}
	a, b = <-results, <-results
	if a.Code != 0 || b.Code != 0 || !strings.Contains(a.Stdout+b.Stdout, "5 in sync") {
		t.Errorf("with --wait-lock: exits %d and %d, want both 0 and one in sync:\n%s\n%s", a.Code, b.Code, a, b)
	}
	assertConverged(t, l)
	if res := rp(t, l, "--inventory", inv, "--check"); res.Code != 0 {
		t.Errorf("--check after both: exit %d, want 0", res.Code)
	}
}

// Fault 3: a node whose link is down cannot be connected to. By default
// nothing changes anywhere; with --max-unreachable 1 it is left out and
// listed, and the others converge (routes to it included).
func TestUnreachableAtConnect(t *testing.T) {
	t.Parallel()
	faultCase(t, "3 (link down at connect; --max-unreachable 1)")
	l := newLab(t, 5)
	ipRun(t, l.Nodes[2], "link", "set", "eth0", "down")
	before := snapshot(t, l)
	inv := l.InventoryPath()
	res := rp(t, l, "--inventory", inv, "--connect-timeout", "2s")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-2: dial tcp 198.18.0.12:22") {
		t.Errorf("exit %d, want 1 naming node-2", res.Code)
	}
	assertUnchanged(t, l, before)

	res = rp(t, l, "--inventory", inv, "--connect-timeout", "2s", "--max-unreachable", "1")
	if res.Code != 0 || !regexp.MustCompile(`(?m)^node-2 +unreachable`).MatchString(res.Stdout) || !strings.Contains(res.Stdout, "note: node-2 was left out, unreachable") {
		t.Fatalf("--max-unreachable 1: exit %d", res.Code)
	}
	for i, n := range l.Nodes {
		if i == 2 {
			if now := detailed(t, l, n); now != before[n.Name] {
				t.Errorf("node-2 was changed:\n--- before\n%s--- after\n%s", before[n.Name], now)
			}
			continue
		}
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s:\n%s\nwant\n%s", n.Name, got, want)
		}
	}
	// --check tells the truth: the reachable nodes are in sync.
	res = rp(t, l, "--inventory", inv, "--connect-timeout", "2s", "--max-unreachable", "1", "--check")
	if res.Code != 0 || !strings.Contains(res.Stdout, "4 in sync") || !strings.Contains(res.Stdout, "note: node-2 was left out") {
		t.Errorf("--check: exit %d, want 0, 4 in sync and node-2 left out", res.Code)
	}
}

// Fault 5: SIGINT in the middle of an apply (nine nodes verified, one with
// its batch held back): every node is rolled back and routepush exits 130.
func TestInterruptMidApplyRollsBack(t *testing.T) {
	t.Parallel()
	faultCase(t, "5 (SIGINT mid-apply, exit 130)")
	l := newLab(t, 10)
	slowNode(t, l, l.Nodes[9], 10)
	before := snapshot(t, l)
	done := startRun(t, l)
	waitForStates(t, l, map[string]int{"verified": 9, "applying": 1})
	pid := routepushPID(t, l)
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.Code != 130 || !strings.Contains(res.Stderr, "run interrupted") {
		t.Errorf("exit %d, want 130 and the interrupt named:\n%s", res.Code, res)
	}
	assertUnchanged(t, l, before)
	if states := runStates(l); states["rolled-back"] != 10 {
		t.Errorf("records: %v, want 10 rolled-back", states)
	}
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked: %v", locked)
	}
	assertCheckTellsTruth(t, l)
}

// changeBeforeVerify is a ForceCommand that, once a batch has gone to ip,
// deletes node-0's pod route behind routepush's back before the verify
// read: someone else changing the table between apply and verify.
const changeBeforeVerify = `#!/bin/sh
` + lab.ExecSFTP + `
seen=
while IFS= read -r line; do
	case "$line" in
	"route add "*) seen=1 ;;
	"route show"*) if [ -n "$seen" ]; then sleep 0.3; ip route del 100.64.0.0/24 >&2; seen=; fi ;;
	esac
	printf '%s\n' "$line"
done | sh -c "$SSH_ORIGINAL_COMMAND"
`

// Fault 6: a route deleted by someone else between apply and verify: verify
// fails naming it, every node is rolled back.
func TestTableChangedBeforeVerify(t *testing.T) {
	t.Parallel()
	faultCase(t, "6 (route deleted between apply and verify)")
	l := newLab(t, 4)
	withForceCommand(t, l, l.Nodes[1], "change-before-verify", changeBeforeVerify)
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath())
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-1: verify failed: route 100.64.0.0/24 via 198.18.0.10 proto 114 is missing") {
		t.Errorf("exit %d, want 1 naming node-1's missing route", res.Code)
	}
	assertUnchanged(t, l, before)
	if states := runStates(l); states["rolled-back"] != 4 {
		t.Errorf("records: %v, want 4 rolled-back", states)
	}
	assertCheckTellsTruth(t, l)
}

// A second SIGINT while the first one's rollback waits on a slow node
// abandons it at once, exit 130, and prints the command that finishes it;
// that command restores every node.
func TestSecondInterruptPrintsRollbackCommand(t *testing.T) {
	t.Parallel()
	faultCase(t, "5b (second SIGINT abandons the rollback, printed command finishes it)")
	l := newLab(t, 5)
	slowNodeOn(t, l, l.Nodes[4], 8, `"route add "*|"route del "*`) // its batch and its rollback are slow
	before := snapshot(t, l)
	done := startRun(t, l)
	waitForStates(t, l, map[string]int{"verified": 4})
	pid := routepushPID(t, l)
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the second interrupt took %s to end the run", waited)
	}
	m := regexp.MustCompile("interrupted again: rollback abandoned; nodes may be half-changed: finish with `routepush (rollback --run \\S+ [^`]*--inventory [^`]*)`").FindStringSubmatch(res.Stderr)
	if res.Code != 130 || m == nil {
		t.Fatalf("exit %d, want 130 and the command to finish:\n%s", res.Code, res)
	}
	if res := rp(t, l, strings.Fields(m[1])...); res.Code != 0 {
		t.Fatalf("the printed rollback: exit %d", res.Code)
	}
	assertUnchanged(t, l, before)
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked: %v", locked)
	}
	assertCheckTellsTruth(t, l)
}

// Fault 2: the sshd of a node is killed (with its sessions, ip included)
// while that node's batch is in flight. routepush tries to reach it again,
// reports it unknown with the command that restores it, and rolls every
// other node back; once its sshd is back, that command restores it.
func TestSSHDKilledMidApply(t *testing.T) {
	t.Parallel()
	faultCase(t, "2 (sshd killed mid-apply: node unknown, the others rolled back, then restored)")
	l := newLab(t, 5)
	slowNode(t, l, l.Nodes[4], 5)
	before := snapshot(t, l)
	done := startRun(t, l, "--connect-timeout", "2s")
	waitForStates(t, l, map[string]int{"verified": 4})
	if err := l.StopSSHD(testContext(t), l.Nodes[4]); err != nil {
		t.Fatal(err)
	}
	res := <-done
	m := regexp.MustCompile("node-4: connection lost mid-batch .* and not regained: whether its routes changed is unknown; once it is reachable, `routepush rollback --run (\\S+)` restores it").FindStringSubmatch(res.Stderr)
	if res.Code != 1 || m == nil || !regexp.MustCompile(`(?m)^node-4 +unknown`).MatchString(res.Stdout) {
		t.Fatalf("exit %d, want 1 and node-4 unknown with the command to restore it:\n%s", res.Code, res)
	}
	now := snapshot(t, l)
	for _, n := range l.Nodes[:4] {
		if now[n.Name] != before[n.Name] {
			t.Errorf("%s was not rolled back:\n%s\n%s", n.Name, now[n.Name], res)
		}
	}
	if err := l.StartSSHD(testContext(t), l.Nodes[4]); err != nil {
		t.Fatal(err)
	}
	if res := rp(t, l, "rollback", "--run", m[1], "--inventory", l.InventoryPath()); res.Code != 0 {
		t.Fatalf("rollback once node-4 is back: exit %d", res.Code)
	}
	assertUnchanged(t, l, before)
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked: %v", locked)
	}
	assertCheckTellsTruth(t, l)
}

// assertCheckTellsTruth runs --check on a lab whose nodes are all as before
// a run: every route is still to add, and nothing is stale or refused.
func assertCheckTellsTruth(t *testing.T, l *lab.Lab) {
	t.Helper()
	n := len(l.Nodes)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--check")
	if res.Code != 2 || strings.Count(res.Stdout, "\n  + ") != n*(n-1) || strings.Contains(res.Stdout, "stale") {
		t.Errorf("--check after the fault: exit %d, want 2 and all %d routes to add", res.Code, n*(n-1))
	}
}

// Each node keeps the newest --keep-runs records.
func TestKeepRuns(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	var ids []string
	for range 3 {
		res := rp(t, l, "--inventory", l.InventoryPath(), "--keep-runs", "2")
		m := regexp.MustCompile(`(?m)^run (\S+)$`).FindStringSubmatch(res.Stdout)
		if res.Code != 0 || m == nil {
			t.Fatalf("apply: exit %d", res.Code)
		}
		ids = append(ids, m[1])
		for _, n := range l.Nodes {
			ipRun(t, n, "route", "flush", "proto", "114")
		}
	}
	for _, n := range l.Nodes {
		files, _ := filepath.Glob(filepath.Join(n.Dir, "var-lib-routepush", "runs", "*.json"))
		var got []string
		for _, f := range files {
			got = append(got, strings.TrimSuffix(filepath.Base(f), ".json"))
		}
		if strings.Join(got, " ") != strings.Join(ids[1:], " ") {
			t.Errorf("%s keeps %v, want the newest two of %v", n.Name, got, ids)
		}
	}
}

// On a terminal a run of more than two seconds shows its progress on
// stderr (nodes done, read / verified / failed, the slowest node); in a
// pipe it shows none.
func TestProgressOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	slowNode(t, l, l.Nodes[2], 4)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		seen <- b.String()
	}()
	res, err := l.RoutepushWith(testContext(t), lab.RunOptions{Cmd: func(c *exec.Cmd) {
		c.Stdin, c.Stderr = tty, tty
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}}, routepush, "--inventory", l.InventoryPath())
	tty.Close()
	terminal := <-seen
	if err != nil || res.Code != 0 {
		t.Fatalf("run on a terminal: %v %s", err, res)
	}
	if !regexp.MustCompile(`routepush +\d/3 nodes .*read \d, verified \d, failed 0; slowest node-2`).MatchString(terminal) {
		t.Errorf("no progress on the terminal:\n%q", terminal)
	}
	for _, n := range l.Nodes {
		ipRun(t, n, "route", "flush", "proto", "114")
	}
	if res := rp(t, l, "--inventory", l.InventoryPath()); res.Code != 0 || strings.Contains(res.Stderr, "slowest") || strings.Contains(res.Stderr, "nodes ") {
		t.Errorf("in a pipe: exit %d, stderr %q", res.Code, res.Stderr)
	}
}

// Records are pruned oldest first by the node's own clock, never the one
// just written (a bastion whose clock is behind names its runs as older
// than the ones there) and never one whose run still needs a rollback.
func TestKeepRunsByNodeClockAndState(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-I (records pruned by the node's clock and state, never the new one)")
	l := newLab(t, 2)
	runs := filepath.Join(l.Nodes[0].Dir, "var-lib-routepush", "runs")
	if err := os.MkdirAll(runs, 0o700); err != nil {
		t.Fatal(err)
	}
	// Two runs "from the future" (a bastion with a clock ahead), one of
	// them killed mid-apply, written an hour ago by the node's clock.
	old := time.Now().Add(-time.Hour)
	for id, state := range map[string]string{"29991231T000000.000Z-aaaaaa": "verified", "29991231T000000.000Z-bbbbbb": "applying"} {
		path := filepath.Join(runs, id+".json")
		writeFile(t, path, `{"run_id":"`+id+`","node":"node-0","state":"applying","families":["IPv4"],"snapshot_digest":"","undo":""}`+"\n"+`{"state":"`+state+`","time":"2999-12-31T00:00:00Z"}`+"\n")
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	res := rp(t, l, "--inventory", l.InventoryPath(), "--keep-runs", "1", "--limit", "node-0")
	m := regexp.MustCompile(`(?m)^run (\S+)$`).FindStringSubmatch(res.Stdout)
	if res.Code != 0 || m == nil {
		t.Fatalf("apply: exit %d", res.Code)
	}
	files, _ := filepath.Glob(filepath.Join(runs, "*.json"))
	var got []string
	for _, f := range files {
		got = append(got, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	want := []string{m[1], "29991231T000000.000Z-bbbbbb"}
	slices.Sort(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("node-0 keeps %v, want the new run and the unsettled one: %v", got, want)
	}
}

// Nodes that crashed after a run and came back. A record of a run that
// changed only the kernel's tables (no --persist) is not synced to disk:
// node-1 restarted (its boot id is another, its routes went with the
// restart, and the run's lock survived), node-2's record was left empty by
// the crash. `routepush rollback --run` undoes node-0, which is as the run
// left it, finds node-1 and node-2 restarted, releases node-1's lock and
// sends neither anything.
func TestRollbackAfterNodesRestarted(t *testing.T) {
	t.Parallel()
	faultCase(t, "17-restarted (records without fsync: one from another boot with its lock left, one emptied by a crash; rollback sends them nothing)")
	l := newLab(t, 3)
	before := snapshot(t, l)
	inv := l.InventoryPath()
	res := rp(t, l, "--inventory", inv)
	m := regexp.MustCompile(`(?m)^run (\S+)$`).FindStringSubmatch(res.Stdout)
	if res.Code != 0 || m == nil {
		t.Fatalf("apply: exit %d", res.Code)
	}
	id := m[1]
	record := func(n *lab.Node) string { return filepath.Join(n.Dir, "var-lib-routepush", "runs", id+".json") }

	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	rec := readFile(t, record(l.Nodes[1]))
	nodeBoot := `"boot_id":"` + strings.TrimSpace(string(boot)) + `"`
	if !strings.Contains(rec, nodeBoot) {
		t.Fatalf("node-1's record does not name the node's boot (%s):\n%s", nodeBoot, rec)
	}
	if err := os.WriteFile(record(l.Nodes[1]), []byte(strings.ReplaceAll(rec, nodeBoot, `"boot_id":"00000000-0000-4000-8000-000000000000"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	var first struct {
		Holder json.RawMessage `json:"holder"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(rec, "\n", 2)[0]), &first); err != nil || len(first.Holder) == 0 {
		t.Fatalf("node-1's record: %v", err)
	}
	if err := os.WriteFile(filepath.Join(l.Nodes[1].Dir, "var-lib-routepush", "lock"), append(first.Holder, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	ipRun(t, l.Nodes[1], "route", "flush", "proto", "114")
	if err := os.WriteFile(record(l.Nodes[2]), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	left := snapshot(t, l)

	res = rp(t, l, "rollback", "--inventory", inv, "--run", id)
	if res.Code != 0 || !strings.Contains(res.Stdout, "1 nodes restored") {
		t.Fatalf("rollback: exit %d, want 0 and node-0 restored", res.Code)
	}
	for _, n := range []string{"node-1", "node-2"} {
		if !regexp.MustCompile(`(?m)^` + n + `\s+` + regexp.QuoteMeta(id) + `\s+restarted\s+restarted$`).MatchString(res.Stdout) {
			t.Errorf("rollback's summary does not find %s restarted:\n%s", n, res.Stdout)
		}
	}
	want := map[string]string{"node-0": before["node-0"], "node-1": left["node-1"], "node-2": left["node-2"]}
	assertUnchanged(t, l, want)
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked after rollback: %v", locked)
	}
}
