package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/test/lab"
	"github.com/routepush/routepush/test/reportschema"
)

// expectedTable is what `ip route show` must print on node i of a converged
// lab: the connected route and one route per other node, nothing else.
func expectedTable(l *lab.Lab, i int) string {
	var lines []string
	for j, o := range l.Nodes {
		if j != i {
			lines = append(lines, fmt.Sprintf("%s via %s dev eth0 proto 114 ", o.PodCIDR, o.Addr))
		}
	}
	lines = append(lines, fmt.Sprintf("198.18.0.0/16 dev eth0 proto kernel scope link src %s ", l.Nodes[i].Addr))
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func ipv4Table(t *testing.T, n *lab.Node) string {
	t.Helper()
	out, err := exec4(n)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// pingMatrix pings every pod IP from every other node's pod IP and returns
// the pairs that failed.
func pingMatrix(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	var failed []string
	for i, row := range l.PingMatrix(testContext(t)) {
		for j, ok := range row {
			if i != j && !ok {
				failed = append(failed, l.Nodes[i].Name+"->"+l.Nodes[j].Name)
			}
		}
	}
	return failed
}

func TestCheckApplyConverge(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	inv := l.InventoryPath()
	before := snapshot(t, l)
	if failed := pingMatrix(t, l); len(failed) != 20 {
		t.Fatalf("before any routes, %d of 20 pod pings failed; the lab is not isolated", len(failed))
	}

	res := rp(t, l, "--inventory", inv, "--check")
	if res.Code != 2 {
		t.Fatalf("--check exit %d, want 2", res.Code)
	}
	if n := regexp.MustCompile(`(?m)^  \+ 100\.64\.\d+\.0/24 via 198\.18\.0\.\d+ proto 114$`).FindAllString(res.Stdout, -1); len(n) != 20 {
		t.Errorf("--check lists %d additions, want 20", len(n))
	}
	assertUnchanged(t, l, before)

	res = rp(t, l, "--inventory", inv)
	if res.Code != 0 {
		t.Fatalf("apply exit %d, want 0", res.Code)
	}
	if !strings.Contains(res.Stdout, "5 nodes done") || !strings.Contains(res.Stdout, "20 routes added") {
		t.Errorf("apply summary missing: %s", res.Stdout)
	}
	for i, n := range l.Nodes {
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s: ip route show =\n%s\nwant\n%s", n.Name, got, want)
		}
	}
	if failed := pingMatrix(t, l); len(failed) > 0 {
		t.Errorf("pod pings failed after apply: %v", failed)
	}

	converged := snapshot(t, l)
	res = rp(t, l, "--inventory", inv)
	if res.Code != 0 || !strings.Contains(res.Stdout, "5 in sync") || !strings.Contains(res.Stdout, "0 routes added, 0 changed") {
		t.Errorf("second apply: exit %d, want 0 and nothing changed", res.Code)
	}
	assertUnchanged(t, l, converged)

	res = rp(t, l, "--inventory", inv, "--check")
	if res.Code != 0 {
		t.Errorf("--check on a converged lab: exit %d, want 0", res.Code)
	}
}

// A node whose kernel rejects one of its routes part-way through the batch:
// the run fails naming that node and the kernel's message, and every node,
// including one whose existing route was overwritten, is restored exactly.
func TestKernelRejectsRouteRollsBackAll(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	// node-0 already has a hand-made route to node-2's CIDR: the run
	// adopts it (replaces it), and rollback must bring it back as it was.
	ipRun(t, l.Nodes[0], "route", "add", "100.64.2.0/24", "via", "198.18.0.99", "dev", "eth0")
	// node-3's routes via node-0..2 apply, then the kernel refuses the one
	// via node-4.
	rejectRouteVia(t, l, l.Nodes[3], l.Nodes[4].Addr)
	before := snapshot(t, l)

	res := rp(t, l, "--inventory", l.InventoryPath(), "--adopt")
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1", res.Code)
	}
	for _, want := range []string{"node-3", "Nexthop has invalid gateway", "route add 100.64.4.0/24 via 198.18.0.14"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not name %q", want)
		}
	}
	if got := len(regexp.MustCompile(`(?m)^node-[0124] +rolled back `).FindAllString(res.Stdout, -1)); got != 4 {
		t.Errorf("report shows %d other nodes rolled back, want 4", got)
	}
	if !regexp.MustCompile(`(?m)^node-3 +failed, rolled back `).MatchString(res.Stdout) {
		t.Error("report does not show node-3 as failed and rolled back")
	}
	assertUnchanged(t, l, before)
}

