package proxyjump

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	hops, err := Parse("admin@bastion:2222, ssh://[2001:db8::1]:22,10.0.0.1")
	want := []Hop{{User: "admin", Host: "bastion", Port: 2222}, {Host: "2001:db8::1", Port: 22}, {Host: "10.0.0.1"}}
	if err != nil || !reflect.DeepEqual(hops, want) {
		t.Errorf("Parse = %v, %v; want %v", hops, err, want)
	}
	for _, bad := range []string{"$(touch /tmp/pwned)", "a;b", "`id`@host", "host:99999", "[2001:db8::1",
		// netip takes any zone: only an interface name is one here.
		"[fe80::1%$(touch /tmp/pwned)]", "fe80::1%eth0;reboot", "[fe80::1%\x1b[2J]:22", "[fe80::1% -oProxyCommand=id]"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for _, none := range []string{"", " ", "none", "NONE"} {
		if hops, err := Parse(none); err != nil || hops != nil {
			t.Errorf("Parse(%q) = %v, %v; want no hops", none, hops, err)
		}
	}
}

func TestValidAddress(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"198.18.0.10": true, "2001:db8::1": true, "fe80::1%eth0": true, "fe80::1%enp0s31f6": true, "node-1.example": true,
		"fe80::1%$(reboot)": false, "fe80::1%eth0;id": false, "fe80::1%": false, "fe80::1%-oX": false,
		"fe80::1%\x1b[2J": false, "fe80::1%a-very-long-zone-name": false, "-oProxyCommand=id": false,
	} {
		if got := ValidAddress(s); got != want {
			t.Errorf("ValidAddress(%q) = %v, want %v", s, got, want)
		}
	}
	if hops, err := Parse("[fe80::1%eth0]:22"); err != nil || len(hops) != 1 || hops[0].Host != "fe80::1%eth0" {
		t.Errorf("Parse(a link-local jump host) = %v, %v", hops, err)
	}
}

func TestHopString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		hop  Hop
		want string
	}{
		{Hop{Host: "bastion"}, "bastion"},
		{Hop{User: "admin", Host: "bastion", Port: 2222}, "admin@bastion:2222"},
		{Hop{User: "root", Host: "2001:db8::1", Port: 22}, "root@[2001:db8::1]:22"},
	} {
		if got := tt.hop.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.hop, got, tt.want)
		}
		if back, err := Parse(tt.want); err != nil || len(back) != 1 || back[0] != tt.hop {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.want, back, err, tt.hop)
		}
	}
}
