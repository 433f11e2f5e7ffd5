package inventory

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRails(t *testing.T) {
	t.Parallel()
	nodes := []Node{
		{Name: "a", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10")},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24"), netip.MustParsePrefix("2001:db8:1::/31")}},
		{Name: "b", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.11")},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32")}},
	}
	r := DefaultRails()
	r.Reserved = []ReservedAddr{{netip.MustParseAddr("198.18.0.1"), "an address of this control host"}}
	err := CheckRails("inventory x.yaml", nodes, false, r)
	for _, want := range []string{
		`node "a" (nodes[0]) pod_cidr: 2001:db8:1::/31 is wider than /32, the shortest IPv6 pod CIDR allowed (--min-prefix-v6)`,
		`node "b" (nodes[1]) pod_cidr: 198.18.0.1/32 contains 198.18.0.1, an address of this control host`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckRails() = %v\nwant it to contain %s", err, want)
		}
	}
	r.MinPrefix[1] = 31
	nodes[1].PodCIDRs = []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}
	if err := CheckRails("inventory x.yaml", nodes, false, r); err != nil {
		t.Errorf("CheckRails() = %v, want nil", err)
	}
}

func TestDefaultRailsIsAValue(t *testing.T) {
	t.Parallel()
	r := DefaultRails()
	r.MinPrefix[0] = 30
	r.Reserved = append(r.Reserved, ReservedAddr{netip.MustParseAddr("198.18.0.1"), "a test's"})
	if d := DefaultRails(); d.MinPrefix != [2]int{8, 32} || len(d.Reserved) != 0 {
		t.Errorf("DefaultRails() = %+v after a caller changed its copy; want /8, /32 and nothing reserved", d)
	}
}