// With --rollback=host only the failing node is restored.
func TestRollbackHostOnlyRestoresFailedNode(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	rejectRouteVia(t, l, l.Nodes[3], l.Nodes[4].Addr)
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--rollback", "host")
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1", res.Code)
	}
	after := snapshot(t, l)
	for i, n := range l.Nodes {
		if i == 3 {
			if before[n.Name] != after[n.Name] {
				t.Errorf("failed node-3 not restored:\n%s", after[n.Name])
			}
			continue
		}
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s should stay converged with --rollback=host:\n%s", n.Name, got)
		}
	}
}

// narrowLink narrows a node's on-link range to 198.18.0.0-12, so a next hop
// of 198.18.0.13 and up is not directly connected.
func narrowLink(t *testing.T, n *lab.Node) {
	t.Helper()
	ipRun(t, n, "route", "add", "198.18.0.0/29", "dev", "eth0", "src", n.Addr.String())
	ipRun(t, n, "route", "add", "198.18.0.8/30", "dev", "eth0", "src", n.Addr.String())
	ipRun(t, n, "route", "add", "198.18.0.12/32", "dev", "eth0", "src", n.Addr.String())
	ipRun(t, n, "route", "del", "198.18.0.0/16", "dev", "eth0")
}

// rejectFilter is a node's ForceCommand that feeds each command's stdin
// through a filter: in `route add` lines the gateway %[1]s becomes
// 198.19.255.254, which is not on the node's link, so the kernel refuses
// that one line ("Nexthop has invalid gateway") part-way through a batch.
// Nothing else on the node changes, so a rollback can be checked byte for
// byte.
const rejectFilter = `#!/bin/sh
` + lab.ExecSFTP + `
while IFS= read -r line; do
	case "$line" in
	"route add "*" via %[1]s "*) line="${line%%%% via *} via 198.19.255.254 ${line#* via %[1]s }" ;;
	esac
	printf '%%s\n' "$line"
done | sh -c "$SSH_ORIGINAL_COMMAND"
`

// rejectRouteVia makes node n's kernel refuse, in the middle of its batch,
// the route via the given next hop.
func rejectRouteVia(t *testing.T, l *lab.Lab, n *lab.Node, via netip.Addr) {
	t.Helper()
	withForceCommand(t, l, n, "reject-filter", fmt.Sprintf(rejectFilter, via))
}

// withForceCommand writes script into the node's folder and restarts its sshd
// with it as ForceCommand: every command, SFTP included, goes through it.
func withForceCommand(t *testing.T, l *lab.Lab, n *lab.Node, name, script string) {
	t.Helper()
	path := filepath.Join(n.Dir, name)
	writeExec(t, path, script)
	if err := l.RestartSSHD(testContext(t), n, "-o", "ForceCommand="+path); err != nil {
		t.Fatal(err)
	}
}

// A next hop that is not on a directly connected subnet refuses the node
// before anything changes anywhere: routepush adds no onlink routes.
func TestNextHopNotConnectedRefused(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	narrowLink(t, l.Nodes[3])
	before := snapshot(t, l)
	for _, args := range [][]string{{"--check"}, nil} {
		res := rp(t, l, append([]string{"--inventory", l.InventoryPath()}, args...)...)
		if res.Code != 1 || !strings.Contains(res.Stderr, "node-3: refusing to change the node: next hop 198.18.0.14: no route to it; routepush adds no onlink routes") {
			t.Errorf("routepush %v: exit %d, want 1 naming node-3 and its next hop; stderr:\n%s", args, res.Code, res.Stderr)
		}
	}
	assertUnchanged(t, l, before)
}

func TestHostKeyMismatchRefusedEverywhere(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	before := snapshot(t, l)
	// node-2's known_hosts line now holds node-4's key: a changed host key.
	kh, err := os.ReadFile(l.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(kh), "\n")
	lines[2] = lab.KnownHostsLine(l.Nodes[2].Addr.String(), l.Nodes[4].HostKey)
	writeFile(t, l.KnownHostsPath(), strings.Join(lines, "\n"))

	res := rp(t, l, "--inventory", l.InventoryPath())
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1", res.Code)
	}
	for _, want := range []string{"node-2", "HOST KEY", "HAS CHANGED", "known_hosts:3", fingerprint(l.Nodes[2])} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not contain %q", want)
		}
	}
	assertUnchanged(t, l, before)

	// An unknown host (its line removed) is refused as well.
	writeFile(t, l.KnownHostsPath(), strings.Join(append(lines[:2:2], lines[3:]...), "\n"))
	res = rp(t, l, "--inventory", l.InventoryPath())
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-2: host key for 198.18.0.12:22 is not in") {
		t.Errorf("unknown host key: exit %d, stderr %q", res.Code, res.Stderr)
	}
	assertUnchanged(t, l, before)
}

