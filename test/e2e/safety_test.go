package e2e

// Issue 14, "safe changes": the fault suite's cases 14-A to 14-F.
//
// Every fault here happens at a moment a node's ForceCommand script (hold)
// chooses, not after a sleep: the script logs each line routepush sends on
// the node's stdin, and at the chosen line it creates <dir>/paused and
// waits for <dir>/go before passing the line on. The test waits for the
// first file, does its part (a route added behind routepush's back, a
// SIGINT, another routepush), then creates the second.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// holdScript is a node's ForceCommand that holds one line of a session's
// stdin back: the {{nth}}-th line matching {{pattern}} (a shell case
// pattern), counted per session, in the first session to reach one (mkdir
// of {{dir}}/claimed makes that once per arming). It logs every line to
// {{dir}}/lines as "<session pid> <line>", and the held one as "<session
// pid> HELD <line>" before it creates {{dir}}/paused.
//
// The test releases it by writing {{dir}}/go: "forward" passes the line
// on; "drop" ends the session without it, as a line that never arrived
// (slowBatch's "SSH session gone"), for a run that has already ended. The
// test knows that for sure; a script asking whether sshd's session process
// is still there races with its teardown (seen: a line passed on after
// routepush had exited). {{dir}}/released says which was done.
//
// With {{gw}} set, `route add` and `route replace` lines via that gateway
// get 198.19.255.254 instead, which is not on the node's link: the kernel
// refuses that one line ("Nexthop has invalid gateway"), as rejectFilter.
const holdScript = `#!/bin/sh
` + lab.ExecSFTP + `
dir='{{dir}}'
printf '%s SESSION %s\n' "$$" "$SSH_ORIGINAL_COMMAND" >> "$dir/lines"
n=0
while IFS= read -r line; do
	case "$line" in
	{{pattern}})
		n=$((n+1))
		if [ "$n" -eq {{nth}} ] && mkdir "$dir/claimed" 2>/dev/null; then
			printf '%s HELD %s\n' "$$" "$line" >> "$dir/lines"
			mkdir "$dir/paused"
			until [ -s "$dir/go" ]; do sleep 0.01; done
			if [ "$(cat "$dir/go")" = drop ]; then
				echo dropped > "$dir/released.tmp" && mv "$dir/released.tmp" "$dir/released"
				exit 1
			fi
			echo forwarded > "$dir/released.tmp" && mv "$dir/released.tmp" "$dir/released"
		fi ;;
	esac
	gw='{{gw}}'
	if [ -n "$gw" ]; then
		case "$line" in
		"route add "*" via $gw "*|"route replace "*" via $gw "*) line="${line%% via *} via 198.19.255.254 ${line#* via $gw }" ;;
		esac
	fi
	printf '%s %s\n' "$$" "$line" >> "$dir/lines"
	printf '%s\n' "$line"
done | sh -c "$SSH_ORIGINAL_COMMAND"
`

// Patterns for holdNode.
const (
	atShow      = `"route show"*`                   // a `route show` line: a read, a re-check or a verify
	atBatchLine = `"route add "*|"route replace "*` // a line that adds a route: the batch proper
	atDel       = `"route del "*`                   // a deletion: a rollback's first lines, in a fresh lab
)

// hold is a node whose sessions go through holdScript.
type hold struct {
	node *lab.Node
	dir  string
}

// holdNode makes node n hold back the nth line matching pattern (per
// session); rejectVia, if valid, also makes its kernel refuse the routes
// via that gateway. The hold is released when the test ends, whatever
// happened.
func holdNode(t *testing.T, l *lab.Lab, n *lab.Node, name, pattern string, nth int, rejectVia string) *hold {
	t.Helper()
	h := &hold{node: n, dir: filepath.Join(n.Dir, "hold-"+name)}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.NewReplacer("{{dir}}", h.dir, "{{pattern}}", pattern, "{{nth}}", strconv.Itoa(nth), "{{gw}}", rejectVia).Replace(holdScript)
	withForceCommand(t, l, n, "hold-"+name+".sh", script)
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(h.dir, "go"), []byte("drop"), 0o644) })
	return h
}

