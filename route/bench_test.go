package route

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// ipJSON renders what `ip -d -N -json -4 route show` prints on a node of a
// converged n-node cluster: n-1 pod routes and the connected route.
func ipJSON(n int) []byte {
	var b strings.Builder
	b.WriteString(`[{"type":"1","dst":"198.18.0.0/16","dev":"eth0","protocol":"2","scope":"253","prefsrc":"198.18.0.10","flags":[]}`)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, `,{"type":"1","dst":"100.%d.%d.0/24","gateway":"198.18.%d.%d","dev":"eth0","protocol":"114","scope":"0","flags":[]}`,
			64+i>>8, i&0xff, i>>8, i&0xff)
	}
	b.WriteString("]\n")
	return []byte(b.String())
}

// The benchmarks' tables hold n distinct routes, as a real node's would.
func TestIPJSONDistinct(t *testing.T) {
	routes, err := ParseJSON(ipJSON(5000), IPv4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range routes {
		seen[r.Dst.String()] = true
	}
	if len(routes) != 5000 || len(seen) != 5000 {
		t.Errorf("%d routes, %d distinct destinations; want 5,000 of each", len(routes), len(seen))
	}
}

// A 5,000-node cluster's table must parse in well under 10 ms (issue 5).
func BenchmarkParseJSON5000(b *testing.B) {
	data := ipJSON(5000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		routes, err := ParseJSON(data, IPv4)
		if err != nil || len(routes) != 5000 {
			b.Fatalf("%d routes, %v", len(routes), err)
		}
	}
}

// ipJSONExpires is ipJSON with a lifetime on the last route, as a node
// with an RA default route prints it (ip -6 lists the default last).
func ipJSONExpires(n int) []byte {
	data := ipJSON(n)
	i := bytes.LastIndex(data, []byte(`"scope":"0","flags":[]}`)) + len(`"scope":"0","flags":[]`)
	return append(data[:i:i], append([]byte(`,"expires":1790`), data[i:]...)...)
}

// StableSection runs on every section of every table read: without a
// lifetime in it, it must cost no more than a search, and no allocation.
func BenchmarkStableSection5000(b *testing.B) {
	data := ipJSON(5000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if out := StableSection(data, false); len(out) != len(data) {
			b.Fatal("changed")
		}
	}
}

// With a lifetime in it, it copies the table once.
func BenchmarkStableSection5000Expires(b *testing.B) {
	data := ipJSONExpires(5000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if out := StableSection(data, false); len(out) != len(data)-len(`,"expires":1790`) {
			b.Fatal("not removed")
		}
	}
}
