package e2e

// Issue 15, item 1: a node that goes silent (its traffic dropped, no RST)
// at each phase of a run is failed within the bound the README states, the
// run ends, names it and exits 1, and every other node ends byte-identical
// (rolled back, or never changed), as its outcome says.
//
// The silence is the node's veth taken down in the lab's bridge namespace:
// packets to and from it are dropped without a word. Each phase is reached
// with a hold (safety_test.go): the node holds a line, the test cuts the
// node, then drops the line once the run has ended.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// Keepalives every second, three unanswered: a silent node is cut off
// within aliveBound of its last answer (interval × (count+1), README).
// The command timeout is longer, so that keepalives are what find it.
var silentArgs = []string{"--server-alive-interval", "1s", "--server-alive-count-max", "3",
	"--command-timeout", "20s", "--connect-timeout", "2s"}

const (
	aliveBound = 4 * time.Second
	// reconnectBound: a connection lost mid-batch (apply, verify) is
	// tried again three times, 1, 2 and 4 s apart, each try bounded by
	// the connect timeout (2 s here), before the node is reported unknown.
	reconnectBound = 7*time.Second + 3*2*time.Second
	// slack covers what follows the cut: rolling the other nodes back,
	// releasing locks, the report, process start and exit on a busy
	// 2-core machine.
	slack = 4 * time.Second
)

// silence drops every packet to and from node n, silently: its veth peer
// in the bridge namespace goes down. The link comes back up when the test
// ends if heal was not called.
func silence(t *testing.T, l *lab.Lab, n *lab.Node) (heal func()) {
	t.Helper()
	peer := "v" + strings.TrimPrefix(n.Name, "node-")
	set := func(state string) error {
		return exec.Command("ip", "-n", l.Bridge, "link", "set", peer, state).Run()
	}
	if err := set("down"); err != nil {
		t.Fatalf("silencing %s: %v", n.Name, err)
	}
	healed := false
	heal = func() {
		if !healed {
			healed = true
			if err := set("up"); err != nil {
				t.Errorf("healing %s: %v", n.Name, err)
			}
		}
	}
	t.Cleanup(heal)
	return heal
}

// holdSFTP makes node n hold its first SFTP session before sftp-server
// starts: the lock, routepush's first file operation on a node.
func holdSFTP(t *testing.T, l *lab.Lab, n *lab.Node) *hold {
	t.Helper()
	h := &hold{node: n, dir: filepath.Join(n.Dir, "hold-sftp")}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
dir='` + h.dir + `'
case "$SSH_ORIGINAL_COMMAND" in */sftp-server|internal-sftp|sftp)
	if mkdir "$dir/claimed" 2>/dev/null; then
		printf '%s HELD sftp\n' "$$" >> "$dir/lines"
		mkdir "$dir/paused"
		until [ -s "$dir/go" ]; do sleep 0.01; done
		echo released > "$dir/released.tmp" && mv "$dir/released.tmp" "$dir/released"
		[ "$(cat "$dir/go")" = drop ] && exit 1
	fi
	exec /usr/lib/openssh/sftp-server ;;
esac
exec sh -c "$SSH_ORIGINAL_COMMAND"
`
	withForceCommand(t, l, n, "hold-sftp.sh", script)
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(h.dir, "go"), []byte("drop"), 0o644) })
	return h
}

// holdSFTPRequest makes node n hold back the SFTP request that carries the
// nth occurrence of pattern, in the first SFTP session that reaches it
// (test/lab/sftphold): a file routepush opens, a line it writes.
func holdSFTPRequest(t *testing.T, l *lab.Lab, n *lab.Node, name, pattern string, nth int) *hold {
	t.Helper()
	h := &hold{node: n, dir: filepath.Join(n.Dir, "hold-"+name)}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in */sftp-server|internal-sftp|sftp)
	if mkdir '` + h.dir + `/claimed' 2>/dev/null; then
		exec '` + sftpHold + `' '` + h.dir + `' '` + pattern + `' ` + strconv.Itoa(nth) + ` /usr/lib/openssh/sftp-server
	fi
	exec /usr/lib/openssh/sftp-server ;;
esac
exec sh -c "$SSH_ORIGINAL_COMMAND"
`
	withForceCommand(t, l, n, "hold-"+name+".sh", script)
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(h.dir, "go"), []byte("drop"), 0o644) })
	return h
}

