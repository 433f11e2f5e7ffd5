package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// Issue 14: whatever --protocol, --prune and --adopt say, a batch never
// deletes a connected or default route, and no pod CIDR is routed over a
// node's directly connected subnet. Routes marked with routepush's own
// protocol that look stale to --prune are the way to ask for it.
func TestSafeNeverTouchesConnectedOrDefault(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-G (--prune over a connected and a default route marked proto 114: refused per node)")
	l := newLab(t, 3)
	ipRun(t, l.Nodes[0], "route", "add", "default", "via", l.Nodes[1].Addr.String(), "proto", "114")
	ipRun(t, l.Nodes[1], "route", "add", "198.18.0.0/16", "dev", "eth0", "proto", "114", "metric", "7")
	before := snapshot(t, l)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--prune")
	for _, want := range []string{
		"node-0: refusing to change the node: the batch would delete the default route 0.0.0.0/0 via 198.18.0.11",
		"node-1: refusing to change the node: the batch would delete the directly connected route 198.18.0.0/16 dev eth0 proto 114 metric 7",
	} {
		if res.Code != 1 || !strings.Contains(res.Stderr, want) {
			t.Errorf("exit %d, want 1 and %q", res.Code, want)
		}
	}
	assertUnchanged(t, l, before)
}

// A pod CIDR inside the nodes' own subnet is refused at read, on every
// node that has that subnet directly connected; nothing changes anywhere.
func TestSafePodCIDRInsideNodeSubnet(t *testing.T) {
	t.Parallel()
	faultCase(t, "14-H (a pod CIDR inside the node subnet: refused at read)")
	l := newLab(t, 3)
	inv, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(inv), lab.NodePodCIDR(2).String(), "198.18.0.128/25", 1)
	if bad == string(inv) {
		t.Fatal("the inventory does not name node-2's pod CIDR")
	}
	path := l.Dir + "/subnet.yaml"
	writeFile(t, path, bad)
	before := snapshot(t, l)
	for _, args := range [][]string{{"--check"}, nil} {
		res := rp(t, l, append([]string{"--inventory", path}, args...)...)
		for _, node := range []string{"node-0", "node-1"} {
			want := node + ": refusing to change the node: the planned 198.18.0.128/25 via 198.18.0.12 proto 114 overlaps the node's directly connected subnet 198.18.0.0/16 (dev eth0)"
			if res.Code != 1 || !strings.Contains(res.Stderr, want) {
				t.Errorf("%v: exit %d, want 1 and %q", args, res.Code, want)
			}
		}
	}
	assertUnchanged(t, l, before)
}
