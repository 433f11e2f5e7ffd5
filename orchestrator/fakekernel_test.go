package orchestrator

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/routepush/routepush/route"
)

// The fake kernel's own model of a routing table. It shares nothing with
// package route's renderer and parser, which are what it tests: it reads
// the lines routepush sends (and `ip route show` lines, to seed a table)
// with its own tokenizer, keeps every attribute (those it does not
// understand too, as tokens), computes its digest over its own
// representation, and builds route.Route values field by field. An
// attribute the renderer drops therefore changes the fake's table, and
// its digest, even if package route's parser would drop it as well.

// kroute is a route as the fake kernel keeps it.
type kroute struct {
	typ    string // "" for unicast
	dst    netip.Prefix
	via    netip.Addr
	dev    string
	proto  uint8
	metric uint32
	table  string // "" for main
	// attrs are every other attribute as "name value" (or a lone word for
	// a flag or a token the fake does not understand), sorted: the kernel
	// keeps attributes, not the order they were given in.
	attrs []string
}

// kline is a batch line's or show line's route, with which of the
// optional selectors it gave (for `route del`, which matches only those).
type kline struct {
	kroute
	hasVia, hasMetric, hasProto, hasDev bool
}

// fakeProtos are the protocol names ip knows out of the box.
var fakeProtos = map[string]uint8{
	"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4,
	"gated": 8, "ra": 9, "mrt": 10, "zebra": 11, "bird": 12, "dnrouted": 13,
	"xorp": 14, "ntk": 15, "dhcp": 16, "keepalived": 18, "babel": 42,
	"openr": 99, "bgp": 186, "isis": 187, "ospf": 188, "rip": 189, "eigrp": 192,
}

var fakeTypes = map[string]bool{
	"unicast": true, "local": true, "broadcast": true, "multicast": true, "throw": true,
	"unreachable": true, "prohibit": true, "blackhole": true, "nat": true, "anycast": true,
}

// fakeValued are the attributes, besides the route's key and next hop,
// that take one value; fakeFlags take none.
var (
	fakeValued = map[string]bool{
		"scope": true, "src": true, "pref": true, "nhid": true, "mtu": true, "advmss": true,
		"window": true, "rtt": true, "rttvar": true, "ssthresh": true, "cwnd": true,
		"initcwnd": true, "initrwnd": true, "hoplimit": true, "realms": true, "expires": true,
		"congctl": true, "features": true, "quickack": true, "reordering": true,
	}
	fakeFlags = map[string]bool{"onlink": true, "pervasive": true}
)

// parseKLine reads "[TYPE] DST [via GW] [dev D] [proto P] [metric M]
// [table T] ..." in any order after the destination.
func parseKLine(line string) (kline, error) {
	toks := strings.Fields(line)
	var l kline
	if len(toks) > 0 && fakeTypes[toks[0]] {
		if toks[0] != "unicast" {
			l.typ = toks[0]
		}
		toks = toks[1:]
	}
	if len(toks) == 0 {
		return l, fmt.Errorf("no destination")
	}
	var err error
	if l.dst, err = fakePrefix(toks[0]); err != nil {
		return l, err
	}
	for i := 1; i < len(toks); i++ {
		name, value := toks[i], ""
		if i+1 < len(toks) {
			value = toks[i+1]
		}
		consumed := true
		switch {
		case name == "via":
			l.hasVia = true
			l.via, err = netip.ParseAddr(value)
		case name == "dev":
			l.hasDev, l.dev = true, value
		case name == "proto":
			l.hasProto = true
			l.proto, err = fakeProto(value)
		case name == "metric" || name == "preference":
			l.hasMetric = true
			var m uint64
			m, err = strconv.ParseUint(value, 10, 32)
			l.metric = uint32(m)
		case name == "table":
			l.table = value
			if value == "main" || value == "254" {
				l.table = ""
			}
		case fakeValued[name] && value != "":
			l.attrs = append(l.attrs, name+" "+value)
		default:
			l.attrs = append(l.attrs, name) // a flag, or a token kept as it is
			consumed = false
		}
		if err != nil {
			return l, fmt.Errorf("%s %q: %w", name, value, err)
		}
		if consumed {
			i++
		}
	}
	if !l.hasMetric && l.dst.Addr().Is6() {
		l.metric = 1024 // the kernel's default for IPv6
	}
	slices.Sort(l.attrs)
	return l, nil
}