// silentEnd waits for the run to end after node cut was silenced at cut,
// checks the bound, the exit code and that the node is named, heals the
// node and drops the hold; it returns the result.
func silentEnd(t *testing.T, done <-chan lab.Result, cut *lab.Node, at time.Time, bound time.Duration, heal func(), h *hold) lab.Result {
	t.Helper()
	res, ended := awaitExit(done, bound+slack+30*time.Second)
	took := time.Since(at)
	if !ended {
		heal()
		if h != nil {
			h.drop(t)
		}
		t.Fatalf("the run has not ended %v after %s went silent", took.Round(time.Millisecond), cut.Name)
	}
	heal()
	if h != nil {
		h.drop(t)
	}
	t.Logf("%s silent: run ended %v later (bound %v + slack %v): %s", cut.Name, took.Round(time.Millisecond), bound, slack, res)
	if took > bound+slack {
		t.Errorf("the run ended %v after %s went silent, want within %v (+%v)", took.Round(time.Millisecond), cut.Name, bound, slack)
	}
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	if !strings.Contains(res.Stderr, cut.Name) {
		t.Errorf("stderr does not name %s:\n%s", cut.Name, res.Stderr)
	}
	if row(cut.Name, "changed").MatchString(res.Stdout) || row(cut.Name, "in sync").MatchString(res.Stdout) {
		t.Errorf("%s reported done:\n%s", cut.Name, res.Stdout)
	}
	return res
}

// cutOutcome checks the outcome the summary gives the silenced node: the
// one README says (a name in stderr alone would pass for any run that
// mentions the node, and "not changed" for one that skipped it).
func cutOutcome(t *testing.T, res lab.Result, cut *lab.Node, outcome string) {
	t.Helper()
	if !row(cut.Name, outcome).MatchString(res.Stdout) {
		t.Errorf("%s's outcome is not %q:\n%s", cut.Name, outcome, res.Stdout)
	}
}

// othersUnchanged checks that every node but cut is byte-identical to
// before and not reported changed.
func othersUnchanged(t *testing.T, l *lab.Lab, res lab.Result, before map[string]string, cut *lab.Node) {
	t.Helper()
	after := snapshot(t, l)
	for _, n := range l.Nodes {
		if n == cut {
			continue
		}
		tally(t, strings.Count(before[n.Name], "\n"), before[n.Name] != after[n.Name])
		if before[n.Name] != after[n.Name] {
			t.Errorf("%s is not byte-identical:\n--- before\n%s--- after\n%s", n.Name, before[n.Name], after[n.Name])
		}
		if row(n.Name, "changed").MatchString(res.Stdout) {
			t.Errorf("%s reported changed, but its table is as before:\n%s", n.Name, res.Stdout)
		}
	}
}

func TestSilentAtConnect(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-connect (node silent before the run: failed within the connect timeout)")
	l := newLab(t, 3)
	cut := l.Nodes[2]
	before := snapshot(t, l)
	heal := silence(t, l, cut)
	at := time.Now()
	done := startRun(t, l, silentArgs...)
	res := silentEnd(t, done, cut, at, 2*time.Second, heal, nil)
	cutOutcome(t, res, cut, "failed") // unreachable, past --max-unreachable 0
	othersUnchanged(t, l, res, before, cut)
	assertUnchanged(t, l, before)
}

func TestSilentAtLock(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-lock (silent while taking its lock)")
	l := newLab(t, 3)
	cut := l.Nodes[2]
	h := holdSFTP(t, l, cut)
	before := snapshot(t, l)
	done := startRun(t, l, silentArgs...)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's lock was never held:\n%s", res)
	}
	heal := silence(t, l, cut)
	res := silentEnd(t, done, cut, time.Now(), aliveBound, heal, h)
	cutOutcome(t, res, cut, "failed")
	othersUnchanged(t, l, res, before, cut)
	assertUnchanged(t, l, before)
}

func TestSilentAtRead(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-read (silent at its snapshot read)")
	l := newLab(t, 3)
	cut := l.Nodes[2]
	h := holdNode(t, l, cut, "read", atShow, 1, "")
	before := snapshot(t, l)
	done := startRun(t, l, silentArgs...)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's read was never held:\n%s", res)
	}
	heal := silence(t, l, cut)
	res := silentEnd(t, done, cut, time.Now(), aliveBound, heal, h)
	cutOutcome(t, res, cut, "failed")
	othersUnchanged(t, l, res, before, cut)
	assertUnchanged(t, l, before)
}

// Mid-batch: the node holds its batch's first route line, so nothing of
// it reached ip; the others verified and are rolled back.
func TestSilentAtApply(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-apply (silent mid-batch; the others rolled back)")
	l := newLab(t, 4)
	cut := l.Nodes[2]
	h := holdNode(t, l, cut, "batch", atBatchLine, 1, "")
	before := snapshot(t, l)
	done := startRun(t, l, silentArgs...)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's batch was never held:\n%s", res)
	}
	waitForStates(t, l, map[string]int{"verified": 3})
	heal := silence(t, l, cut)
	res := silentEnd(t, done, cut, time.Now(), aliveBound+reconnectBound, heal, h)
	// Whether the batch went in is not known over a dead connection
	// (README): unknown, with the rollback to run once it is back.
	cutOutcome(t, res, cut, "unknown")
	othersUnchanged(t, l, res, before, cut)
	// The held line never reached ip: node-2 is as before too.
	assertUnchanged(t, l, before)
}

