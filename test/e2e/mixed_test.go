package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// The fleet as it comes (issue 18): OpenSSH nodes, a Dropbear node with an
// SFTP server (node-2), one without (node-3), and an OpenSSH node whose
// first ip on the PATH is BusyBox's (node-4). A run that node-1's kernel
// fails restores every node byte for byte, each kind included; then one
// run converges them all, verified, with pod-to-pod pings, and a second
// finds nothing to do.
func TestMixedFleet(t *testing.T) {
	t.Parallel()
	faultCase(t, "18-mixed-fleet")
	l := newLabWith(t, lab.Options{Nodes: 5, Dropbear: []int{2}, DropbearNoSFTP: []int{3}})
	ctx := testContext(t)
	bb := l.Nodes[4]
	busyBoxFirst(t, l, bb)
	if out, err := l.NodeExec(ctx, bb, "sh", "-c", "ip -V 2>&1 | head -1"); err != nil || !strings.Contains(out, "BusyBox") {
		t.Fatalf("node-4's first ip is not BusyBox's: %q, %v", out, err)
	}
	inv := []string{"--inventory", l.InventoryPath()}

	rejectRouteVia(t, l, l.Nodes[1], l.Nodes[4].Addr)
	before := snapshot(t, l)
	res := rp(t, l, inv...)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-1: ") {
		t.Fatalf("run with node-1 refusing a route: exit %d, want 1 naming node-1", res.Code)
	}
	assertUnchanged(t, l, before)
	for _, name := range []string{"node-2", "node-3", "node-4"} {
		if !regexp.MustCompile(`(?m)^` + name + `\s+rolled back\s+4`).MatchString(res.Stdout) {
			t.Errorf("%s: not reported rolled back after its batch of 4 (the restore proves nothing without one)\n%s", name, res.Stdout)
		}
	}
	if err := l.RestartSSHD(ctx, l.Nodes[1]); err != nil { // its kernel mended
		t.Fatal(err)
	}

	if res = rp(t, l, inv...); res.Code != 0 {
		t.Fatalf("apply on the mixed fleet: exit %d, want 0", res.Code)
	}
	if n := strings.Count(res.Stdout+res.Stderr, "no SFTP server"); n != 1 {
		t.Errorf("node-3's missing SFTP server said %d times, want once", n)
	}
	assertConverged(t, l)
	if res = rp(t, l, append(inv, "--check")...); res.Code != 0 {
		t.Errorf("--check after apply: exit %d, want 0 (every node in sync)", res.Code)
	}
}
