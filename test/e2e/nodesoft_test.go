package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/routepush/routepush/remote"
	"github.com/routepush/routepush/test/lab"
)

// Issue 18, items 3 and 4: nodes whose ip or sftp-server is not where
// Debian has it. Each test changes one node's mount namespace (SetMounts)
// and leaves the others as they are.

// sshdSessions counts the sessions a node's sshd started (exec and subsystem
// alike), from its log: what a run cost the node in round trips.
func sshdSessions(t *testing.T, n *lab.Node) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "Starting session:")
}

// becomeSFTP lets a become run's `sudo -n .../sftp-server` through a
// ForceCommand as it was asked (lab.ExecSFTP would run it as the user).
const becomeSFTP = `case "$SSH_ORIGINAL_COMMAND" in "sudo -n "*/sftp-server) exec sh -c "$SSH_ORIGINAL_COMMAND" ;; esac`

// rhelSFTP gives a node OpenSSH's sftp-server only where the Red Hat
// family has it: /usr/libexec/openssh/sftp-server (a tmpfs over
// /usr/libexec, the node's own entries bound back in), and nothing at
// Debian's /usr/lib/openssh.
const rhelSFTP = `mkdir -p "$1/libexec-orig"
mount --bind /usr/libexec "$1/libexec-orig"
mount -t tmpfs -o mode=0755 tmpfs /usr/libexec
for e in "$1/libexec-orig"/*; do
	[ -e "$e" ] || continue
	b=${e##*/}
	if [ -d "$e" ]; then mkdir "/usr/libexec/$b"; else touch "/usr/libexec/$b"; fi
	mount --bind "$e" "/usr/libexec/$b"
done
mkdir /usr/libexec/openssh
touch /usr/libexec/openssh/sftp-server
mount --bind /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server
mount -t tmpfs -o mode=0755 tmpfs /usr/lib/openssh
`

// (a) A become node whose sftp-server is only at RHEL's path, whose
// sudoers names that path: its lock and records go through the
// sftp-server found there; a failed run restores it byte for byte, then it
// converges. sftp_server in the inventory names it without discovery.
func TestNodeSoftwareRHELSFTPServer(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 3, SudoUser: "rpuser"})
	ctx := testContext(t)
	rhel, other := l.Nodes[1], l.Nodes[2]
	if err := l.SetSudoersLine(rhel, remote.SudoersLineFor(l.SudoUser, "/usr/sbin/ip", "/usr/libexec/openssh/sftp-server")); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMounts(ctx, rhel, rhelSFTP); err != nil {
		t.Fatal(err)
	}
	if out, err := l.NodeExec(ctx, rhel, "sh", "-c", "[ ! -e /usr/lib/openssh/sftp-server ] && [ -x /usr/libexec/openssh/sftp-server ] && [ -f /usr/libexec/sudo/sudoers.so ] && echo ok"); err != nil || out != "ok\n" {
		t.Fatalf("node-1's mounts: %v %q", err, out)
	}
	inv := l.InventoryPath()

	// node-2 refuses a route mid-batch: node-1, changed by then, is rolled
	// back through the sftp-server and ip it was found to have.
	// The lab's folders are root's alone: rpuser's ForceCommand lives
	// elsewhere.
	fcDir, err := os.MkdirTemp("", "routepush-fc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(fcDir) })
	if err := os.Chmod(fcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	fc := filepath.Join(fcDir, "reject-filter")
	writeExec(t, fc, strings.Replace(fmt.Sprintf(rejectFilter, l.Nodes[0].Addr), "#!/bin/sh\n", "#!/bin/sh\n"+becomeSFTP+"\n", 1))
	if err := l.RestartSSHD(ctx, other, "-o", "ForceCommand="+fc); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", inv, "--become", "-v")
	if res.Code != 1 || !strings.Contains(res.Stdout, "rolled back") {
		t.Fatalf("run with node-2 refusing a route: exit %d, want 1 with rollbacks", res.Code)
	}
	if !strings.Contains(res.Stderr, "become runs the node's own sftp-server") || !strings.Contains(res.Stderr, "/usr/libexec/openssh/sftp-server") {
		t.Errorf("-v does not say node-1's sftp-server was found:\n%s", res.Stderr)
	}
	assertUnchanged(t, l, before)

	if err := l.RestartSSHD(ctx, other); err != nil {
		t.Fatal(err)
	}
	n0, n1 := sshdSessions(t, l.Nodes[0]), sshdSessions(t, rhel)
	if res := rp(t, l, "--inventory", inv, "--become"); res.Code != 0 {
		t.Fatalf("--become: exit %d", res.Code)
	}
	assertConverged(t, l)
	t.Logf("sessions of a converging run: node-0 (Debian) %d, node-1 (RHEL's sftp-server, found) %d", sshdSessions(t, l.Nodes[0])-n0, sshdSessions(t, rhel)-n1)
	if got := sshdSessions(t, l.Nodes[0]) - n0; got != 2 {
		t.Errorf("node-0, Debian's sftp-server, cost %d sessions, want 2 (SFTP and ip): the common case must cost nothing more", got)
	}

	// Named in the inventory: nothing to find, and the same result.
	named := filepath.Join(l.Dir, "named.yaml")
	writeFile(t, named, strings.Replace(readFile(t, inv), "    address: "+rhel.Addr.String()+"\n", "    address: "+rhel.Addr.String()+"\n    sftp_server: /usr/libexec/openssh/sftp-server\n", 1))
	ipRun(t, rhel, "route", "flush", "proto", "114")
	n1 = sshdSessions(t, rhel)
	res = rp(t, l, "--inventory", named, "--become", "-v")
	if res.Code != 0 || strings.Contains(res.Stderr, "become runs the node's own sftp-server") {
		t.Errorf("sftp_server in the inventory: exit %d, want 0 and nothing looked for", res.Code)
	}
	t.Logf("sessions of a run repairing node-1 with sftp_server named: %d", sshdSessions(t, rhel)-n1)
	assertConverged(t, l)
}

// bbFirst puts a BusyBox ip first on the session's PATH (/usr/local/sbin);
// bbOnly also puts BusyBox where iproute2's ip is (/usr/bin/ip, which
// /usr/sbin/ip, /sbin/ip and /bin/ip lead to).
const (
	bbFirst = `mount --bind "$1/bb" /usr/local/sbin
`
	bbOnly = bbFirst + `mount --bind /usr/bin/busybox /usr/bin/ip
`
)

// busyBoxFirst makes BusyBox's ip the first on n's PATH: a folder holding
// it is mounted over /usr/local/sbin (bbFirst).
func busyBoxFirst(t *testing.T, l *lab.Lab, n *lab.Node) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(n.Dir, "bb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/busybox", filepath.Join(n.Dir, "bb", "ip")); err != nil {
		t.Fatal(err)
	}
	if err := l.SetMounts(testContext(t), n, bbFirst); err != nil {
		t.Fatal(err)
	}
}

