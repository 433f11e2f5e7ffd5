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
	// ForwardDrop: a netfilter chain on the forward hook (iptables'
	// FORWARD, Docker's doing) drops what no rule of it accepts.
	ForwardDrop PreflightKind = "forward-drop"
	// NotRead: something preflight checks could not be read on the node
	// (Why says what and why); not a problem found, and not counted as
	// one.
	NotRead PreflightKind = "not-read"
)

// Problem reports whether the finding is a reason pods may not reach
// each other, rather than something preflight could not read.
func (f PreflightFinding) Problem() bool { return f.Kind != NotRead }

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
//
// FORWARD chains whose policy is drop are findings whatever rules they
// hold: preflight does not judge rules, and says so in the finding.
func Preflight(h HostPlan, current []route.Route, f *route.Facts) []PreflightFinding {
	var out []PreflightFinding
	if f == nil {
		return nil
	}
	for _, why := range f.Unread {
		out = append(out, PreflightFinding{Kind: NotRead, Why: why})
	}
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
		for _, c := range f.Forward {
			if c.Family != fam || !c.Drop {
				continue
			}
			out = append(out, PreflightFinding{Kind: ForwardDrop, Family: fam, Interface: "",
				Why: fmt.Sprintf("%s's policy is drop: the node forwards no pod's packet that none of its rules accepts (preflight reads the policy, not the rules)", chainName(c)),
				Fix: forwardFix(c, fam, h.Node().PodCIDRs)})
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
// a user may paste: no shell syntax, and not taken for an option.
var plainName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_@.-]{0,14}$`)

// plainNftName is the same for an nft family, table or chain name.
var plainNftName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// chainName names a FORWARD chain as its tool shows it, the node's names
// escaped.
func chainName(c route.ForwardChain) string {
	if c.Tool == "nft" {
		return fmt.Sprintf("nft chain %s %s %s", safetext.Quote(c.TableFamily), safetext.Quote(c.Table), safetext.Quote(c.Chain))
	}
	return c.Tool + " chain filter FORWARD"
}

// forwardFix is the command that accepts, ahead of the chain's rules, what
// the node forwards to and from its own pod CIDRs of a family; what to do
// when the node's names are not ones to paste into a shell.
func forwardFix(c route.ForwardChain, fam route.Family, pods []netip.Prefix) string {
	var cmds []string
	for _, cidr := range pods {
		if famOf(cidr) != fam {
			continue
		}
		for _, dir := range []string{"s", "d"} {
			if tool := iptablesOf(c); tool != "" {
				cmds = append(cmds, fmt.Sprintf("%s -I FORWARD -%s %s -j ACCEPT", tool, dir, cidr))
				continue
			}
			if !plainNftName.MatchString(c.TableFamily) || !plainNftName.MatchString(c.Table) || !plainNftName.MatchString(c.Chain) {
				return "accept the node's pod CIDRs in that chain (its names are not ones to paste here)"
			}
			match := "ip"
			if fam == route.IPv6 {
				match = "ip6"
			}
			cmds = append(cmds, fmt.Sprintf("nft insert rule %s %s %s %s %saddr %s accept", c.TableFamily, c.Table, c.Chain, match, dir, cidr))
		}
	}
	if len(cmds) == 0 {
		return "accept the pods' traffic in that chain"
	}
	return strings.Join(cmds, " && ")
}

// iptablesOf is the iptables command that manages a FORWARD chain: one
// iptables read, or the one iptables-nft keeps in nft (family ip or ip6,
// table filter, chain FORWARD), which nft itself must not change; "" for
// an nft chain of its own.
func iptablesOf(c route.ForwardChain) string {
	switch {
	case c.Tool != "nft":
		return c.Tool
	case c.Table != "filter" || c.Chain != "FORWARD":
		return ""
	case c.TableFamily == "ip":
		return "iptables"
	case c.TableFamily == "ip6":
		return "ip6tables"
	}
	return ""
}
