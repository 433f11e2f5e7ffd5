package route

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseNetconfJSON(t *testing.T) {
	// As iproute2 6.1 prints it, both families (`ip -json netconf show`).
	out := `[{"family":"inet","interface":"eth0","forwarding":true,"rp_filter":"strict","mc_forwarding":false,"proxy_neigh":false,"ignore_routes_with_linkdown":false},` +
		`{"family":"inet","interface":"all","forwarding":true,"rp_filter":"loose"},` +
		`{"family":"inet","interface":"default","forwarding":false,"rp_filter":"off"},` +
		`{"family":"inet6","interface":"all","forwarding":false,"mc_forwarding":false}]`
	got, err := ParseNetconfJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Netconf{
		{Family: IPv4, Interface: "eth0", Forwarding: true, RPFilter: RPStrict},
		{Family: IPv4, Interface: "all", Forwarding: true, RPFilter: RPLoose},
		{Family: IPv4, Interface: "default", Forwarding: false, RPFilter: RPOff},
		{Family: IPv6, Interface: "all", Forwarding: false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{
		`[{"family":"inet","interface":"eth0","rp_filter":"strict"}]`,                   // no forwarding: not guessed
		`[{"family":"inet","interface":"eth0","forwarding":true,"rp_filter":"sloppy"}]`, // unknown rp_filter
		`{"family":"inet"}`,
	} {
		if _, err := ParseNetconfJSON([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestParseAddressesJSON(t *testing.T) {
	out := `[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet","local":"100.64.3.1","prefixlen":32}]},` +
		`{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet6","local":"2001:db8::3","prefixlen":64}]}]`
	got, err := ParseAddressesJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Address{
		{"lo", netip.MustParsePrefix("127.0.0.1/8")},
		{"lo", netip.MustParsePrefix("100.64.3.1/32")},
		{"eth0", netip.MustParsePrefix("2001:db8::3/64")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("address %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := ParseAddressesJSON([]byte(`[{"ifname":"x","addr_info":[{"family":"inet","local":"1.2.3.400","prefixlen":24}]}]`)); err == nil || !strings.Contains(err.Error(), "address") {
		t.Errorf("a bad address: %v", err)
	}
}
