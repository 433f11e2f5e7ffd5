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

// Protocols iproute2 names out of the box (/etc/iproute2/rt_protos),
// indexed by number ("" for those it prints as numbers): an array, since
// every rendered route looks its protocol up.
var protocolNames = [256]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
	8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
	14: "xorp", 15: "ntk", 16: "dhcp", 18: "keepalived", 42: "babel",
	99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp",
}

// protocolOwners are the protocols someone else marks routes with: those
// of linux/rtnetlink.h (and iproute2's rt_protos), plus Calico Felix's 80
// and kube-router's 17. routepush must never take or delete their routes,
// so it refuses to mark its own with them. Each entry completes
// "--protocol N is ..."; every number protocolNames names is here.
var protocolOwners = [256]string{
	0:   "the kernel's (proto unspec: routes that name no owner)",
	1:   "the kernel's (proto redirect: routes learned from ICMP redirects)",
	2:   "the kernel's (proto kernel: the routes of the node's own addresses)",
	3:   "the default of ip route add (proto boot: routes added by hand or by scripts, the Ansible playbook's among them)",
	4:   "the administrator's (proto static: configured routes, e.g. systemd-networkd's [Route] sections)",
	8:   "gated's (proto gated)",
	9:   "the kernel's (proto ra: IPv6 routes learned from router advertisements)",
	10:  "the MRT routing daemon's (proto mrt)",
	11:  "zebra's (proto zebra: Quagga and FRRouting)",
	12:  "BIRD's (proto bird)",
	13:  "the DECnet routing daemon's (proto dnrouted)",
	14:  "XORP's (proto xorp)",
	15:  "Netsukuku's (proto ntk)",
	16:  "DHCP clients' (proto dhcp: e.g. the default route a DHCP client adds)",
	17:  "mrouted's and kube-router's (proto mrouted; kube-router marks its pod routes 17)",
	18:  "keepalived's (proto keepalived)",
	42:  "babeld's (proto babel)",
	80:  "Calico Felix's (its pod routes)",
	99:  "Open/R's (proto openr)",
	186: "BGP daemons' (proto bgp, e.g. FRRouting's bgpd)",
	187: "IS-IS daemons' (proto isis, e.g. FRRouting's isisd)",
	188: "OSPF daemons' (proto ospf, e.g. FRRouting's ospfd)",
	189: "RIP daemons' (proto rip, e.g. FRRouting's ripd)",
	192: "EIGRP daemons' (proto eigrp, e.g. FRRouting's eigrpd)",
}

// ReservedProtocol says whether p is a protocol another owner marks its
// routes with, and whose, as "the kernel's (proto kernel: ...)".
func ReservedProtocol(p Protocol) (owner string, reserved bool) {
	owner = protocolOwners[p]
	return owner, owner != ""
}

var protocolNumbers = func() map[string]Protocol {
	m := map[string]Protocol{}
	for p, name := range protocolNames {
		if name != "" {
			m[name] = Protocol(p)
		}
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

func (p Protocol) String() string { return string(p.appendTo(nil)) }

func (p Protocol) appendTo(b []byte) []byte {
	if name := protocolNames[p]; name != "" {
		return append(b, name...)
	}
	return strconv.AppendUint(b, uint64(p), 10)
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
	// NHID is the id of the nexthop object (`ip nexthop`) the route uses,
	// 0 when it has none. Gateway, Dev and Nexthops then show what that
	// object resolves to, not attributes of the route itself; such a route
	// is always Unrestorable ("nhid"): routepush never recreates nexthop
	// objects, so it must neither replace nor delete the route.
	NHID uint32
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

// GoesVia reports whether r already does what a wanted route through
// gateway marked proto asks: a plain unicast route to that gateway with
// that protocol. Attributes the kernel fills in by itself (dev, scope,
// pref) do not matter.
func (r *Route) GoesVia(gateway netip.Addr, proto Protocol) bool {
	return (r.Type == "" || r.Type == "unicast") &&
		len(r.Nexthops) == 0 &&
		r.Gateway == gateway &&
		r.Protocol == proto
}

// String renders the route the way `ip route show` would, without the table.
func (r Route) String() string { return string(r.appendTo(nil, false)) }

// Spec renders the arguments that recreate the route with `ip route replace`.
// Every attribute the route was read with is kept, so a route replaced by
// routepush can be put back exactly.
func (r Route) Spec() string { return string(r.appendTo(nil, true)) }

// AppendSpec appends Spec to b: for a caller that renders a route once and
// puts it in many batches (Batch.ReplaceSpec).
func (r Route) AppendSpec(b []byte) []byte { return r.appendTo(b, true) }

// appendTo renders the route onto b. It appends rather than formats: a
// 5,000-node run renders 25 million routes.
func (r *Route) appendTo(b []byte, spec bool) []byte {
	if r.Type != "" && r.Type != "unicast" {
		b = append(append(b, r.Type...), ' ')
	}
	b = r.Dst.AppendTo(b)
	if r.NHID != 0 {
		// Where ip prints it. In a spec it names the route's nexthop
		// object; such a route is Unrestorable, so no batch carries it.
		b = strconv.AppendUint(append(b, " nhid "...), uint64(r.NHID), 10)
	}
	if r.Gateway.IsValid() {
		b = r.Gateway.AppendTo(append(b, " via "...))
	}
	if r.Dev != "" {
		b = append(append(b, " dev "...), r.Dev...)
	}
	if r.Table != "" && spec {
		b = append(append(b, " table "...), r.Table...)
	}
	if r.Protocol != 0 || spec {
		b = r.Protocol.appendTo(append(b, " proto "...))
	}
	if r.Scope != "" && spec {
		b = append(append(b, " scope "...), r.Scope...)
	}
	if r.PrefSrc.IsValid() {
		b = r.PrefSrc.AppendTo(append(b, " src "...))
	}
	if r.Metric != 0 || (spec && r.Family() == IPv6) {
		b = strconv.AppendUint(append(b, " metric "...), uint64(r.Metric), 10)
	}
	b = appendFlags(b, r.Flags, spec)
	for _, m := range r.Metrics {
		b = append(append(append(append(b, ' '), m.Name...), ' '), m.Value...)
	}
	if r.Pref != "" {
		b = append(append(b, " pref "...), r.Pref...)
	}
	for _, nh := range r.Nexthops {
		b = append(b, " nexthop"...)
		if nh.Gateway.IsValid() {
			b = nh.Gateway.AppendTo(append(b, " via "...))
		}
		if nh.Dev != "" {
			b = append(append(b, " dev "...), nh.Dev...)
		}
		if nh.Weight > 0 {
			b = strconv.AppendInt(append(b, " weight "...), int64(nh.Weight), 10)
		}
		b = appendFlags(b, nh.Flags, spec)
	}
	return b
}

// appendFlags appends flags; for a spec only those `ip route` accepts as input.
func appendFlags(b []byte, flags []string, spec bool) []byte {
	for _, f := range flags {
		if spec && !inputFlags[f] {
			continue
		}
		b = append(append(b, ' '), f...)
	}
	return b
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
	a, err := parseAddr(s)
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
