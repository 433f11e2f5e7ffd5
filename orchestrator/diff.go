package orchestrator

import (
	"fmt"

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

// Replace is a planned route that overwrites a route already on the node.
type Replace struct {
	Index int32 // the planned route's position in the plan
	old   storedRoute
}

// Old returns the route the planned one overwrites.
func (r Replace) Old() route.Route { return r.old.route() }

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
			if p.Prune || p.PruneDst != nil && p.PruneDst(c.Dst) {
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
