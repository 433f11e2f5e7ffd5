// Package route models kernel routes the way iproute2 shows them: it parses
// `ip -d -json route show` (and, for old iproute2 without JSON, the text form
// of `ip -d route show`) and renders the lines routepush sends to `ip -batch -`.
//
// It is pure: it runs no command and opens no connection. Everything it
// renders comes from parsed netip values and validated numbers, never from
// strings copied out of an inventory, so nothing it writes can smuggle a
// second command into a batch.
package route

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an address family as iproute2 names it with -4 and -6.
type Family uint8

// The two families routepush plans routes for.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// DefaultMetric is the metric the kernel gives a route added without one:
// 0 for IPv4, 1024 for IPv6. Routes are keyed by metric, so a planned route
// must name the metric the kernel will actually store.
func (f Family) DefaultMetric() uint32 {
	if f == IPv6 {
		return 1024
	}
	return 0
}

// Protocol is the rtnetlink protocol number a route carries (`proto N`).
// routepush marks its own routes with one so later runs can tell them apart
// from routes made by people, DHCP or other daemons.
type Protocol uint8

// Protocols iproute2 names out of the box (/etc/iproute2/rt_protos).
var protocolNames = map[Protocol]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
	8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
	14: "xorp", 15: "ntk", 16: "dhcp", 18: "keepalived", 42: "babel",
	99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp",
}

var protocolNumbers = func() map[string]Protocol {
	m := make(map[string]Protocol, len(protocolNames))
	for p, name := range protocolNames {
		m[name] = p
	}
	return m
}()

// ParseProtocol accepts what iproute2 prints for a protocol: a number or one
// of the names in its default rt_protos.
func ParseProtocol(s string) (Protocol, error) {
	if n, err := strconv.ParseUint(s, 0, 8); err == nil {
		return Protocol(n), nil
	}
	if p, ok := protocolNumbers[s]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("route: unknown protocol %q", s)
}

func (p Protocol) String() string {
	if name, ok := protocolNames[p]; ok {
		return name
	}
	return strconv.Itoa(int(p))
}

// Route is one entry of a kernel routing table. The zero values of the
// optional fields mean "not set"; Type "" means unicast.
type Route struct {
	Type     string // unicast when empty; blackhole, unreachable, prohibit, ...
	Dst      netip.Prefix
	Gateway  netip.Addr // zero when the route has no single next hop
	Dev      string
	Protocol Protocol
	Scope    string
	PrefSrc  netip.Addr
	Metric   uint32
	Table    string // empty = main
	Pref     string // IPv6 router preference (low, medium, high)
	Flags    []string
	// Metrics holds route metrics such as mtu or advmss, in the order shown.
	Metrics []Attr
	// Nexthops holds the hops of a multipath route.
	Nexthops []Nexthop
	// Unrestorable names an attribute this package can read but not render
	// back; a route with it cannot be put back exactly after a rollback.
	Unrestorable string
}

// Attr is a route metric: a name and its value as iproute2 prints it.
type Attr struct {
	Name  string
	Value string
}

// Nexthop is one hop of a multipath route.
type Nexthop struct {
	Gateway netip.Addr
	Dev     string
	Weight  int
	Flags   []string
}

// Key is what the kernel uses to tell two routes of one table apart: a new
// route with the same destination and metric replaces the old one.
type Key struct {
	Dst    netip.Prefix
	Metric uint32
}

// Key returns the route's identity within its table.
func (r Route) Key() Key { return Key{Dst: r.Dst, Metric: r.Metric} }

// Family returns the route's address family.
func (r Route) Family() Family { return FamilyOf(r.Dst.Addr()) }

// SameNextHop reports whether r already does what want asks: a plain unicast
// route to the same gateway with the same protocol. Attributes the kernel
// fills in by itself (dev, scope, pref) do not matter.
func (r Route) SameNextHop(want Route) bool {
	return (r.Type == "" || r.Type == "unicast") &&
		len(r.Nexthops) == 0 &&
		r.Gateway == want.Gateway &&
		r.Protocol == want.Protocol
}

// String renders the route the way `ip route show` would, without the table.
func (r Route) String() string {
	var b strings.Builder
	r.render(&b, false)
	return b.String()
}

// Spec renders the arguments that recreate the route with `ip route replace`.
// Every attribute the route was read with is kept, so a route replaced by
// routepush can be put back exactly.
func (r Route) Spec() string {
	var b strings.Builder
	r.render(&b, true)
	return b.String()
}

func (r Route) render(b *strings.Builder, spec bool) {
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type)
		b.WriteByte(' ')
	}
	b.WriteString(r.Dst.String())
	if r.Gateway.IsValid() {
		b.WriteString(" via ")
		b.WriteString(r.Gateway.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev ")
		b.WriteString(r.Dev)
	}
	if r.Table != "" && spec {
		b.WriteString(" table ")
		b.WriteString(r.Table)
	}
	if r.Protocol != 0 || spec {
		b.WriteString(" proto ")
		b.WriteString(r.Protocol.String())
	}
	if r.Scope != "" && spec {
		b.WriteString(" scope ")
		b.WriteString(r.Scope)
	}
	if r.PrefSrc.IsValid() {
		b.WriteString(" src ")
		b.WriteString(r.PrefSrc.String())
	}
	if r.Metric != 0 || (spec && r.Family() == IPv6) {
		b.WriteString(" metric ")
		b.WriteString(strconv.FormatUint(uint64(r.Metric), 10))
	}
	writeFlags(b, r.Flags, spec)
	for _, m := range r.Metrics {
		b.WriteByte(' ')
		b.WriteString(m.Name)
		b.WriteByte(' ')
		b.WriteString(m.Value)
	}
	if r.Pref != "" {
		b.WriteString(" pref ")
		b.WriteString(r.Pref)
	}
	for _, nh := range r.Nexthops {
		b.WriteString(" nexthop")
		if nh.Gateway.IsValid() {
			b.WriteString(" via ")
			b.WriteString(nh.Gateway.String())
		}
		if nh.Dev != "" {
			b.WriteString(" dev ")
			b.WriteString(nh.Dev)
		}
		if nh.Weight > 0 {
			b.WriteString(" weight ")
			b.WriteString(strconv.Itoa(nh.Weight))
		}
		writeFlags(b, nh.Flags, spec)
	}
}

// writeFlags writes flags; for a spec only those `ip route` accepts as input.
func writeFlags(b *strings.Builder, flags []string, spec bool) {
	for _, f := range flags {
		if spec && !inputFlags[f] {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(f)
	}
}

// parseDst reads a destination as iproute2 prints it: "default", a prefix,
// or a bare address for a host route.
func parseDst(s string, fam Family) (netip.Prefix, error) {
	if s == "default" {
		if fam == IPv6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
	}
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// routeTypes are the route types iproute2 prints before the destination.
var routeTypes = map[string]bool{
	"unicast": true, "local": true, "broadcast": true, "multicast": true,
	"throw": true, "unreachable": true, "prohibit": true, "blackhole": true,
	"nat": true, "anycast": true,
}

// knownFlags are the single-word flags iproute2 prints after a route.
var knownFlags = map[string]bool{
	"onlink": true, "pervasive": true, "dead": true, "linkdown": true,
	"offload": true, "trap": true, "notify": true, "rt_offload": true,
	"rt_trap": true, "rt_offload_failed": true, "offload_failed": true,
}

// inputFlags are the flags `ip route replace` accepts back; the others are
// states the kernel reports.
var inputFlags = map[string]bool{"onlink": true, "pervasive": true}
