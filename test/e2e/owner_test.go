package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// The Ansible playbook's effect, then routepush: every node first gets
// `route add -net CIDR netmask 255.255.255.0 gw IP metric 1` for every
// node's CIDR, its own included, as net-tools does it (proto boot,
// metric 1). --check lists each conflict and self route; apply without
// --adopt changes nothing; with --adopt every node ends with exactly
// routepush's 4 routes and pods reach each other.
func TestPlaybookRoutesAdopted(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	inv := l.InventoryPath()
	for _, n := range l.Nodes {
		for _, o := range l.Nodes {
			out, err := l.Exec(testContext(t), n.NS, "route", "add", "-net", o.PodCIDR.Addr().String(), "netmask", "255.255.255.0", "gw", o.Addr.String(), "metric", "1")
			if err != nil {
				t.Fatalf("%s: route add %s: %v: %s", n.Name, o.PodCIDR, err, out)
			}
		}
	}
	before := snapshot(t, l)

	res := rp(t, l, "--inventory", inv, "--check")
	if res.Code != 1 {
		t.Errorf("--check: exit %d, want 1 (apply would refuse every node)", res.Code)
	}
	conflicts := regexp.MustCompile(`(?m)^  ! 100\.64\.\d+\.0/24 via 198\.18\.0\.\d+ dev eth0 proto boot metric 1 \(proto boot: ip route add or route add\) in the way of 100\.64\.\d+\.0/24 via 198\.18\.0\.\d+ proto 114$`)
	if n := len(conflicts.FindAllString(res.Stdout, -1)); n != 20 {
		t.Errorf("--check lists %d conflicts, want 20:\n%s", n, res.Stdout)
	}
	for i, n := range l.Nodes {
		self := fmt.Sprintf("%s:.*\n(?:  .*\n)*  ! %s via %s dev eth0 proto boot metric 1 .* routes the node's own pod CIDR to itself", n.Name, n.PodCIDR, l.Nodes[i].Addr)
		if !regexp.MustCompile(self).MatchString(res.Stdout) {
			t.Errorf("--check does not report %s's self route", n.Name)
		}
	}
	assertUnchanged(t, l, before)

	res = rp(t, l, "--inventory", inv)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-0: refusing to change the node: route 100.64.1.0/24 via 198.18.0.11 dev eth0 proto boot metric 1") {
		t.Errorf("apply without --adopt: exit %d, want 1 naming the route; stderr:\n%s", res.Code, res.Stderr)
	}
	assertUnchanged(t, l, before)

	res = rp(t, l, "--inventory", inv, "--adopt")
	if res.Code != 0 || !strings.Contains(res.Stdout, "20 routes added, 0 changed, 25 removed") {
		t.Fatalf("apply --adopt: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	assertConverged(t, l)
	if res = rp(t, l, "--inventory", inv, "--check"); res.Code != 0 {
		t.Errorf("--check after --adopt: exit %d, want 0\n%s", res.Code, res.Stdout)
	}
}

// A node leaves the inventory: its routes on the others are stale. --check
// shows them (one - line per remaining node) but apply leaves them without
// --prune; --prune deletes exactly them.
func TestPruneDepartedNode(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	if res := rp(t, l, "--inventory", l.InventoryPath()); res.Code != 0 {
		t.Fatalf("apply: exit %d", res.Code)
	}
	inv := filepath.Join(l.Dir, "without-node-4.yaml")
	if err := l.WriteInventory(inv, l.Nodes[:4]); err != nil {
		t.Fatal(err)
	}
	res := rp(t, l, "--inventory", inv, "--check")
	stale := regexp.MustCompile(`(?m)^  - 100\.64\.4\.0/24 via 198\.18\.0\.14 dev eth0 proto 114 \(stale, kept: --prune deletes it\)$`)
	if res.Code != 0 || len(stale.FindAllString(res.Stdout, -1)) != 4 {
		t.Errorf("--check: exit %d, want 0 and 4 stale lines:\n%s", res.Code, res.Stdout)
	}
	converged := snapshot(t, l)
	if res = rp(t, l, "--inventory", inv); res.Code != 0 {
		t.Fatalf("apply without --prune: exit %d", res.Code)
	}
	assertUnchanged(t, l, converged)

	res = rp(t, l, "--inventory", inv, "--prune")
	if res.Code != 0 || !strings.Contains(res.Stdout, "0 routes added, 0 changed, 4 removed") {
		t.Fatalf("--prune: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	four := &lab.Lab{Nodes: l.Nodes[:4]}
	for i, n := range l.Nodes[:4] {
		if got, want := ipv4Table(t, n), expectedTable(four, i); got != want {
			t.Errorf("%s after --prune:\n%s\nwant\n%s", n.Name, got, want)
		}
	}
	if res = rp(t, l, "--inventory", inv, "--check"); res.Code != 0 || strings.Contains(res.Stdout, "stale") {
		t.Errorf("--check after --prune: exit %d\n%s", res.Code, res.Stdout)
	}
}

// Each rail refuses an inventory before any connection, naming the node,
// the field and the rule.
func TestRailsRefuseBeforeConnecting(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	for _, c := range []struct {
		name, cidr string
		args       []string
		want       string
	}{
		{"too wide", "102.0.0.0/7", nil, // refused before it could route anything
			`node "node-0" (nodes[0]) pod_cidr: 102.0.0.0/7 is wider than /8, the shortest IPv4 pod CIDR allowed (--min-prefix-v4)`},
		{"wider than configured", "100.64.16.0/20", []string{"--min-prefix-v4", "22"},
			`node "node-0" (nodes[0]) pod_cidr: 100.64.16.0/20 is wider than /22`},
		{"contains the control host", l.BastionAddr.String() + "/32", nil,
			fmt.Sprintf(`node "node-0" (nodes[0]) pod_cidr: %s/32 contains %s, an address of this control host`, l.BastionAddr, l.BastionAddr)},
		{"contains a node", "198.18.0.0/24", nil,
			`pod_cidr: 198.18.0.0/24 contains 198.18.0.11, the internal IP of node "node-1"`},
		{"overlaps another node", "100.64.0.0/16", nil,
			`overlaps 100.64.0.0/16 of node "node-0"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			nodes := []*lab.Node{}
			for _, n := range l.Nodes {
				copy := *n
				nodes = append(nodes, &copy)
			}
			nodes[0].PodCIDR = netip.MustParsePrefix(c.cidr)
			inv := filepath.Join(l.Dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			if err := l.WriteInventory(inv, nodes); err != nil {
				t.Fatal(err)
			}
			res := rp(t, l, append([]string{"--inventory", inv}, c.args...)...)
			if res.Code != 1 || !strings.Contains(res.Stderr, c.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant it to contain %q", res.Code, res.Stderr, c.want)
			}
		})
	}
	assertNoSSH(t, l)
}

// The jump host's address is a rail too: a pod CIDR containing it would
// route routepush's own way to the nodes into a pod network.
func TestRailJumpHost(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 2, Jump: true})
	nodes := []*lab.Node{}
	for _, n := range l.Nodes {
		copy := *n
		nodes = append(nodes, &copy)
	}
	jump := l.Jump.Addr
	nodes[1].PodCIDR = netip.PrefixFrom(jump, 32)
	inv := filepath.Join(l.Dir, "jump-rail.yaml")
	if err := l.WriteInventory(inv, nodes); err != nil {
		t.Fatal(err)
	}
	res := rp(t, l, "--inventory", inv)
	want := fmt.Sprintf(`node "node-1" (nodes[1]) pod_cidr: %s/32 contains %s, the address of jump host`, jump, jump)
	if res.Code != 1 || !strings.Contains(res.Stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant it to contain %q", res.Code, res.Stderr, want)
	}
	assertNoSSH(t, l)
	if b, _ := os.ReadFile(filepath.Join(l.Jump.Dir, "sshd.log")); strings.Contains(string(b), "Accepted") {
		t.Errorf("the jump host was logged in to:\n%s", b)
	}
}

// --table puts the routes in a table of their own (here 100, looked up for
// the pod range by an ip rule) with --metric's metric, leaves main alone,
// and manages only that table; a wrong table name is refused before any
// connection.
func TestTableAndMetric(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	for _, n := range l.Nodes {
		ipRun(t, n, "rule", "add", "to", "100.64.0.0/10", "lookup", "100", "priority", "100")
	}
	mainBefore := snapshot(t, l)
	args := []string{"--inventory", l.InventoryPath(), "--table", "100", "--metric", "50"}
	if res := rp(t, l, append(args, "--check")...); res.Code != 2 || !strings.Contains(res.Stdout, "node-0: 2 to add, 0 to change, 0 to delete, 0 in sync in table 100\n  + 100.64.1.0/24 via 198.18.0.11 proto 114 metric 50\n") {
		t.Fatalf("--check: exit %d\n%s", res.Code, res.Stdout)
	}
	if res := rp(t, l, args...); res.Code != 0 {
		t.Fatalf("apply: exit %d\n%s", res.Code, res.Stderr)
	}
	assertUnchanged(t, l, mainBefore) // main is untouched
	for i, n := range l.Nodes {
		out, err := l.Exec(testContext(t), n.NS, "ip", "route", "show", "table", "100")
		if err != nil {
			t.Fatal(err)
		}
		for j, o := range l.Nodes {
			want := fmt.Sprintf("%s via %s dev eth0 proto 114 metric 50", o.PodCIDR, o.Addr)
			if got := strings.Contains(out, want); got != (i != j) {
				t.Errorf("%s table 100:\n%s\nhas %q: %v", n.Name, out, want, got)
			}
		}
	}
	if failed := pingMatrix(t, l); len(failed) > 0 {
		t.Errorf("pod pings through table 100 failed: %v", failed)
	}
	if res := rp(t, l, append(args, "--check")...); res.Code != 0 {
		t.Errorf("--check after apply: exit %d\n%s", res.Code, res.Stdout)
	}
	// Without --table, main is what routepush manages: it is empty of pod
	// routes, and table 100's routes are not its business.
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--check"); res.Code != 2 || strings.Contains(res.Stdout, "stale") {
		t.Errorf("--check of main: exit %d, want 2 and nothing stale\n%s", res.Code, res.Stdout)
	}
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--table", "pods"); res.Code != 1 || !strings.Contains(res.Stderr, `--table "pods": give main or the table's number`) {
		t.Errorf("--table pods: exit %d\n%s", res.Code, res.Stderr)
	}
}

// Dual-stack nodes from the inventory: both families converge in one run,
// and pods reach each other over IPv4 and IPv6.
func TestDualStackInventory(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 5, DualStack: true})
	if res := rp(t, l, "--inventory", l.InventoryPath()); res.Code != 0 || !strings.Contains(res.Stdout, "40 routes added") {
		t.Fatalf("apply: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, n := range l.Nodes {
		out, err := l.Exec(testContext(t), n.NS, "ip", "-6", "route", "show", "proto", "114")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(out, "\n"); got != 4 {
			t.Errorf("%s has %d IPv6 routes of routepush's, want 4:\n%s", n.Name, got, out)
		}
	}
	for fam, matrix := range map[string][][]bool{"IPv4": l.PingMatrix(testContext(t)), "IPv6": l.PingMatrix6(testContext(t))} {
		for i, row := range matrix {
			for j, ok := range row {
				if i != j && !ok {
					t.Errorf("%s pod ping %s -> %s failed", fam, l.Nodes[i].Name, l.Nodes[j].Name)
				}
			}
		}
	}
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--check"); res.Code != 0 {
		t.Errorf("--check after apply: exit %d\n%s", res.Code, res.Stdout)
	}

	// One routes file holds both families; replayed after a flush of
	// both, it brings back exactly the tables.
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--persist"); res.Code != 0 || !strings.Contains(res.Stdout, "5 changed") {
		t.Fatalf("--persist: exit %d", res.Code)
	}
	converged := snapshot(t, l)
	for _, n := range l.Nodes {
		ipRun(t, n, "-4", "route", "flush", "proto", "114")
		ipRun(t, n, "-6", "route", "flush", "proto", "114")
		cmd := execStartRE.FindStringSubmatch(readOrNone(t, unitFile(n)))
		if cmd == nil {
			t.Fatalf("%s: no ExecStart in its unit", n.Name)
		}
		if out, err := l.NodeExec(testContext(t), n, strings.Fields(cmd[1])...); err != nil {
			t.Fatalf("%s: %s: %v %s", n.Name, cmd[1], err, out)
		}
	}
	assertUnchanged(t, l, converged)
}
