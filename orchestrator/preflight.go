package orchestrator

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// Facts are what a node's read says about how it forwards, read in the
// same ip as its tables: the settings preflight checks.
type Facts struct {
	Netconf   []route.Netconf
	Addresses []route.Address
}

// PreflightKind names a reason pods may not reach each other through
// routes that verified.
type PreflightKind string

const (
	// ForwardingOff: the node does not forward the family's packets, on
	// every interface ("all") or on the one toward its next hops.
	ForwardingOff PreflightKind = "forwarding-off"
	// StrictRPFilter: IPv4 reverse-path filtering is strict on the
	// interface toward the next hops: a pod's packet that comes back by
	// another path than the route to its source is dropped.
	StrictRPFilter PreflightKind = "rp-filter-strict"
	// NoPodAddress: nothing on the node holds an address in its own pod
	// CIDR: no pod bridge answers for its pods yet.
	NoPodAddress PreflightKind = "no-pod-address"
)

// PreflightFinding is one reason pods may not reach each other through a
// node, with the line that fixes it.
type PreflightFinding struct {
	Kind   PreflightKind
	Family route.Family
	// Interface is the interface concerned, as the node names it, or
	// "all"; "" when none is.
	Interface string
	Why       string // one line, the node's own strings escaped
	Fix       string // one command line, or what to do where no command fits
}

// Preflight checks, for each family the node gets routes in, what the
// routes cannot fix: forwarding, reverse-path filtering on the interfaces
// toward its next hops (those of the connected routes that reach them,
// in its main table), and an address in its own pod CIDR.
func Preflight(h HostPlan, current []route.Route, f Facts) []PreflightFinding {
	var out []PreflightFinding
	for _, fam := range h.Families() {
		conf := map[string]route.Netconf{}
		for _, n := range f.Netconf {
			if n.Family == fam {
				conf[n.Interface] = n
			}
		}
		all, known := conf["all"]
		if known && !all.Forwarding {
			out = append(out, PreflightFinding{Kind: ForwardingOff, Family: fam, Interface: "all",
				Why: fmt.Sprintf("%s forwarding is off: the node routes no packet of another host, its pods' included", fam),
				Fix: sysctlFix(fam, "all", "forwarding", "1")})
		}
		for _, dev := range nextHopDevices(h, current, fam) {
			c, ok := conf[dev]
			if !ok {
				continue
			}
			if all.Forwarding && !c.Forwarding {
				out = append(out, PreflightFinding{Kind: ForwardingOff, Family: fam, Interface: dev,
					Why: fmt.Sprintf("%s forwarding is off on %s, the interface toward the other nodes", fam, safetext.Quote(dev)),
					Fix: sysctlFix(fam, dev, "forwarding", "1")})
			}
			if fam == route.IPv4 && max(c.RPFilter, all.RPFilter) == route.RPStrict {
				out = append(out, PreflightFinding{Kind: StrictRPFilter, Family: fam, Interface: dev,
					Why: fmt.Sprintf("reverse-path filtering is strict on %s, the interface toward the other nodes: a pod's packet that comes back by another path than the route to its source is dropped", safetext.Quote(dev)),
					Fix: sysctlFix(fam, dev, "rp_filter", "2")})
			}
		}
		for _, cidr := range h.Node().PodCIDRs {
			if famOf(cidr) != fam || slices.ContainsFunc(f.Addresses, func(a route.Address) bool { return cidr.Contains(a.Prefix.Addr()) }) {
				continue
			}
			out = append(out, PreflightFinding{Kind: NoPodAddress, Family: fam,
				Why: fmt.Sprintf("no interface holds an address in its pod CIDR %s: nothing answers for its pods (no pod bridge yet)", cidr),
				Fix: fmt.Sprintf("let the node's CNI set up its pod bridge, which takes an address in %s", cidr)})
		}
	}
	return out
}

// nextHopDevices are the interfaces of the connected routes through which
// the node reaches its plan's next hops of a family, as
// unconnectedNextHops finds them.
func nextHopDevices(h HostPlan, current []route.Route, fam route.Family) []string {
	var devs []string
	infra := infraRoutes(h, current)
	for _, s := range h.segs {
		if s.fam != fam {
			continue
		}
		for pos, d := range h.plan.dests[famIndex(s.fam)] {
			if pos >= s.skip.start && pos < s.skip.end {
				continue
			}
			if best := connectedRoute(infra, d.via); best != nil && best.Dev != "" && !slices.Contains(devs, best.Dev) {
				devs = append(devs, best.Dev)
			}
		}
	}
	return devs
}

func famOf(p netip.Prefix) route.Family {
	if p.Addr().Is4() {
		return route.IPv4
	}
	return route.IPv6
}

// sysctlFix is the command that sets a family's sysctl name to value on
// an interface (or "all"), unless the interface's name, the node's
// choice, is not one to paste into a shell.
func sysctlFix(fam route.Family, dev, name, value string) string {
	if !plainName.MatchString(dev) {
		dev = "<that interface>"
	}
	if fam == route.IPv4 && dev == "all" && name == "forwarding" {
		return "sysctl -w net.ipv4.ip_forward=1"
	}
	v := "ipv4"
	if fam == route.IPv6 {
		v = "ipv6"
	}
	// A dot in an interface name (a VLAN's eth0.100) is a slash in a
	// sysctl key, as sysctl(8) writes it.
	return fmt.Sprintf("sysctl -w net.%s.conf.%s.%s=%s", v, strings.ReplaceAll(dev, ".", "/"), name, value)
}

// plainName is an interface name that is safe to show in a command line
// a user may paste.
var plainName = regexp.MustCompile(`^[A-Za-z0-9_@.-]{1,15}$`)