func TestUnreachableNodeChangesNothing(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	before := snapshot(t, l)
	if err := l.StopSSHD(testContext(t), l.Nodes[1]); err != nil {
		t.Fatal(err)
	}
	res := rp(t, l, "--inventory", l.InventoryPath(), "--connect-timeout", "3s")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-1: dial tcp 198.18.0.11:22") {
		t.Errorf("exit %d, stderr %q: want 1 and node-1's dial error", res.Code, res.Stderr)
	}
	assertUnchanged(t, l, before)
}

// Bad inventory input is refused before any SSH connection is made.
func TestBadInventoryConnectsNowhere(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	inv := filepath.Join(l.Dir, "bad.yaml")
	data, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, inv, strings.Replace(string(data), "100.64.1.0/24", "100.64.1.7/24", 1))
	res := rp(t, l, "--inventory", inv)
	if res.Code != 1 || !strings.Contains(res.Stderr, `node "node-1" (nodes[1]) pod_cidr: "100.64.1.7/24" has host bits set; did you mean 100.64.1.0/24?`) {
		t.Errorf("exit %d, stderr %q", res.Code, res.Stderr)
	}
	assertNoSSH(t, l)
}

// assertNoSSH fails for every node whose sshd was connected to at all.
func assertNoSSH(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, n := range l.Nodes {
		log, _ := os.ReadFile(filepath.Join(n.Dir, "sshd.log"))
		if strings.Contains(string(log), "Accepted") || strings.Contains(string(log), "Connection from") {
			t.Errorf("%s was connected to:\n%s", n.Name, log)
		}
	}
}

// The subcommands spelled out: check is --check, apply is the default.
func TestCheckAndApplySubcommands(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	inv := l.InventoryPath()
	if res := rp(t, l, "check", "--inventory", inv); res.Code != 2 || strings.Count(res.Stdout, "\n  + ") != 6 {
		t.Errorf("check: exit %d, want 2 and 6 additions", res.Code)
	}
	if res := rp(t, l, "apply", "--inventory", inv); res.Code != 0 {
		t.Errorf("apply: exit %d", res.Code)
	}
	assertConverged(t, l)
	if res := rp(t, l, "check", "--inventory", inv); res.Code != 0 {
		t.Errorf("check after apply: exit %d", res.Code)
	}
}

// --output json prints one document on stdout, nothing else, and it
// matches docs/report.schema.json, for check and for apply.
func TestOutputJSON(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	inv := l.InventoryPath()
	for _, args := range [][]string{{"check"}, {"apply"}, {"check"}} {
		res := rp(t, l, append(args, "--inventory", inv, "-o", "json")...)
		if err := reportschema.Validate([]byte(res.Stdout)); err != nil {
			t.Fatalf("routepush %v -o json: %v\n%s", args, err, res.Stdout)
		}
		var doc orchestrator.JSONReport
		if err := json.Unmarshal([]byte(res.Stdout), &doc); err != nil {
			t.Fatal(err)
		}
		added := 0
		for _, n := range doc.Nodes {
			added += len(n.Added)
		}
		switch {
		case args[0] == "apply" && (res.Code != 0 || doc.RunID == "" || added != 6 || doc.Nodes[0].Outcome != orchestrator.Changed):
			t.Errorf("apply: exit %d, run %q, %d added, %s", res.Code, doc.RunID, added, doc.Nodes[0].Outcome)
		case args[0] == "check" && doc.RunID != "":
			t.Errorf("check has a run id: %s", doc.RunID)
		}
	}
	assertConverged(t, l)
}

// --limit acts on some nodes only, like Ansible's: the others are not
// contacted, and the limited ones still get routes to them.
func TestLimit(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--limit", "node-*,!node-2,!node-3")
	if res.Code != 0 || !strings.Contains(res.Stdout, "2 changed, 2 excluded") || strings.Contains(res.Stdout, "node-2  ") {
		t.Fatalf("--limit: exit %d", res.Code)
	}
	for i, n := range l.Nodes[:2] {
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s:\n%s\nwant\n%s", n.Name, got, want)
		}
	}
	assertUnchanged(t, &lab.Lab{Nodes: l.Nodes[2:]}, before)
	assertNoSSH(t, &lab.Lab{Nodes: l.Nodes[2:]})
}
