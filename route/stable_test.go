package route

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// The expires6-*.{json,txt} fixtures are real `ip -d -N -json -6 route
// show` and `ip -d -6 route show` output of one namespace (iproute2 6.1,
// kernel 6.18): a routes with two lifetimes, one lapsed ("expires":-9) and
// an RA default route; b the same table three seconds later; gateway,
// metric and added each one real change to it.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The resilient4-* fixtures are `ip -d -N -json -4 route show` and `ip -d
// -4 route show` of a namespace with a route over an unbalanced resilient
// nexthop group (and routes over plain nexthop objects): a, b 2.5 seconds
// later, and weights after another weight for one member of the group.
func TestStableSectionIgnoresUnbalancedTime(t *testing.T) {
	t.Parallel()
	for _, ext := range []string{"json", "txt"} {
		text := ext == "txt"
		a, b := readFixture(t, "resilient4-a."+ext), readFixture(t, "resilient4-b."+ext)
		if bytes.Equal(a, b) {
			t.Fatalf("%s: fixtures a and b are the same; they must differ in unbalanced_time", ext)
		}
		sa := StableSection(a, text)
		if !bytes.Equal(sa, StableSection(b, text)) {
			t.Errorf("%s: StableSection differs 2.5 seconds apart:\n%s\n%s", ext, sa, StableSection(b, text))
		}
		if !bytes.Contains(sa, []byte("unbalanced_timer")) || bytes.Contains(sa, []byte("unbalanced_time ")) || bytes.Contains(sa, []byte(`unbalanced_time"`)) {
			t.Errorf("%s: StableSection kept unbalanced_time or lost unbalanced_timer:\n%s", ext, sa)
		}
		if !text && !json.Valid(sa) {
			t.Errorf("json: StableSection is no longer JSON:\n%s", sa)
		}
		if bytes.Equal(sa, StableSection(readFixture(t, "resilient4-weights."+ext), text)) {
			t.Errorf("%s: another weight gives the same StableSection", ext)
		}
	}
}

func TestStableSectionIgnoresExpires(t *testing.T) {
	t.Parallel()
	for _, ext := range []string{"json", "txt"} {
		text := ext == "txt"
		a, b := readFixture(t, "expires6-a."+ext), readFixture(t, "expires6-b."+ext)
		if bytes.Equal(a, b) {
			t.Fatalf("%s: fixtures a and b are the same; they must differ in expires", ext)
		}
		sa, sb := StableSection(a, text), StableSection(b, text)
		if !bytes.Equal(sa, sb) {
			t.Errorf("%s: StableSection differs a few seconds apart:\n%s\n%s", ext, sa, sb)
		}
		if bytes.Contains(sa, []byte("expires")) {
			t.Errorf("%s: StableSection kept expires:\n%s", ext, sa)
		}
		if !text && !json.Valid(sa) {
			t.Errorf("json: StableSection is no longer JSON:\n%s", sa)
		}
		// Only the lifetimes went: the routes read the same.
		var ra, rs []Route
		var err error
		if text {
			ra, err = ParseText(a, IPv6)
			if err == nil {
				rs, err = ParseText(sa, IPv6)
			}
		} else {
			ra, err = ParseJSON(a, IPv6)
			if err == nil {
				rs, err = ParseJSON(sa, IPv6)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", ext, err)
		}
		if len(ra) != 7 || len(rs) != len(ra) {
			t.Fatalf("%s: %d routes, %d after StableSection, want 7", ext, len(ra), len(rs))
		}
		for i := range ra {
			if ra[i].String() != rs[i].String() {
				t.Errorf("%s: route %d: %s became %s", ext, i, ra[i], rs[i])
			}
		}
		// a must not have been written to.
		if !bytes.Equal(a, readFixture(t, "expires6-a."+ext)) {
			t.Errorf("%s: StableSection changed its input", ext)
		}
	}
}

func TestStableSectionSeesRealChanges(t *testing.T) {
	t.Parallel()
	for _, ext := range []string{"json", "txt"} {
		text := ext == "txt"
		base := StableSection(readFixture(t, "expires6-a."+ext), text)
		for _, change := range []string{"gateway", "metric", "added"} {
			if got := StableSection(readFixture(t, "expires6-"+change+"."+ext), text); bytes.Equal(got, base) {
				t.Errorf("%s: another %s gives the same StableSection", ext, change)
			}
		}
	}
}

func TestStableSectionWithoutExpiresIsNoCopy(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"table4.json", "table4.txt", "nhid4.json", "nhid4.txt", "nhid6.json", "nhid6.txt"} {
		in := readFixture(t, name)
		out := StableSection(in, bytes.HasSuffix([]byte(name), []byte(".txt")))
		if len(out) != len(in) || &out[0] != &in[0] {
			t.Errorf("%s: StableSection returned a copy or other bytes", name)
		}
	}
	in := ipJSON(5000)
	if out := StableSection(in, false); len(out) != len(in) || &out[0] != &in[0] {
		t.Error("5,000 routes: StableSection returned a copy or other bytes")
	}
	if out := StableSection(nil, false); out != nil {
		t.Errorf("StableSection(nil) = %q", out)
	}
}

