package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// A node's routes file and boot unit, as its sshd sees them.
func routesFile(n *lab.Node) string { return filepath.Join(n.Dir, "etc-routepush", "routes") }
func unitFile(n *lab.Node) string {
	return filepath.Join(n.Dir, "etc-systemd-system", "routepush-routes.service")
}

// readOrNone reads a file, "<none>" if it does not exist.
func readOrNone(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var execStartRE = regexp.MustCompile(`(?m)^ExecStart=(.+)$`)

// --persist writes every node's routes file and boot unit; --check reports
// drift and networkd's risk; after `ip route flush proto 114` the unit's
// ExecStart restores exactly the routes; a run that fails after some nodes
// persisted puts every routes file back as it was.
func TestPersistSurvivesAFlush(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	ctx := testContext(t)
	inv := l.InventoryPath()
	n0, n1, n2, n3 := l.Nodes[0], l.Nodes[1], l.Nodes[2], l.Nodes[3]
	// node-2 and node-3 run systemd-networkd (its state file); node-2 has
	// set ManageForeignRoutes=no, node-3 keeps the default.
	if err := l.SetRunSystemd(ctx, n2, map[string]string{"netif/state": "OPER_STATE=routable\n",
		"networkd.conf.d/50-routepush.conf": "[Network]\n# routepush's routes are not networkd's\nManageForeignRoutes=no\n"}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetRunSystemd(ctx, n3, map[string]string{"netif/state": "OPER_STATE=routable\n"}); err != nil {
		t.Fatal(err)
	}
	// node-1 has an older routes file: kept by rollback, replaced by apply.
	old := "# an older routepush's\nroute replace 100.64.250.0/24 via 198.18.0.11 proto 114\n"
	writeFile(t, routesFile(n1), old)

	res := rp(t, l, "--inventory", inv, "--persist", "--check")
	if res.Code != 2 {
		t.Fatalf("--check --persist exit %d, want 2", res.Code)
	}
	for _, want := range []string{
		"  + /etc/routepush/routes (routes file missing; 3 routes)",
		"  ~ /etc/routepush/routes (routes file differs from the plan: 3 routes missing, 1 extra)",
		"note: node-3: systemd-networkd runs with ManageForeignRoutes on",
		"note: node-0, node-1, node-2 and 1 more: no systemd",
	} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("--check --persist does not say %q", want)
		}
	}
	if got := readOrNone(t, routesFile(n1)); got != old || readOrNone(t, routesFile(n0)) != "<none>" {
		t.Errorf("--check wrote routes files: node-1 has %q", got)
	}

	res = rp(t, l, "--inventory", inv, "--persist")
	if res.Code != 0 {
		t.Fatalf("apply --persist exit %d, want 0", res.Code)
	}
	converged := snapshot(t, l)
	for i, n := range l.Nodes {
		file, unit := readOrNone(t, routesFile(n)), readOrNone(t, unitFile(n))
		for j, o := range l.Nodes {
			line := "route replace " + o.PodCIDR.String() + " via " + o.Addr.String() + " proto 114\n"
			if (i != j) != strings.Contains(file, line) {
				t.Errorf("%s's routes file, route to %s: want %v:\n%s", n.Name, o.Name, i != j, file)
			}
		}
		for _, want := range []string{"Type=oneshot", "After=network-online.target", "ExecStart=/sbin/ip -force -batch /etc/routepush/routes", "WantedBy=multi-user.target"} {
			if !strings.Contains(unit, want+"\n") {
				t.Errorf("%s's unit lacks %q:\n%s", n.Name, want, unit)
			}
		}
	}
	if res := rp(t, l, "--inventory", inv, "--persist", "--check"); res.Code != 0 || !strings.Contains(res.Stdout, "4 in sync") {
		t.Errorf("--check --persist after apply: exit %d, want 0 with 4 in sync", res.Code)
	}

	// A reboot as far as routes go: flush routepush's routes, run the
	// unit's ExecStart as systemd would.
	for _, n := range l.Nodes {
		cmd := execStartRE.FindStringSubmatch(readOrNone(t, unitFile(n)))
		if cmd == nil {
			t.Fatalf("%s: no ExecStart", n.Name)
		}
		ipRun(t, n, "route", "flush", "proto", "114")
		if got := snapshot(t, l)[n.Name]; strings.Contains(got, "proto 114") {
			t.Fatalf("%s: flush left routes:\n%s", n.Name, got)
		}
		if out, err := l.NodeExec(ctx, n, strings.Fields(cmd[1])...); err != nil {
			t.Fatalf("%s: %s: %v %s", n.Name, cmd[1], err, out)
		}
		// And again: ip -force -batch of replace lines tolerates routes
		// that are already there.
		if out, err := l.NodeExec(ctx, n, strings.Fields(cmd[1])...); err != nil {
			t.Fatalf("%s: %s a second time: %v %s", n.Name, cmd[1], err, out)
		}
	}
	assertUnchanged(t, l, converged)
	if failed := pingMatrix(t, l); len(failed) > 0 {
		t.Errorf("after replaying the routes files, pings failed: %v", failed)
	}

	// node-3 now "runs systemd" (/run/systemd/system) but systemctl cannot
	// reach it: enabling the unit fails there, after its routes verified
	// and its file was written, as the others' were. Every node's routes
	// and routes file go back to what they were.
	if err := l.SetRunSystemd(ctx, n3, map[string]string{"system/": ""}); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, n := range l.Nodes {
		files[n.Name] = readOrNone(t, routesFile(n))
	}
	res = rp(t, l, "--inventory", inv, "--persist", "--metric", "7")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-3: systemctl enable routepush-routes.service: exit status 1") {
		t.Fatalf("apply --persist --metric 7 with node-3 failing: exit %d, want 1 naming node-3's systemctl", res.Code)
	}
	assertUnchanged(t, l, converged)
	for _, n := range l.Nodes {
		if got := readOrNone(t, routesFile(n)); got != files[n.Name] {
			t.Errorf("%s: routes file not restored by the rollback:\n--- was\n%s--- is\n%s", n.Name, files[n.Name], got)
		}
	}
	if !strings.Contains(res.Stdout, "3 rolled back") {
		t.Errorf("summary does not show the 3 other nodes rolled back:\n%s", res.Stdout)
	}
}

