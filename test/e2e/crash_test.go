package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// slowBatch is a node's ForceCommand that holds a batch back for a while:
// at the first `route replace` line it sleeps, and forwards nothing if its
// SSH session has gone meanwhile (routepush killed), as a batch that never
// arrived.
const slowBatch = `#!/bin/sh
` + lab.ExecSFTP + `
parent=$PPID
slept=
while IFS= read -r line; do
	case "$line" in
	"route replace "*) if [ -z "$slept" ]; then sleep %d; slept=1; kill -0 "$parent" 2>/dev/null || exit 1; fi ;;
	esac
	printf '%%s\n' "$line"
done | sh -c "$SSH_ORIGINAL_COMMAND"
`

func slowNode(t *testing.T, l *lab.Lab, n *lab.Node, seconds int) {
	t.Helper()
	script := filepath.Join(n.Dir, "slow-batch")
	writeExec(t, script, fmt.Sprintf(slowBatch, seconds))
	if err := l.RestartSSHD(testContext(t), n, "-o", "ForceCommand="+script); err != nil {
		t.Fatal(err)
	}
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
// nodes verified and 10 with their batch in flight. The locks it left name
// it; `routepush rollback`, a fresh process, restores every node byte for
// byte from the records on the nodes and releases the locks; --check then
// tells the truth.
func TestKilledRunRolledBackByAnotherProcess(t *testing.T) {
	t.Parallel()
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
	deadline := time.Now().Add(60 * time.Second)
	for runStates(l)["verified"] < 40 || runStates(l)["applying"] < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the run never reached 40 verified and 10 applying nodes: %v", runStates(l))
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := exec.Command("pgrep", "-f", "--", "--config "+l.ConfigPath()+" --inventory").Output()
	if err != nil {
		t.Fatalf("pgrep: %v", err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(out))[0])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.Code == 0 {
		t.Fatalf("the killed run exited 0:\n%s", res)
	}
	if locked := lockedNodes(l); len(locked) != 10 {
		t.Errorf("locked after the kill: %v, want the 10 nodes in flight", locked)
	}

	// A new run refuses the locked nodes and says what to do.
	res := rp(t, l, "--inventory", inv)
	if res.Code != 1 || !regexp.MustCompile(`node-4\d: locked by run \S+ \(routepush pid \d+ on .*that process is gone: .routepush rollback --run \S+.`).MatchString(res.Stderr) {
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
	if loser.Code != 1 || !regexp.MustCompile(`node-\d: locked by run \d{8}T\d{6}Z-[0-9a-f]{6} \(routepush pid \d+ on `).MatchString(loser.Stderr) {
		t.Errorf("the losing run: exit %d, want 1 naming the holder:\n%s", loser.Code, loser.Stderr)
	}
	if strings.Contains(loser.Stdout, "changed ") {
		t.Errorf("the losing run changed nodes:\n%s", loser.Stdout)
	}
	assertConverged(t, l)
	if locked := lockedNodes(l); len(locked) != 0 {
		t.Errorf("still locked: %v", locked)
	}
}
