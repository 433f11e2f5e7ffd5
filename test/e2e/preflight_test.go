package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// breakPreflight gives four of a lab's nodes each one reason pods cannot
// reach each other through routes that verify, as users meet them:
// node-0 forwards nothing, node-1 filters reverse paths strictly on the
// interface toward the others, node-2 has Docker's FORWARD policy (drop,
// in nft), node-3 has no address in its pod CIDR (no pod bridge). The
// last node is left as it is.
func breakPreflight(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, c := range []struct {
		n    *lab.Node
		args []string
	}{
		{l.Nodes[0], []string{"sysctl", "-qw", "net.ipv4.ip_forward=0"}},
		{l.Nodes[1], []string{"sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=1"}},
		{l.Nodes[2], []string{"nft", "add table inet filter"}},
		{l.Nodes[2], []string{"nft", "add chain inet filter forward { type filter hook forward priority 0; policy drop; }"}},
	} {
		if out, err := l.Exec(testContext(t), c.n.NS, c.args[0], c.args[1:]...); err != nil {
			t.Fatalf("%s: %v: %s", c.n.Name, err, out)
		}
	}
	ipRun(t, l.Nodes[3], "addr", "del", l.Nodes[3].PodIP.String()+"/32", "dev", "lo")
}

// preflightWants are the findings breakPreflight's nodes must show: the
// sentence's start and the fix, by node.
func preflightWants(l *lab.Lab) map[string][2]string {
	pod2 := l.Nodes[2].PodCIDR.String()
	return map[string][2]string{
		"node-0": {"IPv4 forwarding is off", "sysctl -w net.ipv4.ip_forward=1"},
		"node-1": {`reverse-path filtering is strict on "eth0"`, "sysctl -w net.ipv4.conf.eth0.rp_filter=2"},
		"node-2": {`nft chain "inet" "filter" "forward"'s policy is drop`, "nft insert rule inet filter forward ip saddr " + pod2 + " accept && nft insert rule inet filter forward ip daddr " + pod2 + " accept"},
		"node-3": {"no interface holds an address in its pod CIDR " + l.Nodes[3].PodCIDR.String(), "let the node's CNI set up its pod bridge"},
	}
}

