package e2e

// Issue 15, items 2 and 4: what a hostile or broken node sends is bounded,
// and routepush's state on nodes is written only where it is safe. The
// fault suite's cases 15-read-* and 15-dir-*.

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

// maxRSS is the most memory a routepush run may hold with one hostile
// node among a handful.
const maxRSS = 150 << 20

// endlessIP is an `ip` that prints one endless line, and leaves a mark
// that it ran.
const endlessIP = `#!/bin/sh
echo "$@" >> "$(dirname "$0")/../ran"
exec tr '\0' x < /dev/zero
`

// withEndlessIP is a ForceCommand that puts endlessIP first in PATH.
const withEndlessIP = `#!/bin/sh
` + lab.ExecSFTP + `
PATH="$(dirname "$0")/bin:$PATH"
export PATH
exec sh -c "$SSH_ORIGINAL_COMMAND"
`

// checkRSS fails a run that held more than maxRSS, and logs what it held.
func checkRSS(t *testing.T, what string, res lab.Result) {
	t.Helper()
	t.Logf("%s: routepush max RSS %.1f MB", what, float64(res.MaxRSS)/1e6)
	if res.MaxRSS == 0 || res.MaxRSS > maxRSS {
		t.Errorf("%s: routepush max RSS %d bytes, want (0, %d]", what, res.MaxRSS, maxRSS)
	}
}

// A node whose ip prints one endless line: routepush stops reading at the
// table's limit, fails that node with a message naming it and the limit,
// changes nothing anywhere, and stays small.
func TestHostileEndlessIPOutput(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-read-endless-ip (a node's ip prints one endless line: node failed at the table limit, max RSS < 150 MB, nothing changed)")
	l := newLab(t, 4)
	bad := l.Nodes[2]
	dir := filepath.Join(bad.Dir, "endless")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(dir, "bin", "ip"), endlessIP)
	writeExec(t, filepath.Join(dir, "force-command"), withEndlessIP)
	if err := l.RestartSSHD(testContext(t), bad, "-o", "ForceCommand="+filepath.Join(dir, "force-command")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l)
	for _, args := range [][]string{{"--check"}, nil} {
		res := rp(t, l, append([]string{"--inventory", l.InventoryPath()}, args...)...)
		checkRSS(t, fmt.Sprintf("routepush %v", args), res)
		// The limit is the table's, and with preflight (the default)
		// what it reads beside the table in one go (--check).
		if res.Code != 1 || !strings.Contains(res.Stderr, "node-2: ip ") || !regexp.MustCompile(`exceeds (16\.0 MiB \(the limit for a table of 4 planned routes\)|19\.0 MiB \(the limit for a table of 4 planned routes and what preflight reads\)); is the node's ip sane\?`).MatchString(res.Stderr) {
			t.Errorf("routepush %v: exit %d, want 1 and node-2's table over its limit; stderr:\n%s", args, res.Code, res.Stderr)
		}
	}
	if ran, _ := os.ReadFile(filepath.Join(dir, "ran")); len(ran) == 0 {
		t.Fatal("node-2's sessions never ran the endless ip: the case tested nothing")
	}
	assertUnchanged(t, l, before)
	assertNoLocks(t, l)
}

// sparse creates a file of size bytes that takes no disk.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// A node whose lock file is 200 MB, then one whose run record is: refused
// by their size, the node failed with a message naming the file and the
// limit, nothing changed, routepush small.
func TestHostileHugeLockAndRecord(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-read-huge-lock (a 200 MB lock file: node failed at the lock's limit, max RSS < 150 MB, nothing changed)")
	faultCase(t, "15-read-huge-record (a 200 MB run record read by routepush rollback: node failed at the record's limit, max RSS < 150 MB, nothing changed)")
	l := newLab(t, 4)
	before := snapshot(t, l)

	lock := filepath.Join(l.Nodes[1].Dir, "var-lib-routepush", "lock")
	sparse(t, lock, 200<<20)
	res := rp(t, l, "--inventory", l.InventoryPath())
	checkRSS(t, "apply with node-1's 200 MB lock", res)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-1: /var/lib/routepush/lock: exceeds 16 KiB (the limit for a lock)") {
		t.Errorf("exit %d, want 1 and node-1's lock over its limit; stderr:\n%s", res.Code, res.Stderr)
	}
	if st, err := os.Stat(lock); err != nil || st.Size() != 200<<20 {
		t.Errorf("node-1's lock was touched: %v %v", st, err)
	}
	assertUnchanged(t, l, before)
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}

	const id = "20261130T120000.000Z-abcdef"
	record := filepath.Join(l.Nodes[3].Dir, "var-lib-routepush", "runs", id+".json")
	sparse(t, record, 200<<20)
	res = rp(t, l, "rollback", "--inventory", l.InventoryPath(), "--run", id)
	checkRSS(t, "rollback with node-3's 200 MB record", res)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-3: /var/lib/routepush/runs/"+id+".json: exceeds 16.0 MiB (the limit for a run record of 4 planned routes)") {
		t.Errorf("rollback: exit %d, want 1 and node-3's record over its limit; stderr:\n%s", res.Code, res.Stderr)
	}
	assertUnchanged(t, l, before)
	assertNoLocks(t, l)
}

