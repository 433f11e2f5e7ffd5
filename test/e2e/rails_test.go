package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// railsInventory writes an inventory of the lab's dual-stack nodes with
// node-1's IPv4 or IPv6 pod CIDR replaced by cidr. Values are quoted: YAML
// reads a plain ::1/128 in a flow list as a mapping.
func railsInventory(t *testing.T, l *lab.Lab, name, cidr string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "defaults:\n  user: root\n  port: 22\n  identity_file: %s\nnodes:\n", l.IdentityPath())
	for i, n := range l.Nodes {
		v4, v6 := n.PodCIDR.String(), n.PodCIDR6.String()
		if i == 1 && strings.Contains(cidr, ":") {
			v6 = cidr
		} else if i == 1 && cidr != "" {
			v4 = cidr
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    internal_ips: [%q, %q]\n    pod_cidrs: [%q, %q]\n",
			n.Name, n.Addr, n.Addr, n.Addr6, v4, v6)
	}
	p := filepath.Join(l.Dir, name)
	writeFile(t, p, b.String())
	return p
}

// A --protocol other owners use is refused before any node is contacted,
// naming the owner: with --prune, routepush would otherwise delete the
// owner's routes (the kernel's own connected routes, for 2) as its stale
// ones, and add its own marked as the owner's.
func TestRailsProtocolOfOtherOwners(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 2, DualStack: true})
	before := snapshot(t, l)
	for _, tt := range []struct {
		protocol, owner string
	}{
		{"2", "--protocol 2 is the kernel's (proto kernel: the routes of the node's own addresses); routepush may only manage routes of a protocol nobody else uses, e.g. the default 114"},
		{"3", "--protocol 3 is the default of ip route add (proto boot: "},
		{"16", "--protocol 16 is DHCP clients' (proto dhcp: "},
	} {
		t.Run("proto"+tt.protocol, func(t *testing.T) {
			faultCase(t, "rails: --protocol "+tt.protocol+" --prune refused, no node contacted")
			res := rp(t, l, "--inventory", l.InventoryPath(), "--protocol", tt.protocol, "--prune")
			if res.Code != 1 || !strings.Contains(res.Stderr, tt.owner) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", res.Code, res.Stderr, tt.owner)
			}
			assertNoSSH(t, l)
			assertUnchanged(t, l, before)
		})
	}
	// The lab was reachable all along: the same run with routepush's own
	// protocol connects (and assertNoSSH would have seen it).
	assertConnects(t, l, "--inventory", l.InventoryPath(), "--protocol", "114", "--prune")
}

