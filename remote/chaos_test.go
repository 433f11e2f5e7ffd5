package remote

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// A kept ip whose stderr carries a warning that is no refusal (sudo's
// "unable to resolve host", an ld.so or locale warning, printed before ip
// even runs) still serves its rounds: stderr is not a failing line. One-shot
// runs never watched stderr, so such a node worked before the ip was kept.
func TestKeptIPSurvivesAStderrWarning(t *testing.T) {
	for _, keep := range []int{0, 10} {
		t.Run(fmt.Sprintf("keep=%d", keep), func(t *testing.T) {
			s, cfg := startKeepSSHD(t, keep)
			s.ip.warn = "sudo: unable to resolve host n1: Name or service not known\n"
			cfg.CommandTimeout = 3 * time.Second
			d, err := NewDialer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			for i := range 3 {
				c, err := d.Dial(context.Background(), s.target())
				if err != nil {
					t.Fatal(err)
				}
				table, err := c.ReadRoutes(context.Background(), v4)
				if err != nil {
					c.Close()
					t.Fatalf("round %d: read: %v", i, err)
				}
				batch := fmt.Sprintf("route add 100.64.%d.0/24 via 198.18.0.2\n", i+1)
				res, err := c.Apply(context.Background(), []byte(batch), false, v4, &table.Digest)
				c.Close()
				if err != nil || res.BatchErr != nil {
					t.Fatalf("round %d: apply: %v, %v", i, err, res.BatchErr)
				}
			}
		})
	}
}

// A rollback (-force) on a kept connection carries on past its failing
// lines, as ip -force does: the whole undo is sent and the tables after it
// read. watchStderr must neither end its input at the first refusal (an
// undo past the 2 MB channel window is still being written then) nor kill
// it once its refusals pass stderrLimit (over a thousand failing lines:
// the routes it deletes are already gone).
func TestKeptForceBatchIsSentWhole(t *testing.T) {
	for _, tc := range []struct {
		name          string
		failing, fill int
	}{
		{"past the window", 1, 80000},
		{"many refusals", 2000, 0},
	} {
		for _, keep := range []int{0, 10} {
			t.Run(fmt.Sprintf("%s/keep=%d", tc.name, keep), func(t *testing.T) {
				testKeptForceBatch(t, keep, tc.failing, tc.fill)
			})
		}
	}
}

func testKeptForceBatch(t *testing.T, keep, failing, fill int) {
	s, cfg := startKeepSSHD(t, keep)
	cfg.CommandTimeout = 5 * time.Second
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	table, err := c.ReadRoutes(ctx, v4)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for range failing {
		b.WriteString("route del 100.64.255.0/24 via 198.18.0.2\n")
	}
	for i := range fill {
		fmt.Fprintf(&b, "route del 100.99.%d.%d/32 via 198.18.0.2\n", i/256, i%256)
	}
	b.WriteString("route add 100.64.7.0/24 via 198.18.0.2\n")
	res, err := c.Apply(ctx, []byte(b.String()), true, v4, &table.Digest)
	if err != nil {
		t.Fatalf("forced undo (%d kB): %v (BatchErr %v)", b.Len()>>10, err, res.BatchErr)
	}
	if res.BatchErr == nil || res.FailedLine != 1 {
		t.Errorf("forced undo: BatchErr %v, FailedLine %d; want line 1 refused", res.BatchErr, res.FailedLine)
	}
	s.ip.mu.Lock()
	defer s.ip.mu.Unlock()
	if !slices.Contains(s.ip.dsts, "100.64.7.0/24") {
		t.Errorf("the undo's last line never reached ip: routes %v", s.ip.dsts)
	}
}

// A watcher runs for months: rounds that apply, fail at a line, find
// their kept ip killed or their table changed must leave no goroutine
// behind.
func TestKeptIPRoundsLeakNoGoroutines(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	cfg.CommandTimeout = 3 * time.Second
	d := keptDialer(t, cfg)
	rounds := func(from, n int) {
		for i := from; i < from+n; i++ {
			dst := fmt.Sprintf("100.%d.%d.0/24", 65+i/256, i%256)
			batch := "route add " + dst + " via 198.18.0.2\n"
			switch {
			case i%5 == 3:
				batch += "route add 100.64.255.0/24 via 198.18.0.2\n" // refused: the ip ends
			case i%7 == 5:
				s.ip.kill() // ended at rest
			}
			if res, err := ipRound(t, d, s.target(), batch); err != nil && res.BatchErr == nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if i%4 == 1 { // a read-only round too
				if _, err := ipRound(t, d, s.target(), ""); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	rounds(0, 10)
	settle := func() int {
		n := runtime.NumGoroutine()
		for range 50 {
			time.Sleep(20 * time.Millisecond)
			n = runtime.NumGoroutine()
		}
		return n
	}
	before := settle()
	rounds(10, 60)
	after := settle()
	if after > before+2 {
		t.Errorf("%d goroutines after 10 rounds, %d after 70: a leak per round", before, after)
	}
	t.Logf("goroutines: %d after 10 rounds, %d after 70; %d ip processes", before, after, s.ip.startCount())
}

// sshd with ClientAliveInterval probes its first open channel with
// keepalive@openssh.com, wanting an answer (the SFTP channel's are
// answered: see openSFTPChannel). At rest, when the SFTP session ended or
// was opened after it, that is the kept ip's session: its probes must be
// answered too, or sshd hangs up after ClientAliveCountMax of them and,
// past 16, x/crypto/ssh's reader blocks the whole connection.
func TestKeptIPAnswersChannelKeepalives(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	s.ip.mu.Lock()
	ch := s.ip.running[len(s.ip.running)-1]
	s.ip.mu.Unlock()
	answered := make(chan error, 1)
	go func() {
		_, err := ch.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a keepalive@openssh.com on the kept ip's session went unanswered at rest")
	}
}

// A kept connection's first listing (a new connection: a reconnect, or
// every KeepMaxAge) finding no more than keep records prunes none: they
// are pruned "once more than that many are there", then down to half.
func TestKeptConnectionFirstListingPrunesOnlyPastKeep(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Three records of other runs (a one-shot apply) are there already.
	if err := c.withFiles(ctx, "setup", func(fsys sftpFS) error {
		if err := fsys.MkdirAll("/var/lib/routepush/runs"); err != nil {
			return err
		}
		for _, id := range []string{"run-a", "run-b", "run-c"} {
			f, err := fsys.Create("/var/lib/routepush/runs/" + id + ".json")
			if err != nil {
				return err
			}
			f.Close()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.lockedDirs = true
	if err := c.WriteRun(ctx, "run-d", []byte("{}\n"), 4, func([]byte) bool { return true }, true); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := c.withFiles(ctx, "list", func(fsys sftpFS) (err error) {
		ids, err = c.listRuns(fsys)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 4 {
		t.Errorf("records after the first write through a kept connection: %v, want all 4 (keep is 4)", ids)
	}
}
