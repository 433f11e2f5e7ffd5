package orchestrator

import (
	"fmt"

	"github.com/routepush/routepush/route"
)

// Finding is a route on a node that the plan has something to say about.
type Finding struct {
	Kind    FindingKind
	found   storedRoute
	planned int32 // plan position of the planned route it concerns; -1: none
}

func newFinding(kind FindingKind, found *route.Route, planned int) Finding {
	return Finding{Kind: kind, found: storeRoute(found), planned: int32(planned)}
}

// Route returns the route found on the node.
func (f Finding) Route() route.Route { return f.found.route() }

// Planned returns the plan's route to the same or an overlapping
// destination, for conflicts and overlaps; ok is false for the others.
func (f Finding) Planned(h HostPlan) (r route.Route, ok bool) {
	if f.planned < 0 {
		return route.Route{}, false
	}
	return h.Route(int(f.planned)), true
}

// FindingKind says why a route is a finding.
type FindingKind uint8

// Kinds of findings.
const (
	// Stale: routepush's protocol, but not in the plan (its node left, its
	// CIDR moved, or the metric changed). --prune deletes it.
	Stale FindingKind = iota + 1
	// Conflict: another owner's route to a planned destination (another
	// protocol, or another metric beside the planned one). The node's plan
	// is refused; --adopt replaces it with routepush's route.
	Conflict
	// Self: a route to the node's own pod CIDR via the node itself, which
	// the Ansible playbook put on every node. --adopt deletes it.
	Self
	// Overlap: another owner's route that covers or splits a planned
	// destination without being equal to it. Reported, never deleted.
	Overlap
)

// findingWords words each kind of finding, in one place: its name (the
// report's and JSON's kind), the mark of its line in --check's diff, the
// sentence that explains it (Why: errors and JSON), and its diff line
// when the batch leaves it alone. The sentences take the route found (1),
// its owner (2) and the planned route it concerns (3).
var findingWords = map[FindingKind]struct{ name, mark, why, kept string }{
	Stale: {"stale", "-",
		"routepush's route %[1]s is not in the plan (its node left or its pod CIDR moved)",
		"%[1]s (stale, kept: --prune deletes it)"},
	Conflict: {"conflict", "!",
		"route %[1]s (%[2]s) is in the way of the planned %[3]s",
		"%[1]s (%[2]s) in the way of %[3]s"},
	Self: {"self route", "!",
		"route %[1]s (%[2]s) sends the node's own pod CIDR back to itself",
		"%[1]s (%[2]s) routes the node's own pod CIDR to itself (--adopt deletes it)"},
	Overlap: {"overlap", "?",
		"route %[1]s (%[2]s) overlaps the planned %[3]s",
		"%[1]s (%[2]s) overlaps %[3]s (left alone)"},
}

func (k FindingKind) String() string {
	if w, ok := findingWords[k]; ok {
		return w.name
	}
	return "finding"
}

// Why explains a finding in a sentence that names the route's owner by its
// protocol, as the plan's ProtocolNames do.
func (f Finding) Why(h HostPlan) string {
	w, ok := findingWords[f.Kind]
	if !ok {
		return f.Route().String()
	}
	return f.words(h, w.why)
}

// keptLine is the finding's line in --check's diff when the batch leaves
// the route alone, with its mark.
func (f Finding) keptLine(h HostPlan) (mark, text string) {
	w := findingWords[f.Kind]
	return w.mark, f.words(h, w.kept)
}

// words fills one of findingWords' sentences in.
func (f Finding) words(h HostPlan, format string) string {
	r := f.Route()
	planned, _ := f.Planned(h)
	return fmt.Sprintf(format, r, h.owner(r.Protocol), planned)
}

// owner names who probably made a route: its protocol as the plan's
// ProtocolNames name it (the bastion's rt_protos), and who uses that
// protocol.
func (h HostPlan) owner(p route.Protocol) string {
	who := map[route.Protocol]string{
		2: "the kernel", 3: "ip route add or route add", 4: "an administrator",
		17: "kube-router", 80: "Calico",
	}[p]
	name := h.plan.ProtocolNames.Name(p)
	if who == "" {
		return "proto " + name
	}
	return "proto " + name + ": " + who
}