// paused reports whether the script is holding (or has held) its line.
func (h *hold) paused() bool {
	_, err := os.Stat(filepath.Join(h.dir, "paused"))
	return err == nil
}

// waitPaused waits until the node holds its line. If the run ends first,
// the hold never happened: it returns the run's result and false, for the
// caller to say which behaviour that shows.
func (h *hold) waitPaused(t *testing.T, done <-chan lab.Result) (lab.Result, bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !h.paused() {
		select {
		case res := <-done:
			if h.paused() {
				t.Fatalf("%s paused, but the run had already ended:\n%s", h.node.Name, res)
			}
			return res, false
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held its line in 60 s; lines seen:\n%s", h.node.Name, h.lines())
		}
	}
	return lab.Result{}, true
}

// release lets the held line go on to ip.
func (h *hold) release(t *testing.T) {
	t.Helper()
	writeFile(t, filepath.Join(h.dir, "go"), "forward")
}

// drop ends the held session without passing its line on: for a run that
// has ended, whose connection is gone, so the line never arrives.
func (h *hold) drop(t *testing.T) {
	t.Helper()
	writeFile(t, filepath.Join(h.dir, "go"), "drop")
}

// waitReleased waits for the script to act on the release, and returns
// "forwarded" or "dropped" (the session had gone).
func (h *hold) waitReleased(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(h.dir, "released")); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the held line was never passed on or dropped after its release", h.node.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rearm makes the script hold a line again, in the next session to reach
// one.
func (h *hold) rearm(t *testing.T) {
	t.Helper()
	for _, f := range []string{"claimed", "paused", "go", "released", "lines"} {
		if err := os.RemoveAll(filepath.Join(h.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

func (h *hold) lines() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "lines"))
	return string(b)
}

// heldLine is the line held, and before are the lines its session passed
// on before it.
func (h *hold) heldLine() (held string, before []string) {
	var pid string
	var all [][2]string
	sc := bufio.NewScanner(strings.NewReader(h.lines()))
	for sc.Scan() {
		p, rest, _ := strings.Cut(sc.Text(), " ")
		if line, ok := strings.CutPrefix(rest, "HELD "); ok && pid == "" {
			pid, held = p, line
			break
		}
		all = append(all, [2]string{p, rest})
	}
	for _, l := range all {
		if l[0] == pid && !strings.HasPrefix(l[1], "SESSION ") {
			before = append(before, l[1])
		}
	}
	return held, before
}

// assertNoLocks fails if a node is still locked.
func assertNoLocks(t *testing.T, l *lab.Lab) {
	t.Helper()
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked: %v", locked)
	}
}