// (b) A node whose first ip on the PATH is BusyBox's: served through the
// iproute2 ip further along it (converges, verifies, is restored byte for
// byte when another node fails); with no iproute2 at all, refused before
// any change, naming it, by apply and by --check.
func TestNodeSoftwareBusyBoxIP(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	ctx := testContext(t)
	bb := l.Nodes[1]
	busyBoxFirst(t, l, bb)
	inv := l.InventoryPath()

	rejectRouteVia(t, l, l.Nodes[3], l.Nodes[0].Addr)
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", inv, "-v")
	if res.Code != 1 || !strings.Contains(res.Stdout, "rolled back") {
		t.Fatalf("run with node-3 refusing a route: exit %d, want 1 with rollbacks", res.Code)
	}
	if !regexp.MustCompile(`using iproute2's ip by its path.*node=node-1 ip=/usr/sbin/ip first="/usr/local/sbin/ip \(busybox\)"`).MatchString(res.Stderr) {
		t.Errorf("-v does not say node-1 runs /usr/sbin/ip past BusyBox's:\n%s", res.Stderr)
	}
	assertUnchanged(t, l, before)

	if err := l.RestartSSHD(ctx, l.Nodes[3]); err != nil {
		t.Fatal(err)
	}
	n0, n1 := sshdSessions(t, l.Nodes[0]), sshdSessions(t, bb)
	if res := rp(t, l, "--inventory", inv); res.Code != 0 {
		t.Fatalf("apply: exit %d", res.Code)
	}
	assertConverged(t, l)
	t.Logf("sessions of a converging run: node-0 (iproute2 first) %d, node-1 (BusyBox first) %d", sshdSessions(t, l.Nodes[0])-n0, sshdSessions(t, bb)-n1)
	if got := sshdSessions(t, l.Nodes[0]) - n0; got != 2 {
		t.Errorf("node-0, iproute2 first on its PATH, cost %d sessions, want 2 (SFTP and ip): the common case must cost nothing more", got)
	}
	if res := rp(t, l, "--inventory", inv, "--check"); res.Code != 0 {
		t.Errorf("--check after apply: exit %d, want 0", res.Code)
	}

	// No iproute2 left on node-1: refused before any change, node-0's
	// missing routes (a run would add them) included.
	if err := l.SetMounts(ctx, bb, bbOnly); err != nil {
		t.Fatal(err)
	}
	ipRun(t, l.Nodes[0], "route", "flush", "proto", "114")
	before = snapshot(t, l)
	want := "node-1: ip on the PATH is BusyBox's (/usr/local/sbin/ip), which cannot show route protocols: routepush cannot tell its routes from others'; install iproute2"
	for _, args := range [][]string{{"--inventory", inv}, {"--inventory", inv, "--check"}} {
		res := rp(t, l, args...)
		if res.Code != 1 || !strings.Contains(res.Stderr, want) {
			t.Errorf("routepush %v with BusyBox's ip alone on node-1: exit %d, want 1 and %q", args, res.Code, want)
		}
		assertUnchanged(t, l, before)
	}
}

// noIP is a node's ForceCommand whose sessions have a PATH with a shell
// and the tools discovery uses, but no ip.
const noIP = `#!/bin/sh
` + lab.ExecSFTP + `
PATH="$(dirname "$0")/bin"
export PATH
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
`

