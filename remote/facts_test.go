package remote

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/routepush/routepush/route"
)

func TestPrefixFacts(t *testing.T) {
	t.Parallel()
	nft := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "hook": "postrouting", "policy": "accept"}}]}
`
	f := prefixFacts([]byte(nft), false)
	if len(f.Unread) != 0 || len(f.Forward) != 2 || !f.Forward[0].Drop || f.Forward[0].Family != route.IPv4 || f.Forward[1].Family != route.IPv6 || f.Forward[0].Table != "filter" {
		t.Errorf("nft: %+v", f)
	}

	// No nft: iptables' policy.
	f = prefixFacts([]byte("sh: 1: nft: not found\n-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n"), false)
	if len(f.Unread) != 0 || len(f.Forward) != 1 || !f.Forward[0].Drop || f.Forward[0].Tool != "iptables" {
		t.Errorf("iptables: %+v", f)
	}

	// Nothing can read it (sudo allows ip alone): said, with the node's
	// words escaped.
	f = prefixFacts([]byte("sudo: a password is required\x1b[2J\nsudo: a password is required\n"), false)
	if len(f.Forward) != 0 || len(f.Unread) != 1 || !strings.Contains(f.Unread[0], "a password is required") || strings.Contains(f.Unread[0], "\x1b") {
		t.Errorf("none: %+v", f)
	}

	// A script's prefix: settings and addresses first.
	script := `[{"family":"inet","interface":"all","forwarding":true,"rp_filter":"off"}]
` + netconfEnd + `
Error: something
` + addressesEnd + "\n" + nft
	f = prefixFacts([]byte(script), true)
	if len(f.Netconf) != 1 || len(f.Forward) != 2 || len(f.Unread) != 1 || !strings.HasPrefix(f.Unread[0], "addresses: Error: something") {
		t.Errorf("script: %+v", f)
	}
}

// The prefix is fixed: sudo -n with become, and nothing of the node's;
// its marker is found only at a line's start.
func TestForwardPrefixIsFixed(t *testing.T) {
	t.Parallel()
	if got := (&Client{}).forwardPrefix(); got != "nft -j list chains 2>&1 </dev/null || iptables -S FORWARD 2>&1 </dev/null; echo '"+factsEnd+"'; " {
		t.Errorf("without become: %q", got)
	}
	become := (&Client{sudo: true, ipCmd: "/usr/local/sbin/ip"}).scriptPrefix()
	for _, want := range []string{"sudo -n nft -j list chains", "sudo -n iptables -S FORWARD", "sudo -n /usr/local/sbin/ip -json netconf show", "sudo -n /usr/local/sbin/ip -json address show"} {
		if !strings.Contains(become, want) {
			t.Errorf("with become lacks %q:\n%s", want, become)
		}
	}
	if _, _, ok := cutPrefix([]byte(`{"x": 1} ` + factsEnd + "\n[]\n")); ok {
		t.Errorf("a marker inside a line was taken for the end")
	}
	if p, rest, ok := cutPrefix([]byte("x\n" + factsEnd + "\n[]\n")); !ok || string(p) != "x\n" || string(rest) != "[]\n" {
		t.Errorf("cutPrefix: %q %q %v", p, rest, ok)
	}
}

func TestParseProbes(t *testing.T) {
	t.Parallel()
	a, b, c := netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("100.64.2.1"), netip.MustParseAddr("2001:db8::1")
	out := `PING 100.64.1.1 (100.64.1.1) from 100.64.0.1 : 56(84) bytes of data.

--- 100.64.1.1 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 402ms
rtt min/avg/max/mdev = 0.031/0.040/0.050/0.008 ms
PING 100.64.2.1 (100.64.2.1) from 100.64.0.1 : 56(84) bytes of data.

--- 100.64.2.1 ping statistics ---
3 packets transmitted, 0 received, 100% packet loss, time 2031ms

ping: bind icmp socket: Cannot assign requested address` + "\x1b[2J\n--- routepush: probes done\n"
	res, err := parseProbes([]byte(out), []netip.Addr{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Sent != 3 || res[0].Received != 3 || res[0].Err != "" || res[1].Received != 0 || res[1].Sent != 3 {
		t.Errorf("%+v", res)
	}
	if !strings.Contains(res[2].Err, "Cannot assign requested address") || strings.Contains(res[2].Err, "\x1b") {
		t.Errorf("no statistics: %q", res[2].Err)
	}
	if _, err := parseProbes([]byte(out[:100]), []netip.Addr{a}); err == nil {
		t.Errorf("cut short: no error")
	}
}

// probeScript goes between single quotes: it must hold none.
func TestProbeScriptQuotes(t *testing.T) {
	t.Parallel()
	if strings.Contains(probeScript, "'") {
		t.Errorf("probeScript holds a single quote:\n%s", probeScript)
	}
}
