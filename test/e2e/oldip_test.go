package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// oldIP plays an iproute2 older than 4.14 on a node: `ip` refuses -json and
// -N the way such builds do, and leaves a mark that it did.
const oldIP = `#!/bin/sh
for a in "$@"; do
	case "$a" in -json|-j|-N|-Numeric)
		echo "refused $a" >> "$(dirname "$0")/../refused"
		echo "Option \"$a\" is unknown, try \"ip -help\"." >&2
		exit 255
	esac
done
exec %s "$@"
`

// forceCommand runs every SSH command with the old ip first in PATH.
const forceCommand = `#!/bin/sh
` + lab.ExecSFTP + `
PATH="$(dirname "$0")/oldip:$PATH"
export PATH
exec sh -c "$SSH_ORIGINAL_COMMAND"
`

// A node whose iproute2 has no JSON output is read through the text parser:
// it converges like the others, and a failed run restores it byte-identical.
func TestOldIproute2TextFallback(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	old := l.Nodes[2]
	realIP, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(old.Dir, "compat")
	if err := os.MkdirAll(filepath.Join(dir, "oldip"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(dir, "oldip", "ip"), fmt.Sprintf(oldIP, realIP))
	writeExec(t, filepath.Join(dir, "force-command"), forceCommand)
	ctx := testContext(t)
	if err := l.RestartSSHD(ctx, old, "-o", "ForceCommand="+filepath.Join(dir, "force-command")); err != nil {
		t.Fatal(err)
	}

	// First a run that fails elsewhere: the text-mode node must be restored
	// exactly like the others.
	rejectRouteVia(t, l, l.Nodes[3], l.Nodes[4].Addr)
	before := snapshot(t, l)
	if res := rp(t, l, "--inventory", l.InventoryPath()); res.Code != 1 {
		t.Fatalf("run with node-3 broken: exit %d, want 1", res.Code)
	}
	assertUnchanged(t, l, before)
	refused, _ := os.ReadFile(filepath.Join(dir, "refused"))
	if !strings.Contains(string(refused), "refused -N") {
		t.Fatalf("the old ip was never asked for JSON; the fallback was not exercised (%q)", refused)
	}

	// Then, without node-3, the text-mode node converges and stays in sync.
	inv := filepath.Join(l.Dir, "without-node-3.yaml")
	if err := l.WriteInventory(inv, append(l.Nodes[:3:3], l.Nodes[4])); err != nil {
		t.Fatal(err)
	}
	res := rp(t, l, "--inventory", inv, "--check")
	if res.Code != 2 || !regexp.MustCompile(`(?m)^node-2: 3 to add`).MatchString(res.Stdout) {
		t.Fatalf("--check: exit %d, want 2 and node-2 with 3 additions", res.Code)
	}
	if res = rp(t, l, "--inventory", inv); res.Code != 0 {
		t.Fatalf("apply: exit %d", res.Code)
	}
	got := ipv4Table(t, old)
	for _, want := range []string{"100.64.0.0/24 via 198.18.0.10 dev eth0 proto 114", "100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114", "100.64.4.0/24 via 198.18.0.14 dev eth0 proto 114"} {
		if !strings.Contains(got, want) {
			t.Errorf("node-2 lacks %q:\n%s", want, got)
		}
	}
	if res = rp(t, l, "--inventory", inv, "--check"); res.Code != 0 {
		t.Errorf("--check after apply: exit %d, want 0", res.Code)
	}
}

func writeExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}
