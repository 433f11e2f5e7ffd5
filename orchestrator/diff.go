package orchestrator

import (
	"fmt"
	"iter"

	"github.com/routepush/routepush/route"
)

// Diff is what must change on a node to match its HostPlan, and what the
// plan found there that it leaves alone. It stores positions in the plan
// rather than routes, so holding the diffs of every node of a large cluster
// until the run ends stays cheap; only routes that will be overwritten or
// deleted are copied, because rollback must put them back.
type Diff struct {
	Add       Positions // plan positions of routes the node lacks
	Replace   []Replace // routes with a planned route's key (destination, metric) that go elsewhere
	Remove    []Finding // routes the batch deletes: stale with --prune, foreign or self with --adopt
	Unchanged int
	// Kept are findings the batch does not touch: stale routes without
	// --prune, self routes without --adopt, routes overlapping a planned
	// destination (never touched), and conflicts, which refuse the node's
	// plan without --adopt.
	Kept []Finding
}

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

func (k FindingKind) String() string {
	switch k {
	case Stale:
		return "stale"
	case Conflict:
		return "conflict"
	case Self:
		return "self route"
	case Overlap:
		return "overlap"
	}
	return "finding"
}

// Why explains a finding in a sentence that names the route's owner by its
// protocol, as the plan's ProtocolNames (/etc/iproute2/rt_protos) do.
func (f Finding) Why(h HostPlan) string {
	r := f.Route()
	planned, _ := f.Planned(h)
	switch f.Kind {
	case Stale:
		return fmt.Sprintf("routepush's route %s is not in the plan (its node left or its pod CIDR moved)", r)
	case Conflict:
		return fmt.Sprintf("route %s (%s) is in the way of the planned %s", r, h.owner(r.Protocol), planned)
	case Self:
		return fmt.Sprintf("route %s (%s) sends the node's own pod CIDR back to itself", r, h.owner(r.Protocol))
	case Overlap:
		return fmt.Sprintf("route %s (%s) overlaps the planned %s", r, h.owner(r.Protocol), planned)
	}
	return r.String()
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

// Replace is a planned route that overwrites a route already on the node.
type Replace struct {
	Index int32 // the planned route's position in the plan
	old   storedRoute
}

// Old returns the route the planned one overwrites.
func (r Replace) Old() route.Route { return r.old.route() }

// Positions is a set of plan positions kept as ascending runs. A node
// that lacks routes usually lacks a whole stretch of them (all of them on
// a first run): a 1,000-node cluster's first run keeps 1,000 runs, not a
// million numbers.
type Positions struct {
	runs []span
	n    int
}

// add appends k, which must be larger than every position already added.
func (p *Positions) add(k int) {
	p.n++
	if last := len(p.runs) - 1; last >= 0 && p.runs[last].end == k {
		p.runs[last].end++
		return
	}
	p.runs = append(p.runs, span{k, k + 1})
}

// Len is how many positions there are.
func (p *Positions) Len() int { return p.n }

// All yields the positions in ascending order.
func (p *Positions) All() iter.Seq[int] {
	return func(yield func(int) bool) {
		for _, r := range p.runs {
			for k := r.start; k < r.end; k++ {
				if !yield(k) {
					return
				}
			}
		}
	}
}

// Empty reports whether the node is already in sync: the batch would be
// empty. Kept findings do not count.
func (d *Diff) Empty() bool { return d.Add.Len() == 0 && len(d.Replace) == 0 && len(d.Remove) == 0 }

// Conflicts returns the findings that refuse the node's plan.
func (d *Diff) Conflicts() []Finding {
	var c []Finding
	for _, f := range d.Kept {
		if f.Kind == Conflict {
			c = append(c, f)
		}
	}
	return c
}

// Removed counts the routes the batch deletes.
func (d *Diff) Removed() int { return len(d.Remove) }

// ComputeDiff compares a node's plan with its current routes. A route with
// the plan's destination and metric (the kernel's key, the one `ip route
// replace` overwrites) that does not already go via the planned gateway
// with routepush's protocol is replaced if it is routepush's own or adopted;
// its old form is kept for rollback, as is every route the batch deletes.
// It fails when such a route has attributes that could not be restored.
func ComputeDiff(h HostPlan, current []route.Route) (Diff, error) {
	d := diff(h, current)
	for _, r := range d.Replace {
		if old := r.old.full; old != nil && old.Unrestorable != "" {
			return Diff{}, fmt.Errorf("route %s would be replaced, but its %s cannot be restored on rollback; remove it or change it by hand", old, old.Unrestorable)
		}
	}
	for _, f := range d.Remove {
		if r := f.found.full; r != nil && r.Unrestorable != "" {
			return Diff{}, fmt.Errorf("route %s would be deleted, but its %s cannot be restored on rollback; remove it or change it by hand", r, r.Unrestorable)
		}
	}
	return d, nil
}

func diff(h HostPlan, current []route.Route) Diff {
	var d Diff
	p := h.plan
	compare(h, current, func(k int, have *route.Route) {
		switch {
		case have == nil:
			d.Add.add(k)
		case have.Protocol == p.Protocol || p.Adopt:
			d.Replace = append(d.Replace, Replace{Index: int32(k), old: storeRoute(have)})
		default:
			d.Kept = append(d.Kept, newFinding(Conflict, have, k))
		}
	}, func() { d.Unchanged++ })
	// Routes the plan has no slot for: routepush's own that are stale,
	// others' beside a planned destination, self routes, overlaps.
	for i := range current {
		c := &current[i]
		if c.Table != p.Table {
			continue // another table: not routepush's business
		}
		var f Finding
		fi, pos, found := p.find(c.Dst)
		k, planned := 0, false
		if found {
			k, planned = h.indexOf(fi, pos)
		}
		if planned && c.Metric == p.Metric[fi] {
			continue // compare has dealt with it
		}
		switch {
		case found && !planned && p.dests[fi][pos].owner == h.node && c.Gateway.IsValid() && h.Node().HasInternalIP(c.Gateway):
			f = newFinding(Self, c, -1)
			if p.Adopt {
				d.Remove = append(d.Remove, f)
				continue
			}
		case c.Protocol == p.Protocol:
			f = newFinding(Stale, c, -1)
			if p.Prune {
				d.Remove = append(d.Remove, f)
				continue
			}
		case planned:
			f = newFinding(Conflict, c, k)
			if p.Adopt {
				d.Remove = append(d.Remove, f)
				continue
			}
		default:
			k, ok := h.overlapping(c.Dst)
			if !ok {
				continue
			}
			f = newFinding(Overlap, c, k)
		}
		d.Kept = append(d.Kept, f)
	}
	return d
}

// compare walks a node's plan against its table: differ is called for
// every planned route k that is missing (have == nil) or goes elsewhere,
// same for every one already right. It is the one definition of "in sync"
// that diff and verify share. It builds no Route per planned route: on a
// 5,000-node cluster it runs 25 million times.
func compare(h HostPlan, current []route.Route, differ func(k int, have *route.Route), same func()) {
	match := make([]int32, h.Len()) // match[k]: index in current of planned route k, or -1
	for k := range match {
		match[k] = -1
	}
	for i := range current {
		c := &current[i]
		if c.Table != h.plan.Table {
			continue // another table: not routepush's business
		}
		if fi, pos, ok := h.plan.lookup(c); ok {
			if k, ok := h.indexOf(fi, pos); ok {
				match[k] = int32(i)
			}
		}
	}
	k := 0
	for _, s := range h.segs {
		dests := h.plan.dests[famIndex(s.fam)]
		for pos := range dests {
			if pos >= s.skip.start && pos < s.skip.end {
				continue // the node's own pod CIDR
			}
			switch i := match[k]; {
			case i < 0:
				differ(k, nil)
			case current[i].GoesVia(dests[pos].via, h.plan.Protocol):
				same()
			default:
				differ(k, &current[i])
			}
			k++
		}
	}
}

// ApplyBatch renders the diff as the `ip -batch` lines that make the node
// match its plan: exact deletions first (the routes --prune and --adopt
// remove, and the old form of each route to be changed), then `route add`
// of every planned route the node lacks or has going elsewhere. No line
// overwrites a route: a route that appears at a planned destination after
// the table was read makes its line fail, and the batch with it, instead
// of being replaced unseen.
func (d *Diff) ApplyBatch(h HostPlan) *route.Batch {
	var b route.Batch
	size := (len(d.Remove) + len(d.Replace)) * route.LineSize
	for k := range d.Add.All() {
		size += route.AddSize(h.spec(k))
	}
	for _, r := range d.Replace {
		size += route.AddSize(h.spec(int(r.Index)))
	}
	b.Grow(size) // a first run on a large cluster renders gigabytes
	for _, f := range d.Remove {
		b.Delete(f.Route())
	}
	for _, r := range d.Replace {
		b.Delete(r.Old())
	}
	for k := range d.Add.All() {
		b.AddSpec(h.spec(k))
	}
	for _, r := range d.Replace {
		b.AddSpec(h.spec(int(r.Index)))
	}
	return &b
}

// UndoBatch renders the lines that put the node back as it was: delete
// what the batch added (matching gateway and protocol, so nothing else is
// touched), then add back every route it changed or deleted, with all its
// attributes. Like the batch, it overwrites nothing: a line for a change
// the batch never got to fails (ip runs it with -force), and so does one
// whose place someone else has taken since; the digest of the table read
// afterwards says whether the node is as it was.
func (d *Diff) UndoBatch(h HostPlan) *route.Batch {
	var b route.Batch
	b.Grow((d.Add.Len() + 2*len(d.Replace) + len(d.Remove)) * route.LineSize)
	for k := range d.Add.All() {
		b.Delete(h.Route(k))
	}
	for _, r := range d.Replace {
		b.Delete(h.Route(int(r.Index)))
	}
	for _, r := range d.Replace {
		r.old.appendAdd(&b)
	}
	for _, f := range d.Remove {
		f.found.appendAdd(&b)
	}
	return &b
}

// Verify checks a node's table after apply: every planned route must be
// there with the planned gateway and protocol, and every route the batch
// deleted must be gone. It returns one message per route that is not so.
func Verify(h HostPlan, current []route.Route) []string {
	var problems []string
	d := diff(h, current)
	for k := range d.Add.All() {
		problems = append(problems, fmt.Sprintf("route %s is missing", h.Route(k)))
	}
	for _, r := range d.Replace {
		problems = append(problems, fmt.Sprintf("route %s is %s instead", h.Route(int(r.Index)), r.Old()))
	}
	for _, f := range d.Remove {
		problems = append(problems, fmt.Sprintf("route %s is still there", f.Route()))
	}
	for _, f := range d.Conflicts() {
		planned, _ := f.Planned(h)
		problems = append(problems, fmt.Sprintf("route %s is %s instead", planned, f.Route()))
	}
	return problems
}

// describeChange says what changed in a node's table between the read the
// diff was made from and now, as far as the plan is concerned: routes of
// other owners that appeared at planned destinations, and routes that took
// the place of planned ones.
func describeChange(h HostPlan, was *Diff, now []route.Route) string {
	d := diff(h, now)
	var what []string
	seen := map[string]bool{}
	for _, f := range was.Kept {
		seen[f.found.spec] = true
	}
	for _, f := range d.Kept {
		if f.Kind == Conflict && !seen[f.found.spec] {
			what = append(what, f.Why(h))
		}
	}
	old := map[int32]string{}
	for _, r := range was.Replace {
		old[r.Index] = r.old.spec
	}
	for _, r := range d.Replace {
		if old[r.Index] != r.old.spec {
			o := r.Old()
			what = append(what, fmt.Sprintf("route %s (%s) now stands where the planned %s goes", o, h.owner(o.Protocol), h.Route(int(r.Index))))
		}
	}
	if n, m := was.Add.Len(), d.Add.Len(); m != n && len(what) == 0 {
		what = append(what, fmt.Sprintf("%d planned routes were missing, now %d", n, m))
	}
	if len(what) == 0 {
		return "routes that are not routepush's business changed"
	}
	return summarize(what)
}