// interrupt sends SIGINT to the lab's routepush run and waits until the
// kernel has delivered it (no longer pending), so that it lands while the
// held line is still held.
func interrupt(t *testing.T, l *lab.Lab) int {
	t.Helper()
	pid := routepushPID(t, l)
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return pid // gone
		}
		m := regexp.MustCompile(`(?m)^ShdPnd:\s*([0-9a-f]+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no ShdPnd in /proc/%d/status", pid)
		}
		if mask, _ := strconv.ParseUint(string(m[1]), 16, 64); mask&(1<<(int(syscall.SIGINT)-1)) == 0 {
			return pid
		}
	}
	t.Fatalf("SIGINT to routepush (pid %d) still pending after 5 s", pid)
	return pid
}

// awaitExit waits up to d for the run to end.
func awaitExit(done <-chan lab.Result, d time.Duration) (lab.Result, bool) {
	select {
	case res := <-done:
		return res, true
	case <-time.After(d):
		return lab.Result{}, false
	}
}

func row(node, outcome string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(node) + ` +` + regexp.QuoteMeta(outcome) + `\b`)
}

// The fixture itself, on today's code: a read held at its `route show`
// (the node not yet locked: a run locks a node after its read, but the
// first by name, locked alone before it; nothing recorded), then a batch
// held at its first
// line (the others verified, the held node's table untouched): each pause
// happens once, where it should, and releasing it lets the run converge.
func TestSafeFixtureHolds(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	read := holdNode(t, l, l.Nodes[2], "read", atShow, 1, "")
	before := snapshot(t, l)
	done := startRun(t, l)
	if res, ok := read.waitPaused(t, done); !ok {
		t.Fatalf("node-2's read was never held:\n%s", res)
	}
	if held, _ := read.heldLine(); held != "route show table main" {
		t.Errorf("held %q, want the read's route show line; lines:\n%s", held, read.lines())
	}
	if locked := strings.Join(lockedNodes(l), ","); strings.Contains(locked, "node-2") || !strings.Contains(locked, "node-0") {
		t.Errorf("locked while node-2's read is held: %s; want node-0 (locked alone, before its read), not node-2 (locked after it)", locked)
	}
	if st := runStates(l); st["verified"] != 0 {
		t.Errorf("nodes verified while a read is held: %v", st)
	}
	read.release(t)
	if res := <-done; res.Code != 0 {
		t.Fatalf("run after the read's release: %s", res)
	}
	if got := read.waitReleased(t); got != "forwarded" {
		t.Errorf("released line %s", got)
	}
	assertConverged(t, l)
	for _, n := range l.Nodes {
		ipRun(t, n, "route", "flush", "proto", "114")
	}
	assertUnchanged(t, l, before)

	batch := holdNode(t, l, l.Nodes[2], "batch", atBatchLine, 1, "")
	done = startRun(t, l)
	if res, ok := batch.waitPaused(t, done); !ok {
		t.Fatalf("node-2's batch was never held:\n%s", res)
	}
	waitForStates(t, l, map[string]int{"verified": 2})
	if got := detailed(t, l, l.Nodes[2]); got != before["node-2"] {
		t.Errorf("node-2 changed while its batch is held:\n%s", got)
	}
	if strings.Count(batch.lines(), " HELD ") != 1 {
		t.Errorf("more than one line held:\n%s", batch.lines())
	}
	batch.release(t)
	if res := <-done; res.Code != 0 {
		t.Fatalf("run after the batch's release: %s", res)
	}
	assertConverged(t, l)
}

// foreign is the route someone adds on node-0 in 14-A: to node-2's pod
// CIDR, a destination routepush plans there.
var foreign = []string{"route", "add", "100.64.2.0/24", "via", "198.18.0.12", "proto", "static"}

// 14-A1: a foreign route to a planned destination added after the read
// and before the re-check routepush makes in the batch session: node-0 is
// refused, not applied, the route stays, every other node is as before.
func TestSafeCompareBeforeSwap(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-A1 (foreign route after the read, before the re-check: node refused)")
	l := newLab(t, 4)
	// The second route show of node-0's batch session: the re-check
	// (node-0 is locked before its read, first by name, so no read under
	// the lock comes between).
	h := holdNode(t, l, l.Nodes[0], "recheck", atShow, 2, "")
	want := snapshot(t, l)
	done := startRun(t, l)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-0's batch session never sent a second route show line (no re-check, and no verify either):\n%s\nlines:\n%s", res, h.lines())
	}
	held, sent := h.heldLine()
	for _, line := range sent {
		if strings.HasPrefix(line, "route ") && !strings.HasPrefix(line, "route show") {
			h.release(t)
			res := <-done
			t.Fatalf("node-0's batch session got batch lines before its second route show: routepush does not read the table again before its batch (%q held; sent before it: %q)\n%s", held, sent, res)
		}
	}
	ipRun(t, l.Nodes[0], foreign...)
	want["node-0"] = detailed(t, l, l.Nodes[0])
	foreignLine := regexp.MustCompile(`(?m)^unicast 100\.64\.2\.0/24 via 198\.18\.0\.12 dev eth0 proto static .*$`).FindString(want["node-0"])
	if foreignLine == "" {
		t.Fatalf("the foreign route is not in node-0's table:\n%s", want["node-0"])
	}
	h.release(t)
	res := <-done
	t.Logf("run: %s", res)
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	if !row("node-0", "refused").MatchString(res.Stdout) {
		t.Errorf("the report does not show node-0 refused")
	}
	for _, s := range []string{"node-0:", "table changed since it was read", "proto static"} {
		if !strings.Contains(res.Stderr, s) {
			t.Errorf("stderr does not contain %q", s)
		}
	}
	if lines := strings.Join(sent, "\n") + h.lines(); strings.Contains(lines, "route replace ") {
		t.Errorf("node-0 was sent route replace lines:\n%s", h.lines())
	}
	assertUnchanged(t, l, want)
	if got := detailed(t, l, l.Nodes[0]); !strings.Contains(got, foreignLine+"\n") {
		t.Errorf("the foreign route %q is gone or changed:\n%s", foreignLine, got)
	}
	assertNoLocks(t, l)
	res = rp(t, l, "--inventory", l.InventoryPath(), "--check")
	if res.Code != 1 || !regexp.MustCompile(`(?m)^  ! 100\.64\.2\.0/24 via 198\.18\.0\.12 dev eth0 proto static\b`).MatchString(res.Stdout) {
		t.Errorf("--check after: exit %d, want 1 and the foreign route as a conflict (!)", res.Code)
	}
}

// 14-A2: the same foreign route added after the re-check, while the batch
// lines are held back: routepush's `route add` fails in the kernel (File
// exists) instead of overwriting it; the run fails naming node-0 and the
// line, every node is rolled back, the foreign route stays as it is.
func TestSafeAddNeverOverwrites(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-A2 (foreign route after the re-check: route add fails, never overwrites)")
	l := newLab(t, 4)
	h := holdNode(t, l, l.Nodes[0], "batch", atBatchLine, 1, "")
	want := snapshot(t, l)
	done := startRun(t, l)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-0's batch was never held:\n%s", res)
	}
	held, sent := h.heldLine()
	if !strings.HasPrefix(held, "route add ") {
		t.Errorf("node-0's first batch line is %q, want a route add (sent before it: %q)", held, sent)
	}
	ipRun(t, l.Nodes[0], foreign...)
	want["node-0"] = detailed(t, l, l.Nodes[0])
	foreignLine := regexp.MustCompile(`(?m)^unicast 100\.64\.2\.0/24 via 198\.18\.0\.12 dev eth0 proto static .*$`).FindString(want["node-0"])
	h.release(t)
	res := <-done
	t.Logf("run: %s", res)
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	for _, s := range []string{"node-0", "File exists", "route add 100.64.2.0/24 via 198.18.0.12"} {
		if !strings.Contains(res.Stderr, s) {
			t.Errorf("stderr does not contain %q", s)
		}
	}
	if strings.Contains(h.lines(), "route replace ") {
		t.Errorf("node-0 was sent route replace lines:\n%s", h.lines())
	}
	if got := detailed(t, l, l.Nodes[0]); foreignLine == "" || !strings.Contains(got, foreignLine+"\n") {
		t.Errorf("the foreign route %q was overwritten or deleted:\n%s", foreignLine, got)
	}
	assertUnchanged(t, l, want)
	assertNoLocks(t, l)
}

// checkInterrupted asserts what every 14-B case ends with.
func checkInterrupted(t *testing.T, l *lab.Lab, res lab.Result, before map[string]string) {
	t.Helper()
	if res.Code != 130 {
		t.Errorf("exit %d, want 130", res.Code)
	}
	assertUnchanged(t, l, before)
	assertNoLocks(t, l)
	assertCheckTellsTruth(t, l)
}

// finishHeld waits (up to 10 s) for an interrupted run to end by itself,
// then drops every held line (the run has ended: its lines never arrive);
// if it does not end, it releases them to ip and waits for the run.
func finishHeld(t *testing.T, done <-chan lab.Result, holds ...*hold) lab.Result {
	t.Helper()
	res, ended := awaitExit(done, 10*time.Second)
	if !ended {
		t.Logf("routepush still runs 10 s after SIGINT with lines held; releasing them")
	}
	for _, h := range holds {
		if ended {
			h.drop(t) // routepush and its connections are gone
		} else {
			h.release(t)
		}
	}
	if !ended {
		res = <-done
	}
	for _, h := range holds {
		if h.paused() {
			t.Logf("%s: held line %s after its release", h.node.Name, h.waitReleased(t))
		}
	}
	return res
}

// 14-B1: SIGINT while a node's read is held: exit 130, nothing changed,
// no lock left. Three times over.
func TestSafeInterruptDuringRead(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-B1 (SIGINT during the read, x3)")
	l := newLab(t, 5)
	h := holdNode(t, l, l.Nodes[2], "read", atShow, 1, "")
	before := snapshot(t, l)
	for i := range 3 {
		h.rearm(t)
		done := startRun(t, l)
		if res, ok := h.waitPaused(t, done); !ok {
			t.Fatalf("round %d: node-2's read was never held:\n%s", i+1, res)
		}
		interrupt(t, l)
		res := finishHeld(t, done, h)
		t.Logf("round %d: %s", i+1, res)
		checkInterrupted(t, l, res, before)
		if t.Failed() {
			t.Fatalf("round %d failed", i+1)
		}
	}
}

// 14-B2: SIGINT during apply, three nodes verified and two with their
// batch held: exit 130, every node as before. Three times over.
func TestSafeInterruptDuringApply(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-B2 (SIGINT mid-apply, 3 verified, 2 mid-batch, x3)")
	l := newLab(t, 5)
	holds := []*hold{
		holdNode(t, l, l.Nodes[3], "batch", atBatchLine, 1, ""),
		holdNode(t, l, l.Nodes[4], "batch", atBatchLine, 1, ""),
	}
	before := snapshot(t, l)
	for i := range 3 {
		for _, h := range holds {
			h.rearm(t)
		}
		done := startRun(t, l)
		for _, h := range holds {
			if res, ok := h.waitPaused(t, done); !ok {
				t.Fatalf("round %d: %s's batch was never held:\n%s", i+1, h.node.Name, res)
			}
		}
		waitForStates(t, l, map[string]int{"verified": 3})
		// A run holds every lock until its outcome is final, verified
		// nodes' too: an interrupt between a node's verify and its unlock
		// cannot leave it changed and locked, because there is no unlock
		// before the end.
		if locked := lockedNodes(l); len(locked) != 5 {
			t.Errorf("round %d: locked with 3 verified: %v, want all 5", i+1, locked)
		}
		interrupt(t, l)
		res := finishHeld(t, done, holds...)
		t.Logf("round %d: %s", i+1, res)
		checkInterrupted(t, l, res, before)
		if t.Failed() {
			t.Fatalf("round %d failed", i+1)
		}
	}
}

// 14-B3: SIGINT during the rollback itself: node-3's kernel refuses a
// route once the others are verified, and node-4's rollback is held at
// its first route del line when the SIGINT comes. Exit 130, every node
// as before. Three times over.
func TestSafeInterruptDuringRollback(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-B3 (SIGINT during the rollback, x3)")
	l := newLab(t, 5)
	fail := holdNode(t, l, l.Nodes[3], "batch", atBatchLine, 1, l.Nodes[4].Addr.String())
	undo := holdNode(t, l, l.Nodes[4], "undo", atDel, 1, "")
	before := snapshot(t, l)
	for i := range 3 {
		fail.rearm(t)
		undo.rearm(t)
		done := startRun(t, l)
		if res, ok := fail.waitPaused(t, done); !ok {
			t.Fatalf("round %d: node-3's batch was never held:\n%s", i+1, res)
		}
		// Every other node verified before node-3 fails: all are rolled back.
		waitForStates(t, l, map[string]int{"verified": 4})
		fail.release(t)
		if res, ok := undo.waitPaused(t, done); !ok {
			t.Fatalf("round %d: node-4's rollback never sent a route del line:\n%s\nlines:\n%s", i+1, res, undo.lines())
		}
		interrupt(t, l)
		undo.release(t)
		res := <-done
		t.Logf("round %d: %s; node-4's held route del %s", i+1, res, undo.waitReleased(t))
		if !strings.Contains(res.Stderr, "node-3") || !strings.Contains(res.Stderr, "Nexthop has invalid gateway") {
			t.Errorf("stderr does not name node-3's failure")
		}
		checkInterrupted(t, l, res, before)
		if t.Failed() {
			t.Fatalf("round %d failed", i+1)
		}
	}
}

// 14-C: someone changes node-1's table (a route to a destination
// routepush does not plan) after node-1 verified, then the run fails on
// node-4. node-1 is not "restored" over that change: it is reported
// rollback failed and left as it is, routepush's routes and the other
// route both still there; every other node is rolled back exactly.
func TestSafeRollbackAfterSomeoneElsesChange(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-C (table changed after verify, then a failure: that node left as it is)")
	l := newLab(t, 5)
	h := holdNode(t, l, l.Nodes[4], "batch", atBatchLine, 1, l.Nodes[0].Addr.String())
	want := snapshot(t, l)
	done := startRun(t, l)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-4's batch was never held:\n%s", res)
	}
	waitForStates(t, l, map[string]int{"verified": 4})
	ipRun(t, l.Nodes[1], "route", "add", "100.64.200.0/24", "via", "198.18.0.12", "proto", "static")
	want["node-1"] = detailed(t, l, l.Nodes[1])
	if strings.Count(want["node-1"], " proto 114 ") != 4 {
		t.Fatalf("node-1 is not verified with its 4 routes:\n%s", want["node-1"])
	}
	h.release(t)
	res := <-done
	t.Logf("run: %s", res)
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	if !row("node-1", "rollback failed").MatchString(res.Stdout) {
		t.Errorf("the report does not show node-1 rollback failed")
	}
	for _, s := range []string{"node-1:", "changed since", "left as it is"} {
		if !strings.Contains(res.Stderr, s) {
			t.Errorf("stderr does not contain %q", s)
		}
	}
	if !strings.Contains(res.Stderr, "node-4") {
		t.Errorf("stderr does not name node-4's failure")
	}
	assertUnchanged(t, l, want) // node-1: routepush's routes and the foreign one
}

// 14-D: `routepush rollback` while the run it would undo is alive (node-2's
// batch held): it refuses, naming the live holder, and changes nothing;
// released, the run converges.
func TestSafeRollbackRefusesLiveRun(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-D (routepush rollback while the run is alive: refused)")
	l := newLab(t, 4)
	h := holdNode(t, l, l.Nodes[2], "batch", atBatchLine, 1, "")
	done := startRun(t, l)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's batch was never held:\n%s", res)
	}
	waitForStates(t, l, map[string]int{"verified": 3})
	pid := routepushPID(t, l)
	// The verified nodes record, then unlock: wait for node-2's lock alone.
	for deadline := time.Now().Add(10 * time.Second); len(lockedNodes(l)) > 1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	before := snapshot(t, l)
	locks := map[string]string{}
	for _, n := range l.Nodes {
		b, _ := os.ReadFile(filepath.Join(n.Dir, "var-lib-routepush", "lock"))
		locks[n.Name] = string(b)
	}
	states := runStates(l)
	res := rp(t, l, "rollback", "--inventory", l.InventoryPath())
	if res.Code != 1 || !strings.Contains(res.Stderr, "still running") || !regexp.MustCompile(`\b`+strconv.Itoa(pid)+`\b`).MatchString(res.Stderr) {
		t.Errorf("rollback of a live run: exit %d, want 1 saying it is still running, pid %d", res.Code, pid)
	}
	assertUnchanged(t, l, before)
	for _, n := range l.Nodes {
		b, _ := os.ReadFile(filepath.Join(n.Dir, "var-lib-routepush", "lock"))
		if string(b) != locks[n.Name] {
			t.Errorf("%s: lock changed by the rollback: %q, was %q", n.Name, b, locks[n.Name])
		}
	}
	if now := runStates(l); fmt.Sprint(now) != fmt.Sprint(states) {
		t.Errorf("run records changed by the rollback: %v, were %v", now, states)
	}
	h.release(t)
	if res := <-done; res.Code != 0 {
		t.Errorf("the run after its release: %s", res)
	}
	assertConverged(t, l)
	assertNoLocks(t, l)
}

// 14-E: a dual-stack node with an IPv6 route that expires (its time left
// changes between any two reads) is rolled back exactly: rolled back, not
// rollback failed, its expiring route still there.
func TestSafeRollbackKeepsExpiringRoute(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-E (dual-stack rollback beside an expiring IPv6 route)")
	l := newLabWith(t, lab.Options{Nodes: 3, DualStack: true})
	ipRun(t, l.Nodes[0], "-6", "route", "add", "2001:db8:ff::/64", "via", l.Nodes[1].Addr6.String(), "expires", "600")
	h := holdNode(t, l, l.Nodes[2], "batch", atBatchLine, 1, l.Nodes[0].Addr.String())
	before := snapshot(t, l)
	if !strings.Contains(before["node-0"], "2001:db8:ff::/64 via "+l.Nodes[1].Addr6.String()) || !strings.Contains(before["node-0"], "expires Nsec") {
		t.Fatalf("node-0 has no expiring route:\n%s", before["node-0"])
	}
	done := startRun(t, l)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's batch was never held:\n%s", res)
	}
	waitForStates(t, l, map[string]int{"verified": 2}) // node-0 is rolled back, not skipped
	h.release(t)
	res := <-done
	t.Logf("run: %s", res)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-2") {
		t.Errorf("exit %d, want 1 for node-2's failure", res.Code)
	}
	for _, other := range []string{"node-0:", "node-1:"} {
		if strings.Contains(res.Stderr, other) {
			t.Errorf("stderr names %s an error: the run must fail for node-2's failure only", strings.TrimSuffix(other, ":"))
		}
	}
	if !row("node-0", "rolled back").MatchString(res.Stdout) || strings.Contains(res.Stdout+res.Stderr, "rollback failed") || strings.Contains(res.Stderr, "differs from before") {
		t.Errorf("node-0 is not reported rolled back exactly")
	}
	assertUnchanged(t, l, before)
	assertNoLocks(t, l)
}

// 14-F: a route to a planned destination through a nexthop object (nhid)
// cannot be put back as it was read: the node is refused, with and without
// --adopt, whoever owns the route; nothing changes anywhere.
func TestSafeNexthopObjectRefused(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"static", "114"} {
		t.Run("proto "+proto, func(t *testing.T) {
			t.Parallel()
			faultCase(t, "14-F (route via nhid, proto "+proto+": refused, with and without --adopt)")
			l := newLab(t, 3)
			n0 := l.Nodes[0]
			ipRun(t, n0, "nexthop", "add", "id", "7", "via", "198.18.0.11", "dev", "eth0")
			ipRun(t, n0, "route", "add", "100.64.1.0/24", "nhid", "7", "proto", proto)
			before := snapshot(t, l)
			if !strings.Contains(before["node-0"], "100.64.1.0/24 nhid 7 via 198.18.0.11") {
				t.Fatalf("no nhid route on node-0:\n%s", before["node-0"])
			}
			nexthops := run(t, "ip", "-n", n0.NS, "nexthop", "show")
			for _, args := range [][]string{nil, {"--adopt"}} {
				res := rp(t, l, append([]string{"--inventory", l.InventoryPath()}, args...)...)
				if res.Code != 1 || !row("node-0", "refused").MatchString(res.Stdout) || !strings.Contains(res.Stderr, "node-0:") || !strings.Contains(res.Stderr, "nhid") {
					t.Errorf("routepush %v: exit %d, want 1, node-0 refused naming nhid", args, res.Code)
				}
				if now := snapshot(t, l); fmt.Sprint(now) != fmt.Sprint(before) {
					assertUnchanged(t, l, before)
					return // the lab is no longer as before: the next command would not tell
				}
				assertUnchanged(t, l, before)
				if got := run(t, "ip", "-n", n0.NS, "nexthop", "show"); got != nexthops {
					t.Errorf("node-0's nexthop objects changed: %q, was %q", got, nexthops)
				}
				assertNoLocks(t, l)
			}
		})
	}
}