// At verify the batch is in: the node's table is changed and cannot be
// rolled back over a dead connection; it is reported, and the others are
// rolled back.
func TestSilentAtVerify(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-verify (silent at its verify; the others rolled back)")
	l := newLab(t, 4)
	cut := l.Nodes[2]
	// The ip that read the table also reads it again under the lock
	// (2nd show line: node-2 is locked after its read), re-checks it
	// before the batch (3rd) and verifies (4th), in the same session.
	h := holdNode(t, l, cut, "verify", atShow, 4, "")
	before := snapshot(t, l)
	done := startRun(t, l, silentArgs...)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's verify was never held:\n%s", res)
	}
	heal := silence(t, l, cut)
	res := silentEnd(t, done, cut, time.Now(), aliveBound+reconnectBound, heal, h)
	othersUnchanged(t, l, res, before, cut)
	// README: silent at verify, the node is reported unknown. "failed"
	// would say a touched node was left without a rollback, and "rollback
	// failed" that one was tried over a connection known to be dead.
	cutOutcome(t, res, cut, "unknown")
}

// During the rollback: node-3's kernel refuses a route once the others
// verified, and node-1 goes silent at its rollback's first route del.
func TestSilentAtRollback(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-rollback (silent during its rollback; the others rolled back)")
	l := newLab(t, 4)
	cut := l.Nodes[1]
	fail := holdNode(t, l, l.Nodes[3], "batch", atBatchLine, 1, l.Nodes[0].Addr.String())
	undo := holdNode(t, l, cut, "undo", atDel, 1, "")
	before := snapshot(t, l)
	done := startRun(t, l, silentArgs...)
	if res, ok := fail.waitPaused(t, done); !ok {
		t.Fatalf("node-3's batch was never held:\n%s", res)
	}
	waitForStates(t, l, map[string]int{"verified": 3})
	fail.release(t)
	if res, ok := undo.waitPaused(t, done); !ok {
		t.Fatalf("node-1's rollback never sent a route del line:\n%s\nlines:\n%s", res, undo.lines())
	}
	heal := silence(t, l, cut)
	res := silentEnd(t, done, cut, time.Now(), aliveBound, heal, undo)
	othersUnchanged(t, l, res, before, cut)
	// Verified, then silent in its rollback: the rollback failed; it
	// was never "unknown" (that is for a batch of the run's own apply).
	cutOutcome(t, res, cut, "rollback failed")
}

// While its run record is written, before anything changes anywhere: the
// run stops there, every node as before.
func TestSilentAtRecord(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-record (silent while its run record is written; nothing applied anywhere)")
	l := newLab(t, 3)
	cut := l.Nodes[2]
	// The record is written to a temporary file first (runs/ID.json.RANDOM.routepush-tmp): its open holds.
	h := holdSFTPRequest(t, l, cut, "record", ".json.", 1)
	before := snapshot(t, l)
	done := startRun(t, l, silentArgs...)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's record was never held:\n%s", res)
	}
	heal := silence(t, l, cut)
	res := silentEnd(t, done, cut, time.Now(), aliveBound, heal, h)
	if !strings.Contains(res.Stderr, cut.Name+": write /var/lib/routepush/runs/") {
		t.Errorf("stderr does not say node-2's record could not be written:\n%s", res.Stderr)
	}
	othersUnchanged(t, l, res, before, cut)
	assertUnchanged(t, l, before)
}

// While the state "verified" is appended to its record: the node's table
// is done and verified, only its record and lock cannot be written. It
// is reported with exit 1; no node is rolled back for it, so every node
// ends converged, as the outcome says.
func TestSilentAtStateRecord(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-silent-state (silent while 'verified' is appended to its record; every node converged, the node named)")
	l := newLab(t, 3)
	cut := l.Nodes[2]
	h := holdSFTPRequest(t, l, cut, "state", `"state":"verified"`, 1)
	done := startRun(t, l, silentArgs...)
	if res, ok := h.waitPaused(t, done); !ok {
		t.Fatalf("node-2's state line was never held:\n%s", res)
	}
	heal := silence(t, l, cut)
	at := time.Now()
	res, ended := awaitExit(done, aliveBound+slack+30*time.Second)
	took := time.Since(at)
	heal()
	h.drop(t)
	if !ended {
		t.Fatalf("the run has not ended %v after node-2 went silent", took.Round(time.Millisecond))
	}
	t.Logf("node-2 silent at its state record: run ended %v later: %s", took.Round(time.Millisecond), res)
	if took > aliveBound+slack {
		t.Errorf("the run ended %v after node-2 went silent, want within %v (+%v)", took.Round(time.Millisecond), aliveBound, slack)
	}
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	if !strings.Contains(res.Stderr, cut.Name+": could not record state verified") {
		t.Errorf("stderr does not say node-2's state could not be recorded:\n%s", res.Stderr)
	}
	for _, n := range l.Nodes {
		if !row(n.Name, "changed").MatchString(res.Stdout) {
			t.Errorf("%s not reported changed, but no node is rolled back for a record:\n%s", n.Name, res.Stdout)
		}
	}
	assertConverged(t, l)
}