func TestStableSectionEdges(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		text     bool
		in, want string
	}{
		// The member is cut with its comma wherever it stands.
		{false, `[{"dst":"a","expires":5,"pref":"high"}]`, `[{"dst":"a","pref":"high"}]`},
		{false, `[{"dst":"a","expires":-12}]`, `[{"dst":"a"}]`},
		{false, `[{"expires":5,"dst":"a"},{"expires":6}]`, `[{"dst":"a"},{}]`},
		{false, "[ {\n \"dst\": \"a\",\n \"expires\" : 5\n} ]", "[ {\n \"dst\": \"a\"\n} ]"},
		{false, `[{"nh_info":{"resilient_args":{"buckets":8,"unbalanced_time":34.79}}}]`, `[{"nh_info":{"resilient_args":{"buckets":8}}}]`},
		{false, `[{"unbalanced_time":1e+06,"expires":1}]`, `[{}]`},
		// Not the fields, or not whole numbers: left alone.
		{false, `[{"dev":"expires","table":"\"expires\":5"}]`, `[{"dev":"expires","table":"\"expires\":5"}]`},
		{false, `[{"x\\\"expires":5}]`, `[{"x\\\"expires":5}]`},
		{false, `[{"ab\"expires":1,"dst":"x"}]`, `[{"ab\"expires":1,"dst":"x"}]`},
		{false, `[{"expires":1.5.2}]`, `[{"expires":1.5.2}]`},
		{false, `[{"expires":-}]`, `[{"expires":-}]`},
		{false, `[{"dev":"a,\"expires\":5","expires_x":5,"unbalanced_timer":600}]`, `[{"dev":"a,\"expires\":5","expires_x":5,"unbalanced_timer":600}]`},
		{false, `[{"expires":"5"}]`, `[{"expires":"5"}]`},
		{false, `[{"dst":"a","expires":`, `[{"dst":"a","expires":`},
		{true, "default via fe80::1 dev eth0 proto ra metric 1024 expires 1790sec pref medium\n", "default via fe80::1 dev eth0 proto ra metric 1024 pref medium\n"},
		{true, "2001:db8::/64 dev eth0 metric 1024 expires -3sec\n2001:db8:1::/64 expires 0sec\n", "2001:db8::/64 dev eth0 metric 1024\n2001:db8:1::/64\n"},
		{true, "a expires 5secs\nb expires sec\nc expires x5sec\nd dev expires\n", "a expires 5secs\nb expires sec\nc expires x5sec\nd dev expires\n"},
		{true, "\tnh_info id 20 group 5/7,4 type resilient buckets 8 idle_timer 300 unbalanced_timer 600 unbalanced_time 34.8 scope global proto unspec \n",
			"\tnh_info id 20 group 5/7,4 type resilient buckets 8 idle_timer 300 unbalanced_timer 600 scope global proto unspec \n"},
		{true, "x unbalanced_time 1e+06\ny unbalanced_time 3sec\n", "x\ny unbalanced_time 3sec\n"},
	} {
		if got := StableSection([]byte(tt.in), tt.text); string(got) != tt.want {
			t.Errorf("StableSection(%q, %v) = %q, want %q", tt.in, tt.text, got, tt.want)
		}
	}
}

// FuzzStableSection checks StableSection never panics, only ever removes
// bytes and leaves a section without the fields alone, and that from valid
// JSON it removes exactly those fields.
func FuzzStableSection(f *testing.F) {
	for _, name := range []string{"expires6-a.json", "expires6-a.txt", "resilient4-a.json", "resilient4-a.txt", "nhid6.json", "table4.txt"} {
		b, _ := os.ReadFile("testdata/" + name)
		f.Add(b, bytes.HasSuffix([]byte(name), []byte(".txt")))
	}
	f.Add([]byte(`[{"expires":5,"dst":"a"}]`), false)
	f.Fuzz(func(t *testing.T, in []byte, text bool) {
		orig := bytes.Clone(in)
		out := StableSection(in, text)
		if !bytes.Equal(in, orig) {
			t.Fatal("input changed")
		}
		if len(out) > len(in) {
			t.Fatalf("%q grew to %q", in, out)
		}
		if !bytes.Contains(in, []byte("expires")) && !bytes.Contains(in, []byte("unbalanced_time")) && !bytes.Equal(out, in) {
			t.Fatalf("%q without the fields became %q", in, out)
		}
		if text || !json.Valid(in) || duplicateKeys(in) {
			return // a map cannot tell which of two equal keys went
		}
		// Read back, it is the input without the two fields' numbers.
		want, got := decodeJSON(t, in), decodeJSON(t, out)
		dropTicking(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q became %q", in, out)
		}
	})
}

func decodeJSON(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return v
}

// dropTicking removes expires and unbalanced_time members with a number
// from every object in v.
func dropTicking(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if _, num := e.(json.Number); num && (k == "expires" || k == "unbalanced_time") {
				delete(v, k)
				continue
			}
			dropTicking(e)
		}
	case []any:
		for _, e := range v {
			dropTicking(e)
		}
	}
}

// duplicateKeys reports whether an object in valid JSON b has a key twice.
func duplicateKeys(b []byte) bool {
	d := json.NewDecoder(bytes.NewReader(b))
	type level struct {
		keys  map[string]bool // nil in an array
		isKey bool            // the next token in this object is a key
	}
	var stack []level
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			top := &stack[n-1]
			if k, ok := tok.(string); ok && top.isKey {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.isKey = false
				continue
			}
			if tok != json.Delim('}') {
				top.isKey = true // after this value
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, level{keys: map[string]bool{}, isKey: true})
		case json.Delim('['):
			stack = append(stack, level{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
