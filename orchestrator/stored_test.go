package orchestrator

import (
	"testing"

	"github.com/routepush/routepush/route"
)

// A route found on a node comes back from storage as it went in, whatever
// it carries; the common ones are kept as text only.
func TestStoredRouteRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		text    string
		fam     route.Family
		compact bool
	}{
		{"100.64.1.0/24 via 198.18.0.11 dev eth0 proto boot scope global metric 1\n", route.IPv4, true},
		{"100.64.2.0/24 via 198.18.0.12 dev eth0 proto 114 scope global\n", route.IPv4, true},
		{"blackhole 100.64.3.0/24 proto static scope global\n", route.IPv4, true},
		{"100.64.4.0/24 proto static scope global mtu 1400 advmss 1360\n\tnexthop via 198.18.0.1 dev eth0 weight 1\n\tnexthop via 198.18.0.2 dev eth0 weight 2\n", route.IPv4, true},
		{"2001:db8:1::/64 via 2001:db8::11 dev eth0 proto 114 scope global metric 1024 pref medium\n", route.IPv6, true},
		{"100.64.5.0/24 via 198.18.0.15 dev eth0 proto boot scope global linkdown\n", route.IPv4, false}, // linkdown is no input: kept whole
	} {
		rs, err := route.ParseText([]byte(c.text), c.fam)
		if err != nil || len(rs) != 1 {
			t.Fatalf("%q: %v", c.text, err)
		}
		s := storeRoute(&rs[0])
		back := s.route()
		if back.Spec() != rs[0].Spec() || back.String() != rs[0].String() || back.Protocol != rs[0].Protocol || back.Dst != rs[0].Dst {
			t.Errorf("%q came back as %q (spec %q)", rs[0], back, back.Spec())
		}
		if (s.full == nil) != c.compact {
			t.Errorf("%q: stored as text only = %v, want %v", rs[0], s.full == nil, c.compact)
		}
	}
}