// /var/lib/routepush a symbolic link, writable by others, read-only and
// full: each node is refused or fails cleanly, nothing is written through
// the link or into the others' folders, and nothing changes anywhere.
func TestHostileStateDirs(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-dir-symlink (/var/lib/routepush a symlink: refused, nothing written through it)")
	faultCase(t, "15-dir-world-writable (/var/lib/routepush mode 0777: refused, nothing written)")
	faultCase(t, "15-dir-read-only (/var/lib/routepush a read-only mount: failed cleanly)")
	faultCase(t, "15-dir-full (/var/lib/routepush a full 64 KiB tmpfs: failed cleanly)")
	faultCase(t, "15-dir-not-root (/var/lib/routepush owned by uid 1000, mode 0755: refused, nothing written)")
	l := newLab(t, 6)
	ctx := testContext(t)
	link, open, ro, full, owned := l.Nodes[1], l.Nodes[2], l.Nodes[3], l.Nodes[4], l.Nodes[5]

	// node-1: /var/lib is a tmpfs of its own holding only the link, to a
	// folder of the node's.
	elsewhere := filepath.Join(link.Dir, "elsewhere")
	if err := os.MkdirAll(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMounts(ctx, link, "mount -t tmpfs -o mode=0755,size=1m tmpfs /var/lib\nln -s \"$1/elsewhere\" /var/lib/routepush\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(open.Dir, "var-lib-routepush"), 0o777); err != nil {
		t.Fatal(err)
	}
	// A user who owns the folder could swap a record for a link between
	// two of routepush's calls.
	if err := os.Chown(filepath.Join(owned.Dir, "var-lib-routepush"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMounts(ctx, ro, "mount -o remount,bind,ro /var/lib/routepush\n"); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMounts(ctx, full, `mount -t tmpfs -o size=64k,mode=0755 tmpfs /var/lib/routepush
mkdir -m 0755 /var/lib/routepush/runs
dd if=/dev/zero of=/var/lib/routepush/filler bs=4k 2>/dev/null || true
`); err != nil {
		t.Fatal(err)
	}
	// How the nodes' sshd sessions see it.
	for _, n := range []*lab.Node{link, ro} {
		out, err := l.NodeExec(ctx, n, "sh", "-c", "ls -ld /var/lib/routepush; touch /var/lib/routepush/probe 2>&1; rm -f /var/lib/routepush/probe")
		t.Logf("%s: %s (%v)", n.Name, strings.TrimSpace(out), err)
	}

	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath())
	if res.Code != 1 {
		t.Errorf("exit %d, want 1", res.Code)
	}
	for _, want := range []string{
		"node-1: refusing /var/lib/routepush: it is a symbolic link",
		"node-2: refusing /var/lib/routepush: it is writable by group or others (mode 0777)",
		"node-3: mkdir /var/lib/routepush/runs: sftp: \"Failure\" (SSH_FX_FAILURE) (the node's SFTP server gives no reason: is the filesystem read-only or full?)",
		"node-4: lock /var/lib/routepush/lock: sftp: \"Failure\" (SSH_FX_FAILURE) (the node's SFTP server gives no reason: is the filesystem read-only or full?)",
		"node-5: refusing /var/lib/routepush: it is owned by uid 1000, not root",
	} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
	for _, dir := range []string{elsewhere, filepath.Join(link.Dir, "var-lib-routepush"), filepath.Join(open.Dir, "var-lib-routepush"), filepath.Join(ro.Dir, "var-lib-routepush"), filepath.Join(owned.Dir, "var-lib-routepush")} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			out, _ := exec.Command("ls", "-la", dir).CombinedOutput()
			t.Errorf("%s: written to:\n%s", dir, out)
		}
	}
	// node-0, a sound node, got its record before the run stopped: 0600,
	// in a runs/ folder routepush made 0700, and no temporary file left
	// beside it.
	records, _ := filepath.Glob(filepath.Join(l.Nodes[0].Dir, "var-lib-routepush", "runs", "*"))
	if len(records) != 1 || !strings.HasSuffix(records[0], ".json") {
		t.Errorf("node-0's runs folder: %v, want one record", records)
	}
	for _, f := range append([]string{filepath.Join(l.Nodes[0].Dir, "var-lib-routepush"), filepath.Join(l.Nodes[0].Dir, "var-lib-routepush", "runs")}, records...) {
		st, err := os.Stat(f)
		switch {
		case err != nil:
			t.Error(err)
		case st.IsDir() && st.Mode().Perm() != 0o700:
			t.Errorf("%s: mode %04o, want 0700", f, st.Mode().Perm())
		case !st.IsDir() && st.Mode().Perm() != 0o600:
			t.Errorf("%s: mode %04o, want 0600", f, st.Mode().Perm())
		}
	}
	assertUnchanged(t, l, before)
	assertNoLocks(t, l)
}
