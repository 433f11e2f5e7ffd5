package route

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseJSONAndTextAgree(t *testing.T) {
	t.Parallel()
	js, err := os.ReadFile("testdata/table4.json")
	if err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile("testdata/table4.txt")
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := ParseJSON(js, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	fromText, err := ParseText(txt, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromJSON) != 8 {
		t.Fatalf("json: got %d routes, want 8", len(fromJSON))
	}
	for i := range fromJSON {
		// Scope is numeric with ip -N and named in text; the rest must agree.
		a, b := fromJSON[i], fromText[i]
		a.Scope, b.Scope = "", ""
		if !reflect.DeepEqual(a, b) {
			t.Errorf("route %d differs:\njson: %#v\ntext: %#v", i, a, b)
		}
	}
}

func TestParseJSONFields(t *testing.T) {
	t.Parallel()
	js, _ := os.ReadFile("testdata/table4.json")
	routes, err := ParseJSON(js, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		i    int
		want string // String()
		spec string // Spec()
	}{
		{0, "100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114", "100.64.1.0/24 via 198.18.0.11 dev eth0 proto 114 scope 0"},
		{1, "100.64.1.0/24 via 198.18.0.12 dev eth0 proto boot metric 1", "100.64.1.0/24 via 198.18.0.12 dev eth0 proto boot scope 0 metric 1"},
		{2, "blackhole 100.64.3.0/24 proto boot", "blackhole 100.64.3.0/24 proto boot scope 0"},
		{3, "100.64.4.0/24 dev eth0 proto boot src 198.18.0.10 mtu 1400", "100.64.4.0/24 dev eth0 proto boot scope 253 src 198.18.0.10 mtu 1400"},
		{4, "100.64.5.5/32 via 198.18.0.12 dev eth0 proto boot onlink", "100.64.5.5/32 via 198.18.0.12 dev eth0 proto boot scope 0 onlink"},
		{5, "100.64.6.0/24 proto boot nexthop via 198.18.0.12 dev eth0 weight 1 nexthop via 198.18.0.13 dev eth0 weight 2", "100.64.6.0/24 proto boot scope 0 nexthop via 198.18.0.12 dev eth0 weight 1 nexthop via 198.18.0.13 dev eth0 weight 2"},
		{7, "0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp metric 100", "0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp scope 0 metric 100"},
	}
	for _, tt := range tests {
		if got := routes[tt.i].String(); got != tt.want {
			t.Errorf("route %d String() = %q, want %q", tt.i, got, tt.want)
		}
		if got := routes[tt.i].Spec(); got != tt.spec {
			t.Errorf("route %d Spec() = %q, want %q", tt.i, got, tt.spec)
		}
	}
	if k := routes[1].Key(); k != (Key{Dst: netip.MustParsePrefix("100.64.1.0/24"), Metric: 1}) {
		t.Errorf("Key() = %v", k)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, text string }{
		{"bad dst", "unicast 100.64.1/24 via 198.18.0.1\n"},
		{"bad gateway", "100.64.1.0/24 via 198.18.0\n"},
		{"dangling key", "100.64.1.0/24 via\n"},
		{"unknown attribute", "100.64.1.0/24 frobnicate 3\n"},
		{"orphan nexthop", "\tnexthop via 198.18.0.1\n"},
		{"unknown protocol name", "100.64.1.0/24 via 198.18.0.1 proto routepush\n"},
	} {
		if _, err := ParseText([]byte(tt.text), IPv4); err == nil {
			t.Errorf("%s: ParseText(%q) succeeded, want error", tt.name, tt.text)
		}
	}
	if _, err := ParseJSON([]byte(`[{"dst":"nonsense"}]`), IPv4); err == nil {
		t.Error("ParseJSON with a bad dst succeeded")
	}
	if _, err := ParseJSON([]byte(`{`), IPv4); err == nil {
		t.Error("ParseJSON of truncated input succeeded")
	}
}

func TestParseIPv6(t *testing.T) {
	t.Parallel()
	txt := "unicast 2001:db8:1::/64 via 2001:db8::11 dev eth0 proto 114 scope global metric 1024 pref medium\nunicast default via fe80::1 dev eth0 proto ra metric 1024 expires 1790sec pref medium\n"
	routes, err := ParseText([]byte(txt), IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if got := routes[0].Spec(); got != "2001:db8:1::/64 via 2001:db8::11 dev eth0 proto 114 scope global metric 1024 pref medium" {
		t.Errorf("Spec() = %q", got)
	}
	if routes[1].Dst != netip.MustParsePrefix("::/0") || routes[1].Unrestorable != "expires" {
		t.Errorf("default route = %#v", routes[1])
	}
}

// The nhid{4,6}.{json,txt} fixtures are real `ip -d -N -json route show`
// and `ip -d route show` output (iproute2 6.1, kernel 6.18) of a namespace
// with routes over nexthop objects: one over a single nexthop and one over
// a group, for each family, next to ordinary routes; resilient4-a adds a
// route over a resilient group (see stable_test.go).
func TestParseNHID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		fam    Family
		name   string
		routes int
		want   map[int]string // String() of the routes with an nhid
	}{
		{IPv4, "nhid4", 3, map[int]string{
			0: "100.64.1.0/24 nhid 5 via 198.18.0.11 dev va proto boot",
			1: "100.64.2.0/24 nhid 8 proto boot metric 7 nexthop via 198.18.0.11 dev va weight 1 nexthop via 198.18.0.12 dev va weight 1",
		}},
		{IPv4, "resilient4-a", 4, map[int]string{
			0: "100.64.1.0/24 nhid 5 via 198.18.0.11 dev va proto boot",
			1: "100.64.2.0/24 nhid 8 proto boot metric 7 nexthop via 198.18.0.11 dev va weight 1 nexthop via 198.18.0.12 dev va weight 1",
			2: "100.64.4.0/24 nhid 20 proto boot nexthop via 198.18.0.11 dev va weight 1 nexthop via 198.18.0.12 dev va weight 4",
		}},
		{IPv6, "nhid6", 5, map[int]string{
			1: "2001:db8:1::/64 nhid 6 via 2001:db8::11 dev va proto boot metric 1024 pref medium",
			2: "2001:db8:2::/64 nhid 10 proto boot metric 1024 pref medium nexthop via 2001:db8::11 dev va weight 2 nexthop via 2001:db8::12 dev va weight 1",
		}},
	} {
		fromJSON, err := ParseJSON(readFixture(t, tt.name+".json"), tt.fam)
		if err != nil {
			t.Fatalf("%s.json: %v", tt.name, err)
		}
		fromText, err := ParseText(readFixture(t, tt.name+".txt"), tt.fam)
		if err != nil {
			t.Fatalf("%s.txt: %v", tt.name, err)
		}
		if len(fromJSON) != tt.routes || len(fromText) != tt.routes {
			t.Fatalf("%s: %d routes from JSON, %d from text, want %d", tt.name, len(fromJSON), len(fromText), tt.routes)
		}
		for i := range fromJSON {
			a, b := fromJSON[i], fromText[i]
			a.Scope, b.Scope = "", ""
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s route %d differs:\njson: %#v\ntext: %#v", tt.name, i, a, b)
			}
			r := fromJSON[i]
			want, ok := tt.want[i]
			if !ok {
				if r.NHID != 0 || r.Unrestorable != "" {
					t.Errorf("%s route %d: NHID %d, Unrestorable %q, want neither", tt.name, i, r.NHID, r.Unrestorable)
				}
				continue
			}
			if r.Unrestorable != "nhid" || r.NHID == 0 {
				t.Errorf("%s route %d: NHID %d, Unrestorable %q, want nhid", tt.name, i, r.NHID, r.Unrestorable)
			}
			if got := r.String(); got != want {
				t.Errorf("%s route %d String() = %q, want %q", tt.name, i, got, want)
			}
			// The spec names the object too and reads back with it.
			back, err := ParseSpec(fromText[i].Spec(), tt.fam)
			if err != nil || back.NHID != r.NHID || back.Unrestorable != "nhid" || back.Spec() != fromText[i].Spec() {
				t.Errorf("%s route %d: spec %q reads back as %#v, %v", tt.name, i, fromText[i].Spec(), back, err)
			}
		}
	}
	// nhid wins over what comes after it.
	routes, err := ParseText([]byte("2001:db8::/64 nhid 3 via 2001:db8::1 dev eth0 expires 30sec\n"), IPv6)
	if err != nil || routes[0].Unrestorable != "nhid" || routes[0].NHID != 3 {
		t.Errorf("nhid with expires = %#v, %v", routes, err)
	}
	routes, err = ParseJSON([]byte(`[{"dst":"2001:db8::/64","nhid":3,"expires":30}]`), IPv6)
	if err != nil || routes[0].Unrestorable != "nhid" || routes[0].NHID != 3 {
		t.Errorf("JSON nhid with expires = %#v, %v", routes, err)
	}
	if got := routes[0].Spec(); got != "2001:db8::/64 nhid 3 proto boot metric 0" {
		t.Errorf("Spec() = %q", got)
	}
}

