package orchestrator

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/routepush/routepush/route"
)

// node0Table is node-0's main table in a lab of labNodes: its link's
// connected route, through which every next hop is reached.
func node0Table(t *testing.T) []route.Route {
	t.Helper()
	rs, err := route.ParseJSON([]byte(`[{"type":"unicast","dst":"198.18.0.0/16","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"198.18.0.10","flags":[]}]`), route.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestPreflightNamesEachProblemWithItsFix(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(3), DefaultProtocol)
	h := p.Host(0)
	good := route.Facts{
		Netconf: []route.Netconf{
			{Family: route.IPv4, Interface: "all", Forwarding: true, RPFilter: route.RPOff},
			{Family: route.IPv4, Interface: "eth0", Forwarding: true, RPFilter: route.RPLoose},
		},
		Addresses: []route.Address{{Interface: "lo", Prefix: netip.MustParsePrefix("100.64.0.1/32")}},
	}
	if f := Preflight(h, node0Table(t), &good); len(f) != 0 {
		t.Errorf("a node that forwards: %+v", f)
	}
	for _, tc := range []struct {
		name  string
		facts func(f *route.Facts)
		kind  PreflightKind
		fix   string
	}{
		{"forwarding off", func(f *route.Facts) { f.Netconf[0].Forwarding = false }, ForwardingOff, "sysctl -w net.ipv4.ip_forward=1"},
		{"forwarding off on eth0", func(f *route.Facts) { f.Netconf[1].Forwarding = false }, ForwardingOff, "sysctl -w net.ipv4.conf.eth0.forwarding=1"},
		{"strict on eth0", func(f *route.Facts) { f.Netconf[1].RPFilter = route.RPStrict }, StrictRPFilter, "sysctl -w net.ipv4.conf.eth0.rp_filter=2"},
		{"strict on all, eth0 off", func(f *route.Facts) { f.Netconf[0].RPFilter, f.Netconf[1].RPFilter = route.RPStrict, route.RPOff }, StrictRPFilter, "sysctl -w net.ipv4.conf.eth0.rp_filter=2"},
		{"no pod address", func(f *route.Facts) { f.Addresses = nil }, NoPodAddress, "100.64.0.0/24"},
		{"iptables FORWARD DROP", func(f *route.Facts) {
			f.Forward = []route.ForwardChain{{Family: route.IPv4, Tool: "iptables", Table: "filter", Chain: "FORWARD", Drop: true}}
		}, ForwardDrop, "iptables -I FORWARD -s 100.64.0.0/24 -j ACCEPT && iptables -I FORWARD -d 100.64.0.0/24 -j ACCEPT"},
		{"nft inet forward drop", func(f *route.Facts) {
			f.Forward = []route.ForwardChain{{Family: route.IPv4, Tool: "nft", TableFamily: "inet", Table: "filter", Chain: "forward", Drop: true},
				{Family: route.IPv6, Tool: "nft", TableFamily: "inet", Table: "filter", Chain: "forward", Drop: true}}
		}, ForwardDrop, "nft insert rule inet filter forward ip saddr 100.64.0.0/24 accept"},
		{"FORWARD unread", func(f *route.Facts) { f.Unread = []string{"FORWARD policy: nft: not found"} }, NotRead, ""},
	} {
		f := route.Facts{Netconf: append([]route.Netconf(nil), good.Netconf...), Addresses: append([]route.Address(nil), good.Addresses...)}
		tc.facts(&f)
		got := Preflight(h, node0Table(t), &f)
		if len(got) != 1 || got[0].Kind != tc.kind || !strings.Contains(got[0].Fix, tc.fix) {
			t.Errorf("%s: %+v, want one %s whose fix says %q", tc.name, got, tc.kind, tc.fix)
		}
	}
}

// An interface name is the node's: a fix a user may paste never carries
// one that means something to a shell.
func TestPreflightFixNeverPastesAStrangeName(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(3), DefaultProtocol)
	rs := node0Table(t)
	rs[0].Dev = "e$(reboot)"
	f := &route.Facts{Netconf: []route.Netconf{
		{Family: route.IPv4, Interface: "all", Forwarding: true},
		{Family: route.IPv4, Interface: "e$(reboot)", Forwarding: true, RPFilter: route.RPStrict},
	}, Addresses: []route.Address{{Interface: "lo", Prefix: netip.MustParsePrefix("100.64.0.1/32")}}}
	got := Preflight(p.Host(0), rs, f)
	if len(got) != 1 || strings.Contains(got[0].Fix, "reboot") || !strings.Contains(got[0].Fix, "<that interface>") {
		t.Errorf("%+v", got)
	}
}

// A chain accepting by default, and a drop policy in a family the node
// gets no routes in, are no findings.
func TestPreflightForwardOnlyDropsOfItsFamilies(t *testing.T) {
	t.Parallel()
	p := NewPlan(labNodes(3), DefaultProtocol)
	f := &route.Facts{
		Netconf:   []route.Netconf{{Family: route.IPv4, Interface: "all", Forwarding: true}},
		Addresses: []route.Address{{Interface: "lo", Prefix: netip.MustParsePrefix("100.64.0.1/32")}},
		Forward: []route.ForwardChain{
			{Family: route.IPv4, Tool: "nft", TableFamily: "ip", Table: "filter", Chain: "FORWARD"},
			{Family: route.IPv6, Tool: "nft", TableFamily: "ip6", Table: "filter", Chain: "FORWARD", Drop: true},
		},
	}
	if got := Preflight(p.Host(0), node0Table(t), f); len(got) != 0 {
		t.Errorf("%+v", got)
	}
	// A table the node named strangely is never pasted into the fix.
	f.Forward = []route.ForwardChain{{Family: route.IPv4, Tool: "nft", TableFamily: "ip", Table: "f;reboot", Chain: "FORWARD", Drop: true}}
	got := Preflight(p.Host(0), node0Table(t), f)
	if len(got) != 1 || strings.Contains(got[0].Fix, "reboot") || !strings.Contains(got[0].Why, `"f;reboot"`) {
		t.Errorf("%+v", got)
	}
}
