package orchestrator

import "github.com/routepush/routepush/route"

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