// `routepush rollback` puts back the routes files a run replaced, from the
// records on the nodes alone: here a run that failed with --rollback none
// left two nodes changed, routes file included.
func TestRollbackCommandRestoresRoutesFiles(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	ctx := testContext(t)
	inv := l.InventoryPath()
	if res := rp(t, l, "--inventory", inv, "--persist"); res.Code != 0 {
		t.Fatalf("apply --persist: exit %d", res.Code)
	}
	converged := snapshot(t, l)
	files := map[string]string{}
	for _, n := range l.Nodes {
		files[n.Name] = readOrNone(t, routesFile(n))
	}
	// node-2 "runs systemd" that systemctl cannot reach: it fails after
	// its routes verified and its routes file was written.
	if err := l.SetRunSystemd(ctx, l.Nodes[2], map[string]string{"system/": ""}); err != nil {
		t.Fatal(err)
	}
	res := rp(t, l, "--inventory", inv, "--persist", "--metric", "9", "--prune", "--rollback", "none")
	if res.Code != 1 {
		t.Fatalf("apply --metric 9 --rollback none: exit %d, want 1", res.Code)
	}
	for _, n := range l.Nodes {
		if got := readOrNone(t, routesFile(n)); !strings.Contains(got, "metric 9") {
			t.Fatalf("%s: the failed run did not leave its routes file:\n%s", n.Name, got)
		}
	}
	if res := rp(t, l, "rollback", "--inventory", inv); res.Code != 0 || !strings.Contains(res.Stdout, "3 nodes restored") {
		t.Fatalf("routepush rollback: exit %d, want 0 and 3 nodes restored", res.Code)
	}
	assertUnchanged(t, l, converged)
	for _, n := range l.Nodes {
		if got := readOrNone(t, routesFile(n)); got != files[n.Name] {
			t.Errorf("%s: routes file after routepush rollback:\n%s--- want\n%s", n.Name, got, files[n.Name])
		}
	}
}