// Pod CIDRs overlapping a special-purpose block are refused by plan and
// apply before any node is contacted, naming node, field and rule. Taken,
// each would route the nodes' loopback, link-local (cloud metadata),
// multicast or broadcast traffic to node-1's pods.
func TestRailsSpecialPodCIDRs(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 2, DualStack: true})
	before := snapshot(t, l)
	hijack := ": routing it to pods would hijack it"
	for _, tt := range []struct {
		cidr, rule string
	}{
		{"169.254.169.254/32", "169.254.169.254/32 overlaps 169.254.0.0/16 (link-local; the cloud metadata address 169.254.169.254 is inside)" + hijack},
		{"224.0.0.0/24", "224.0.0.0/24 overlaps 224.0.0.0/4 (multicast)" + hijack},
		{"0.0.0.0/8", `0.0.0.0/8 overlaps 0.0.0.0/8 ("this network"; the unspecified address 0.0.0.0 is inside)` + hijack},
		{"0.0.0.0/4", `0.0.0.0/4 overlaps 0.0.0.0/8 ("this network"; the unspecified address 0.0.0.0 is inside)` + hijack},
		{"127.0.0.0/24", "127.0.0.0/24 overlaps 127.0.0.0/8 (loopback)" + hijack},
		{"255.255.255.255/32", "255.255.255.255/32 overlaps 240.0.0.0/4 (reserved; the broadcast address 255.255.255.255 is inside)" + hijack},
		{"240.0.0.0/24", "240.0.0.0/24 overlaps 240.0.0.0/4 (reserved; the broadcast address 255.255.255.255 is inside)" + hijack},
		{"fe80::/64", "fe80::/64 overlaps fe80::/10 (link-local)" + hijack},
		{"ff02::/16", "ff02::/16 overlaps ff00::/8 (multicast)" + hijack},
		{"::1/128", "::1/128 overlaps ::1/128 (loopback)" + hijack},
		{"::/128", "::/128 overlaps ::/128 (the unspecified address)" + hijack},
		{"::ffff:0:0/96", `"::ffff:0:0/96" overlaps ::ffff:0:0/96 (IPv4-mapped addresses): write IPv4 CIDRs in dotted form`},
	} {
		inv := railsInventory(t, l, "special-"+strings.NewReplacer("/", "_", ":", "-").Replace(tt.cidr)+".yaml", tt.cidr)
		want := `node "node-1" (nodes[1]) pod_cidr: ` + tt.rule
		for _, verb := range []string{"plan", "apply"} {
			t.Run(verb+"/"+tt.cidr, func(t *testing.T) {
				faultCase(t, fmt.Sprintf("rails: pod CIDR %s refused by %s, no node contacted", tt.cidr, verb))
				res := rp(t, l, verb, "--inventory", inv)
				if res.Code != 1 || !strings.Contains(res.Stderr, want) {
					t.Errorf("exit %d, stderr %q; want exit 1 and %q", res.Code, res.Stderr, want)
				}
				if strings.Contains(res.Stdout, tt.cidr) {
					t.Errorf("stdout plans a route to %s:\n%s", tt.cidr, res.Stdout)
				}
				assertNoSSH(t, l)
				assertUnchanged(t, l, before)
			})
		}
	}
	// The same inventory with its own CIDRs (100.64.0.0/10, allowed) plans
	// and applies: the refusals above were the special CIDRs'.
	good := railsInventory(t, l, "good.yaml", "")
	if res := rp(t, l, "plan", "--inventory", good); res.Code != 0 || !strings.Contains(res.Stdout, l.Nodes[1].PodCIDR.String()) {
		t.Errorf("plan of the lab's own CIDRs: exit %d\n%s", res.Code, res.Stderr)
	}
	assertConnects(t, l, "apply", "--inventory", good)
}

// The same rails hold for pod CIDRs from the Kubernetes API, under the
// API's field names.
func TestRailsSpecialPodCIDRFromAPI(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 2, false)
	k.register(t, k.Nodes[0], nil, []string{k.Nodes[0].PodCIDR.String()})
	k.register(t, k.Nodes[1], nil, []string{"169.254.169.254/32"})
	before := snapshot(t, k.Lab)
	want := `node "node-1" spec.podCIDRs: 169.254.169.254/32 overlaps 169.254.0.0/16 (link-local; the cloud metadata address 169.254.169.254 is inside): routing it to pods would hijack it`
	for _, verb := range []string{"plan", "apply"} {
		t.Run(verb, func(t *testing.T) {
			faultCase(t, "rails: pod CIDR 169.254.169.254/32 from the Kubernetes API refused by "+verb+", no node contacted")
			res := rp(t, k.Lab, verb, "--kubeconfig", k.kubeconfig)
			if res.Code != 1 || !strings.Contains(res.Stderr, want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", res.Code, res.Stderr, want)
			}
			assertNoSSH(t, k.Lab)
			assertUnchanged(t, k.Lab, before)
		})
	}
}

// assertConnects runs routepush and fails unless it succeeds and every
// node's sshd logged the connection: proof that assertNoSSH, which reads
// the same logs, sees connections in this lab.
func assertConnects(t *testing.T, l *lab.Lab, args ...string) {
	t.Helper()
	if res := rp(t, l, args...); res.Code != 0 {
		t.Fatalf("routepush %s: exit %d, want 0", strings.Join(args, " "), res.Code)
	}
	for _, n := range l.Nodes {
		log, _ := os.ReadFile(filepath.Join(n.Dir, "sshd.log"))
		if !strings.Contains(string(log), "Accepted") {
			t.Errorf("%s: sshd logged no connection:\n%s", n.Name, log)
		}
	}
}