// (c) A node without ip on its sessions' PATH: refused naming it and the
// PATH, nothing changed anywhere.
func TestNodeSoftwareNoIP(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	n := l.Nodes[2]
	bin := filepath.Join(n.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"sh", "head", "sed"} {
		if err := os.Symlink("/bin/"+tool, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	withForceCommand(t, l, n, "no-ip", noIP)
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath())
	want := fmt.Sprintf("node-2: no ip on the PATH of a non-interactive session (PATH=%s): install iproute2", bin)
	if res.Code != 1 || !strings.Contains(res.Stderr, want) {
		t.Errorf("exit %d, want 1 and %q", res.Code, want)
	}
	assertUnchanged(t, l, before)
}

// lsbin gives a node iproute2's ip at /usr/local/sbin/ip only: BusyBox's
// is at /usr/bin/ip, which /sbin/ip leads to.
const lsbin = `mount --bind "$1/lsbin" /usr/local/sbin
mount --bind /usr/bin/busybox /usr/bin/ip
`

// (d) --persist on a node whose /sbin/ip is BusyBox's: its boot unit
// names the iproute2 ip its sessions find, and replaying it after a flush
// restores the routes; the others' units keep /sbin/ip.
func TestNodeSoftwarePersistBootIP(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	ctx := testContext(t)
	n := l.Nodes[1]
	if err := os.MkdirAll(filepath.Join(n.Dir, "lsbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	ipBin, err := os.ReadFile("/usr/bin/ip")
	if err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(n.Dir, "lsbin", "ip"), string(ipBin))
	if err := l.SetMounts(ctx, n, lsbin); err != nil {
		t.Fatal(err)
	}
	inv := l.InventoryPath()
	n0, n1 := sshdSessions(t, l.Nodes[0]), sshdSessions(t, n)
	if res := rp(t, l, "--inventory", inv, "--persist"); res.Code != 0 {
		t.Fatalf("apply --persist: exit %d", res.Code)
	}
	t.Logf("sessions of a converging --persist run: node-0 %d, node-1 %d", sshdSessions(t, l.Nodes[0])-n0, sshdSessions(t, n)-n1)
	// The price of --persist (README): one look a node and run, Debian's
	// too, since only it tells iproute2's /sbin/ip from BusyBox's.
	if got := sshdSessions(t, l.Nodes[0]) - n0; got != 3 {
		t.Errorf("node-0 cost %d sessions with --persist, want 3 (SFTP, ip, the look)", got)
	}
	assertConverged(t, l)
	for i, o := range l.Nodes {
		want := "/sbin/ip"
		if o == n {
			want = "/usr/local/sbin/ip"
		}
		if unit := readOrNone(t, unitFile(o)); !strings.Contains(unit, "\nExecStart="+want+" -force -batch /etc/routepush/routes\n") {
			t.Errorf("node-%d's unit does not run %s:\n%s", i, want, unit)
		}
	}
	if res := rp(t, l, "--inventory", inv, "--persist", "--check"); res.Code != 0 {
		t.Errorf("--check --persist after apply: exit %d, want 0 (the units are current)", res.Code)
	}

	converged := snapshot(t, l)
	cmd := execStartRE.FindStringSubmatch(readOrNone(t, unitFile(n)))
	if cmd == nil {
		t.Fatal("no ExecStart")
	}
	ipRun(t, n, "route", "flush", "proto", "114")
	// The unit routepush wrote before would not have worked here.
	if out, err := l.NodeExec(ctx, n, "/sbin/ip", "-force", "-batch", "/etc/routepush/routes"); err == nil {
		t.Errorf("/sbin/ip -batch worked on node-1 (%q): the test does not test what it says", out)
	}
	if out, err := l.NodeExec(ctx, n, strings.Fields(cmd[1])...); err != nil {
		t.Fatalf("%s: %v %s", cmd[1], err, out)
	}
	assertUnchanged(t, l, converged)
}

// (e) `routepush rollback` of a run that changed a node whose first ip on
// the PATH is BusyBox's: the new process's first ip command there is the
// undo batch, which finds iproute2's ip along the PATH as a read does, and
// the node is restored byte for byte.
func TestNodeSoftwareRollbackBusyBoxFirst(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	bb := l.Nodes[1]
	busyBoxFirst(t, l, bb)
	inv := l.InventoryPath()
	before := snapshot(t, l)
	if res := rp(t, l, "--inventory", inv); res.Code != 0 {
		t.Fatalf("apply: exit %d", res.Code)
	}
	assertConverged(t, l)
	res := rp(t, l, "rollback", "--inventory", inv, "-v")
	if res.Code != 0 {
		t.Errorf("rollback of a converged run with node-1 BusyBox-first: exit %d\n%s", res.Code, res)
	}
	if !regexp.MustCompile(`using iproute2's ip by its path.*node=node-1 ip=/usr/sbin/ip`).MatchString(res.Stderr) {
		t.Errorf("-v does not say the rollback ran node-1's /usr/sbin/ip:\n%s", res.Stderr)
	}
	assertUnchanged(t, l, before)
}
