package watch

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
)

// node is a node of the table: name, internal IP, pod CIDR ("" none).
func node(name, ip, cidr string) inventory.Node {
	n := inventory.Node{Name: name, InternalIPs: []netip.Addr{netip.MustParseAddr(ip)}}
	if cidr != "" {
		n.PodCIDRs = []netip.Prefix{netip.MustParsePrefix(cidr)}
	}
	return n
}

func TestDiff(t *testing.T) {
	t.Parallel()
	a := node("a", "10.0.0.1", "100.64.1.0/24")
	b := node("b", "10.0.0.2", "100.64.2.0/24")
	c := node("c", "10.0.0.3", "100.64.3.0/24")
	d := node("d", "10.0.0.4", "100.64.4.0/24")
	cases := []struct {
		name          string
		old, new      []inventory.Node
		affected, gon string
	}{
		{"nothing", []inventory.Node{a, b, c}, []inventory.Node{a, b, c}, "", ""},
		{"first sync", nil, []inventory.Node{a, b}, "a,b", ""},
		{"join: itself and every other", []inventory.Node{a, b, c}, []inventory.Node{a, b, c, d}, "a,b,c,d", ""},
		{"leave: every other, its CIDR pruned", []inventory.Node{a, b, c, d}, []inventory.Node{a, b, d}, "a,b,d", "100.64.3.0/24"},
		{"new InternalIP: every other", []inventory.Node{a, b, c}, []inventory.Node{a, node("b", "10.0.0.9", "100.64.2.0/24"), c}, "a,c", ""},
		{"CIDR assigned: every other", []inventory.Node{a, node("b", "10.0.0.2", ""), c}, []inventory.Node{a, b, c}, "a,c", ""},
		{"CIDR moved: old one pruned", []inventory.Node{a, b, c}, []inventory.Node{a, b, node("c", "10.0.0.3", "100.64.9.0/24")}, "a,b", "100.64.3.0/24"},
		{"CIDR handed over: not pruned", []inventory.Node{a, b, c}, []inventory.Node{a, node("b", "10.0.0.2", "100.64.3.0/24")}, "a,b", "100.64.2.0/24"},
		{"SSH access only: no route moves", []inventory.Node{a, b}, []inventory.Node{{Name: "a", Address: "jump", InternalIPs: a.InternalIPs, PodCIDRs: a.PodCIDRs}, b}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch := Diff(tc.old, tc.new)
			if got := strings.Join(ch.Affected, ","); got != tc.affected {
				t.Errorf("affected = %q, want %q", got, tc.affected)
			}
			var gone []string
			for _, p := range ch.Gone {
				gone = append(gone, p.String())
			}
			if got := strings.Join(gone, ","); got != tc.gon {
				t.Errorf("gone = %q, want %q", got, tc.gon)
			}
			if ch.Empty() != (tc.affected == "") {
				t.Errorf("Empty() = %v", ch.Empty())
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	var got []time.Duration
	for f := 1; f <= 11; f++ {
		got = append(got, backoff(f))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
}