// check names each node's problem with its fix, in text and in JSON, and
// nothing on the node that has none.
func TestPreflightNamesEachProblemWithItsFix(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	breakPreflight(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--check")
	if res.Code != 2 {
		t.Errorf("--check exit %d, want 2 (routes to add)", res.Code)
	}
	for name, want := range preflightWants(l) {
		re := regexp.MustCompile(`(?m)^preflight: ` + regexp.QuoteMeta(name) + `: ` + regexp.QuoteMeta(want[0]) + `.*\n  fix: ` + regexp.QuoteMeta(want[1]) + `.*\n`)
		if !re.MatchString(res.Stdout) {
			t.Errorf("%s: the report lacks %q with the fix %q", name, want[0], want[1])
		}
	}
	if strings.Contains(res.Stdout, "preflight: node-4") {
		t.Errorf("node-4 has nothing wrong, yet the report names it")
	}
	if n := strings.Count(res.Stdout, "\n  fix: "); n != 4 {
		t.Errorf("%d fixes, want 4 (one per broken node)", n)
	}
	if !strings.Contains(res.Stdout, "; preflight: 4 problems on 4 nodes\n") {
		t.Errorf("the summary line does not count 4 problems on 4 nodes")
	}

	res = rp(t, l, "--inventory", l.InventoryPath(), "--check", "--output", "json")
	var doc struct {
		Nodes []struct {
			Name      string
			Preflight []struct{ Kind, Family, Interface, Why, Fix string }
		}
	}
	if err := json.Unmarshal([]byte(res.Stdout), &doc); err != nil {
		t.Fatalf("--output json: %v\n%s", err, res.Stdout)
	}
	kinds := map[string]string{"node-0": "forwarding-off", "node-1": "rp-filter-strict", "node-2": "forward-drop", "node-3": "no-pod-address"}
	for _, n := range doc.Nodes {
		want := preflightWants(l)[n.Name]
		switch {
		case n.Name == "node-4" && len(n.Preflight) != 0:
			t.Errorf("node-4: JSON preflight %+v, want none", n.Preflight)
		case n.Name != "node-4" && (len(n.Preflight) != 1 || n.Preflight[0].Kind != kinds[n.Name] || !strings.HasPrefix(n.Preflight[0].Fix, want[1]) || n.Preflight[0].Family != "IPv4"):
			t.Errorf("%s: JSON preflight %+v, want one %s with the fix %q", n.Name, n.Preflight, kinds[n.Name], want[1])
		}
	}
}

// --preflight strict refuses exactly the nodes with a problem, before
// anything changes anywhere; report (the default) converges the lab and
// still names them; off reads and says nothing.
func TestPreflightStrictRefusesExactlyThoseNodes(t *testing.T) {
	t.Parallel()
	faultCase(t, "20-P1 (--preflight strict: the four nodes pods cannot cross are refused, no table changes anywhere)")
	l := newLab(t, 5)
	breakPreflight(t, l)
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--preflight", "strict")
	if res.Code != 1 {
		t.Errorf("strict: exit %d, want 1", res.Code)
	}
	for _, n := range l.Nodes {
		refused := row(n.Name, "refused").MatchString(res.Stdout)
		if refused != (n.Name != "node-4") {
			t.Errorf("strict: %s refused: %v, want %v", n.Name, refused, n.Name != "node-4")
		}
	}
	for name, want := range preflightWants(l) {
		if !regexp.MustCompile(regexp.QuoteMeta(name) + `: refusing to change the node: preflight: ` + regexp.QuoteMeta(want[0])).MatchString(res.Stderr) {
			t.Errorf("strict: stderr does not say why %s is refused (%q)", name, want[0])
		}
	}
	assertUnchanged(t, l, before)
	assertNoLocks(t, l)

	res = rp(t, l, "--inventory", l.InventoryPath(), "--preflight", "off")
	if res.Code != 0 || strings.Contains(res.Stdout, "preflight") {
		t.Errorf("off: exit %d, want 0 and no word of preflight", res.Code)
	}
	for i, n := range l.Nodes {
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s: table\n%s\nwant\n%s", n.Name, got, want)
		}
	}
	res = rp(t, l, "--inventory", l.InventoryPath())
	if res.Code != 0 || strings.Count(res.Stdout, "\n  fix: ") != 4 {
		t.Errorf("report: exit %d, want 0 with the four fixes", res.Code)
	}
}

// A dual-stack node is read by a script (ip once per family), and
// preflight's reads come with it: a lab set up right has no finding, and
// IPv6 forwarding turned off on one node is named with its fix, as is the
// probe of both families.
func TestPreflightDualStack(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 3, DualStack: true})
	res := rp(t, l, "--inventory", l.InventoryPath(), "--probe")
	if res.Code != 0 || strings.Contains(res.Stdout, "preflight") || !strings.Contains(res.Stdout, "; probe: 12 pairs, 12 answered, 0 did not") {
		t.Errorf("exit %d, want 0, no preflight finding, and 12 pairs answered (3 nodes, each the 2 others, in both families)", res.Code)
	}
	if out, err := l.Exec(testContext(t), l.Nodes[1].NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	res = rp(t, l, "--inventory", l.InventoryPath(), "--check")
	if res.Code != 0 || !strings.Contains(res.Stdout, "preflight: node-1: IPv6 forwarding is off") || !strings.Contains(res.Stdout, "  fix: sysctl -w net.ipv6.conf.all.forwarding=1\n") {
		t.Errorf("exit %d, want 0 and node-1's IPv6 forwarding named with its fix", res.Code)
	}
	if strings.Count(res.Stdout, "\n  fix: ") != 1 {
		t.Errorf("want exactly one finding")
	}
}
