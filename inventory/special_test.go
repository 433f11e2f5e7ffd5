package inventory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The rules of the special-purpose blocks, as messages give them.
const (
	ruleThisNet   = `0.0.0.0/8 ("this network"; the unspecified address 0.0.0.0 is inside): routing it to pods would hijack it`
	ruleLoop4     = `127.0.0.0/8 (loopback): routing it to pods would hijack it`
	ruleLinkLocal = `169.254.0.0/16 (link-local; the cloud metadata address 169.254.169.254 is inside): routing it to pods would hijack it`
	ruleMcast4    = `224.0.0.0/4 (multicast): routing it to pods would hijack it`
	ruleReserved  = `240.0.0.0/4 (reserved; the broadcast address 255.255.255.255 is inside): routing it to pods would hijack it`
	ruleUnspec6   = `::/128 (the unspecified address): routing it to pods would hijack it`
	ruleLoop6     = `::1/128 (loopback): routing it to pods would hijack it`
	ruleMapped    = `::ffff:0:0/96 (IPv4-mapped addresses)`
	ruleLink6     = `fe80::/10 (link-local): routing it to pods would hijack it`
	ruleMcast6    = `ff00::/8 (multicast): routing it to pods would hijack it`
	ruleIETF      = `192.0.0.0/24 (IETF protocol assignments): routing it to pods would hijack it`
	ruleAzure     = `168.63.129.16/32 (Azure's platform address (wireserver, DNS, metadata)): routing it to pods would hijack it`
	ruleNAT64     = `64:ff9b::/96 (the NAT64 well-known prefix): routing it to pods would hijack it`
	ruleAWS6      = `fd00:ec2::254/128 (the AWS instance metadata address over IPv6): routing it to pods would hijack it`
)

// specialCIDRs are pod CIDRs inside and covering each special block, and
// the rule each must be refused by.
var specialCIDRs = []struct{ cidr, rule string }{
	{"0.1.0.0/16", ruleThisNet},
	{"0.0.0.0/7", ruleThisNet},
	{"0.0.0.0/4", ruleThisNet}, // wider than the block: overlaps it all the same
	{"127.0.0.0/24", ruleLoop4},
	{"126.0.0.0/7", ruleLoop4},
	{"169.254.169.254/32", ruleLinkLocal},
	{"169.254.0.0/15", ruleLinkLocal},
	{"224.0.0.0/24", ruleMcast4},
	{"224.0.0.0/3", ruleMcast4},
	{"255.255.255.255/32", ruleReserved},
	{"240.0.0.0/24", ruleReserved},
	{"224.0.0.0/3", ruleReserved},
	{"::/128", ruleUnspec6},
	{"::/127", ruleUnspec6},
	{"::1/128", ruleLoop6},
	{"::/127", ruleLoop6},
	{"::ffff:0:0/96", ruleMapped}, // refused as it is parsed
	{"::ffff:100.64.0.0/120", ruleMapped},
	{"::fffe:0:0/95", ruleMapped},
	{"fe80::/64", ruleLink6},
	{"fe80::/9", ruleLink6},
	{"ff02::/16", ruleMcast6},
	{"fe00::/7", ruleMcast6},
	{"192.0.0.0/29", ruleIETF},
	{"168.63.129.0/24", ruleAzure},
	{"64:ff9b::/112", ruleNAT64},
	{"fd00:ec2::/64", ruleAWS6},
}

// okCIDRs are pod CIDRs near the special blocks that must stay allowed.
var okCIDRs = []string{"100.64.0.0/24", "100.64.0.0/10", "1.0.0.0/24", "126.255.255.0/24", "169.253.0.0/16",
	"223.255.255.0/24", "2001:db8:1::/64", "::2/128", "fec0::/10", "fe00::/9"}

// hostsYAML is an inventory of two dual-stack nodes, worker-1 with the
// given pod CIDR.
func hostsYAML(t *testing.T, cidr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hosts.yaml")
	body := fmt.Sprintf(`nodes:
  - name: worker-0
    internal_ips: [198.18.0.10, "2001:db8::10"]
    pod_cidr: 10.0.0.0/24
  - name: worker-1
    internal_ips: [198.18.0.11, "2001:db8::11"]
    pod_cidr: "%s"
`, cidr)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpecialBlocksRefusedInInventory(t *testing.T) {
	t.Parallel()
	for _, tt := range specialCIDRs {
		_, err := Load(hostsYAML(t, tt.cidr))
		want := fmt.Sprintf(`node "worker-1" (nodes[1]) pod_cidr: %s overlaps %s`, tt.cidr, tt.rule)
		if tt.rule == ruleMapped && strings.HasPrefix(tt.cidr, "::ffff:") {
			want = fmt.Sprintf(`node "worker-1" (nodes[1]) pod_cidr: %q overlaps %s: write IPv4 CIDRs in dotted form`, tt.cidr, tt.rule)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pod_cidr %s: Load() = %v\nwant it to contain %s", tt.cidr, err, want)
		}
	}
	for _, cidr := range okCIDRs {
		if _, err := Load(hostsYAML(t, cidr)); err != nil {
			t.Errorf("pod_cidr %s: Load() = %v, want it allowed", cidr, err)
		}
	}
}

func TestSpecialBlocksRefusedFromAPI(t *testing.T) {
	t.Parallel()
	cluster := func(cidr string) *Cluster {
		c, _ := fakeCluster(KubeOptions{},
			apiNode("worker-0", nil, []string{"10.0.0.0/24"}, internal("198.18.0.10"), internal("2001:db8::10")),
			apiNode("worker-1", nil, []string{cidr}, internal("198.18.0.11"), internal("2001:db8::11")))
		return c
	}
	for _, tt := range specialCIDRs {
		_, err := cluster(tt.cidr).Nodes(context.Background(), nil, false)
		want := fmt.Sprintf(`node "worker-1" spec.podCIDRs: %s overlaps %s`, tt.cidr, tt.rule)
		if tt.rule == ruleMapped && strings.HasPrefix(tt.cidr, "::ffff:") {
			want = fmt.Sprintf(`node "worker-1" spec.podCIDRs[0]: %q overlaps %s: write IPv4 CIDRs in dotted form`, tt.cidr, tt.rule)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("spec.podCIDRs %s: Nodes() = %v\nwant it to contain %s", tt.cidr, err, want)
		}
	}
	for _, cidr := range okCIDRs {
		if _, err := cluster(cidr).Nodes(context.Background(), nil, false); err != nil {
			t.Errorf("spec.podCIDRs %s: Nodes() = %v, want it allowed", cidr, err)
		}
	}
}