func TestParseNHIDErrors(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"100.64.1.0/24 nhid 0 via 198.18.0.1\n",
		"100.64.1.0/24 nhid five via 198.18.0.1\n",
		"100.64.1.0/24 nhid 4294967296\n",
		"100.64.1.0/24 via 198.18.0.1 dev eth0\n\tnh_info id 5 via 198.18.0.1 dev eth0 scope link proto unspec\n",
	} {
		if _, err := ParseText([]byte(text), IPv4); err == nil {
			t.Errorf("ParseText(%q) succeeded, want error", text)
		}
	}
	for _, js := range []string{
		`[{"dst":"100.64.1.0/24","nhid":0}]`,
		`[{"dst":"100.64.1.0/24","nhid":"5"}]`,
		`[{"dst":"100.64.1.0/24","nhid":4294967296}]`,
		`[{"dst":"100.64.1.0/24","nhid":-1}]`,
	} {
		if _, err := ParseJSON([]byte(js), IPv4); err == nil {
			t.Errorf("ParseJSON(%s) succeeded, want error", js)
		}
	}
}

// FuzzParseText checks the text parser never panics and that whatever it
// accepts renders to a spec it parses again to the same route.
func FuzzParseText(f *testing.F) {
	seed, _ := os.ReadFile("testdata/table4.txt")
	f.Add(string(seed))
	f.Add("2001:db8::/64 via 2001:db8::1 dev eth0 proto 114 metric 1024 pref medium\n")
	f.Add("unicast 100.64.0.0/24 via inet6 fe80::1 dev eth0\n")
	f.Add("100.64.0.0/24 mtu lock 1400\n")
	for _, name := range []string{"nhid4.txt", "nhid6.txt", "expires6-a.txt", "resilient4-a.txt"} {
		seed, _ := os.ReadFile("testdata/" + name)
		f.Add(string(seed))
	}
	f.Fuzz(func(t *testing.T, in string) {
		routes, err := ParseText([]byte(in), IPv4)
		if err != nil {
			return
		}
		for _, r := range routes {
			assertOneSafeLine(t, in, r)
			if r.Unrestorable != "" {
				continue
			}
			again, err := ParseText([]byte(r.Spec()+"\n"), r.Family())
			if err != nil {
				t.Fatalf("spec %q of %q does not parse: %v", r.Spec(), in, err)
			}
			if len(again) != 1 || again[0].Spec() != r.Spec() {
				t.Fatalf("spec %q of %q parses to %v", r.Spec(), in, again)
			}
		}
	})
}

// assertOneSafeLine: whatever a node printed, an accepted route renders to
// one batch line of printable ASCII that ip -batch reads as words.
func assertOneSafeLine(t *testing.T, in string, r Route) {
	t.Helper()
	for _, s := range []string{r.Spec(), r.String()} {
		if strings.ContainsAny(s, "\n\r\"'#\\") || strings.IndexFunc(s, func(c rune) bool { return c < ' ' || c > '~' }) >= 0 {
			t.Fatalf("%q renders to %q", in, s)
		}
	}
}