func fakePrefix(s string) (netip.Prefix, error) {
	switch {
	case s == "default":
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err == nil && p.Masked() != p {
			err = fmt.Errorf("invalid prefix for given prefix length")
		}
		return p, err
	}
	a, err := netip.ParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen()), err
}

func fakeProto(s string) (uint8, error) {
	if p, ok := fakeProtos[s]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	return uint8(n), err
}

// sameKey reports whether two routes have the kernel's key: destination,
// metric and table.
func (r *kroute) sameKey(o *kroute) bool {
	return r.dst == o.dst && r.metric == o.metric && r.table == o.table
}

// matches reports whether `route del` line l names r: its key, and every
// selector the line gives.
func (l *kline) matches(r *kroute) bool {
	return l.dst == r.dst && l.table == r.table &&
		(!l.hasMetric || l.metric == r.metric) && (!l.hasVia || l.via == r.via) &&
		(!l.hasProto || l.proto == r.proto) && (!l.hasDev || l.dev == r.dev)
}

// String renders the route in the fake's own canonical form, which its
// digest covers: every field and attribute it keeps.
func (r kroute) String() string {
	var b strings.Builder
	if r.typ != "" {
		b.WriteString(r.typ + " ")
	}
	b.WriteString(r.dst.String())
	if r.via.IsValid() {
		b.WriteString(" via " + r.via.String())
	}
	if r.dev != "" {
		b.WriteString(" dev " + r.dev)
	}
	proto := strconv.Itoa(int(r.proto))
	for name, n := range fakeProtos {
		if n == r.proto {
			proto = name
		}
	}
	fmt.Fprintf(&b, " proto %s metric %d", proto, r.metric)
	if r.table != "" {
		b.WriteString(" table " + r.table)
	}
	for _, a := range r.attrs {
		b.WriteString(" " + a)
	}
	return b.String()
}

// fakeDigest is order-independent, as the kernel's own listing order is
// fixed: only the set of routes counts.
func fakeDigest(routes []kroute) [32]byte {
	lines := make([]string, len(routes))
	for i, r := range routes {
		lines[i] = r.String() + "\n"
	}
	slices.Sort(lines)
	return sha256.Sum256([]byte(strings.Join(lines, "")))
}

// routeValue builds the route.Route that reading the route from a node
// gives, field by field.
func (r *kroute) routeValue() route.Route {
	v := route.Route{Type: r.typ, Dst: r.dst, Gateway: r.via, Dev: r.dev,
		Protocol: route.Protocol(r.proto), Metric: r.metric, Table: r.table}
	for _, a := range r.attrs {
		name, value, _ := strings.Cut(a, " ")
		switch {
		case name == "scope":
			v.Scope = value
		case name == "src":
			v.PrefSrc = netip.MustParseAddr(value)
		case name == "pref":
			v.Pref = value
		case name == "nhid":
			n, _ := strconv.ParseUint(value, 10, 32)
			v.NHID, v.Unrestorable = uint32(n), "nhid"
		case name == "expires":
			v.Unrestorable = "expires"
		case fakeFlags[name]:
			v.Flags = append(v.Flags, name)
		case fakeValued[name]:
			v.Metrics = append(v.Metrics, route.Attr{Name: name, Value: value})
		default:
			v.Unrestorable = name // what the fake cannot show, routepush must not touch
		}
	}
	return v
}
