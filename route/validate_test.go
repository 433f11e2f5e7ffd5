package route

import (
	"strings"
	"testing"
)

func TestValidDev(t *testing.T) {
	for _, ok := range []string{"eth0", "enp0s31f6", "veth1234abcd", "br-1a2b3c4d5e6f", "eth0.100", "wg0@x", "a"} {
		if !ValidDev(ok) {
			t.Errorf("ValidDev(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "0123456789abcdef", "eth 0", "eth0\n", "a/b", "a:1", "x\x1b[2J", `a"b`, "a'b", "a#b", `a\b`, "caf\u00e9", "tab\t"} {
		if ValidDev(bad) {
			t.Errorf("ValidDev(%q) = true", bad)
		}
	}
}

// TestParseRefusesHostileFields: a field out of pattern refuses the
// table, naming the field, and the node's text in the error is escaped.
func TestParseRefusesHostileFields(t *testing.T) {
	for name, entry := range map[string]string{
		"dev newline":    `{"dst":"10.0.0.0/24","dev":"eth0\nroute del default"}`,
		"dev escape":     `{"dst":"10.0.0.0/24","dev":"\u001b[2J"}`,
		"dev long":       `{"dst":"10.0.0.0/24","dev":"abcdefghijklmnop"}`,
		"table":          `{"dst":"10.0.0.0/24","table":"main\nflush"}`,
		"scope":          `{"dst":"10.0.0.0/24","scope":"link;id"}`,
		"pref":           `{"dst":"10.0.0.0/24","pref":"high\u001b]0;t\u0007"}`,
		"type":           `{"dst":"10.0.0.0/24","type":"blackhole\nroute flush"}`,
		"flag":           `{"dst":"10.0.0.0/24","flags":["onlink\n"]}`,
		"metric name":    `{"dst":"10.0.0.0/24","metrics":[{"mtu\nroute flush table main":1400}]}`,
		"nexthop dev":    `{"dst":"10.0.0.0/24","nexthops":[{"gateway":"10.1.0.1","dev":"e\r"}]}`,
		"nexthop flag":   `{"dst":"10.0.0.0/24","nexthops":[{"gateway":"10.1.0.1","dev":"eth0","flags":["x y"]}]}`,
		"unknown metric": `{"dst":"10.0.0.0/24","metrics":[{"rtax_99":1}]}`,
	} {
		_, err := ParseJSON([]byte("["+entry+"]"), IPv4)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.ContainsAny(err.Error(), "\n\r\x1b\x07") {
			t.Errorf("%s: raw control byte in %q", name, err)
		}
		if !strings.Contains(err.Error(), "refused") && name != "dev long" {
			t.Logf("%s: %v", name, err)
		}
	}
	for name, text := range map[string]string{
		"dev quote":  "10.0.0.0/24 dev a\"b\n",
		"dev hash":   "10.0.0.0/24 dev eth0#x\n",
		"scope":      "10.0.0.0/24 dev eth0 scope $(id)\n",
		"pref":       "10.0.0.0/24 dev eth0 pref `id`\n",
		"metric val": "10.0.0.0/24 dev eth0 mtu 1400;x\n",
		"hop dev":    "10.0.0.0/24 proto 114\n\tnexthop via 10.1.0.1 dev e\x1b[2J weight 1\n",
		"table":      "10.0.0.0/24 dev eth0 table 'x'\n",
	} {
		if _, err := ParseText([]byte(text), IPv4); err == nil {
			t.Errorf("text %s: accepted", name)
		} else if strings.ContainsAny(err.Error(), "\r\x1b\x07") {
			t.Errorf("text %s: raw control byte in %q", name, err)
		}
	}
	// What real nodes print still parses.
	good := `[{"dst":"10.0.0.0/24","gateway":"10.1.0.1","dev":"eth0","protocol":"114","scope":"0","table":"254","pref":"medium","flags":["onlink","unresolved"],"metrics":[{"mtu":1400,"advmss":1360}]}]`
	if _, err := ParseJSON([]byte(good), IPv4); err != nil {
		t.Errorf("good route refused: %v", err)
	}
	if _, err := ParseText([]byte("10.0.0.0/24 via 10.1.0.1 dev eth0.100 proto 114 scope link mtu lock 1400 rto_min 200ms congctl cubic pref high\n"), IPv4); err != nil {
		t.Errorf("good text route refused: %v", err)
	}
}

// FuzzParseJSONFields checks that whatever ip's JSON holds, a route the
// parser accepts renders to one batch line of printable ASCII with no
// quote, '#' or backslash: nothing a node reports adds batch lines.
func FuzzParseJSONFields(f *testing.F) {
	f.Add(`[{"dst":"10.0.0.0/24","gateway":"10.1.0.1","dev":"eth0","protocol":"114","scope":"link","table":"100","pref":"high","flags":["onlink"],"metrics":[{"mtu":1400}]}]`)
	f.Add(`[{"dst":"10.0.0.0/24","dev":"eth0\nroute del default"}]`)
	f.Add(`[{"dst":"10.0.0.0/24","nexthops":[{"gateway":"10.1.0.1","dev":"e\u001b","weight":1}]}]`)
	f.Fuzz(func(t *testing.T, in string) {
		routes, err := ParseJSON([]byte(in), IPv4)
		if err != nil {
			return
		}
		for _, r := range routes {
			assertOneSafeLine(t, in, r)
		}
	})
}
