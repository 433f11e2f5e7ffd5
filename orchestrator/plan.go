package orchestrator

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// DefaultProtocol is the `proto` number routepush marks its routes with.
// 114 ('r') is not used by the kernel, iproute2's names (boot 3, static 4,
// dhcp 16, bird 12, zebra 11, babel 42, keepalived 18, openr 99, 186-192),
// kube-router (17) or Calico (80).
const DefaultProtocol route.Protocol = 114

// Plan is the desired routing of a whole cluster: on every node, a route to
// each other node's pod CIDRs via that node's internal IP of the same
// family. It holds one entry per pod CIDR, not one per route: the routes of
// a node are computed when asked for, so a 5,000-node plan costs kilobytes,
// not 25 million route structs.
type Plan struct {
	Nodes    []inventory.Node
	Protocol route.Protocol
	// Metric is the metric of routepush's routes per family (IPv4, IPv6):
	// the kernel's defaults unless --metric says otherwise.
	Metric [2]uint32
	// Table is the routing table the routes go in: "" for main, else its
	// number (--table).
	Table string
	// Prune deletes routepush's routes that are not in the plan; Adopt
	// replaces other owners' routes to planned destinations, and deletes
	// self routes. Without them such routes are only reported.
	Prune, Adopt bool
	// PruneDst, when set, deletes routepush's stale routes whose
	// destination it returns true for, even without Prune: the pod CIDRs
	// of nodes that left, for the watcher.
	PruneDst func(dst netip.Prefix) bool
	// ProtocolNames name other owners' routes in messages (the caller's
	// rt_protos); nil leaves iproute2's built-in names.
	ProtocolNames route.ProtocolNames
	// dests holds every pod CIDR with its next hop, per family, grouped by
	// owner in node order; owners[f][i] is the range of node i's entries.
	dests  [2][]destination
	owners [2][]span
	// index4 and index6 find a destination by its CIDR, so a node's table
	// is matched against its plan with one lookup per route instead of a
	// map built per node. The keys are plain integers: hashing is most of
	// the cost of matching 25 million routes.
	index4 map[uint64]int32
	index6 map[v6Key]int32
	// sorted holds each family's plan positions in address order, to find
	// the planned destinations a route overlaps.
	sorted [2][]int32
}

type v6Key struct {
	hi, lo uint64
	bits   uint8
}

// lookup returns the family index and plan position of the destination a
// route in a node's table stands for, if the plan has one: same CIDR, and
// the metric routepush's routes get.
func (p *Plan) lookup(r *route.Route) (fi, pos int, ok bool) {
	fi, pos, ok = p.find(r.Dst)
	if !ok || r.Metric != p.Metric[fi] {
		return 0, 0, false
	}
	return fi, pos, true
}

// find returns the family index and plan position of a destination.
func (p *Plan) find(dst netip.Prefix) (fi, pos int, ok bool) {
	a := dst.Addr()
	var i int32
	if a.Is4() {
		b := a.As4()
		i, ok = p.index4[uint64(b[0])<<32|uint64(b[1])<<24|uint64(b[2])<<16|uint64(b[3])<<8|uint64(dst.Bits())]
		return 0, int(i), ok
	}
	b := a.As16()
	i, ok = p.index6[v6Key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), uint8(dst.Bits())}]
	return 1, int(i), ok
}

func (p *Plan) addIndex(c netip.Prefix, pos int) {
	a := c.Addr()
	if a.Is4() {
		b := a.As4()
		p.index4[uint64(b[0])<<32|uint64(b[1])<<24|uint64(b[2])<<16|uint64(b[3])<<8|uint64(c.Bits())] = int32(pos)
		return
	}
	b := a.As16()
	p.index6[v6Key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), uint8(c.Bits())}] = int32(pos)
}

type destination struct {
	cidr  netip.Prefix
	via   netip.Addr
	owner int    // index of the node whose pod CIDR it is
	spec  []byte // the route's `ip route replace` arguments, the same on every node
}

type span struct{ start, end int }

func famIndex(f route.Family) int {
	if f == route.IPv6 {
		return 1
	}
	return 0
}

// PlanOptions are what a plan's routes look like and how it treats routes
// it finds on nodes.
type PlanOptions struct {
	Protocol route.Protocol
	// Metric, when set, is the metric of every route; else the kernel's
	// default of each family (0 for IPv4, 1024 for IPv6).
	Metric       *uint32
	Table        string // "" for main, else the table's number
	Prune, Adopt bool
	// PruneDst deletes routepush's stale routes whose destination it
	// returns true for, even without Prune (Plan.PruneDst).
	PruneDst func(dst netip.Prefix) bool
	// ProtocolNames name other owners' routes in messages, as the
	// bastion's rt_protos files do; nil leaves iproute2's built-in names.
	ProtocolNames route.ProtocolNames
}

// NewPlan plans routes for a validated node table, with the kernel's
// default metrics, reporting stale and foreign routes without touching
// them.
func NewPlan(nodes []inventory.Node, proto route.Protocol) *Plan {
	return NewPlanWith(nodes, PlanOptions{Protocol: proto})
}

// NewPlanWith plans routes for a validated node table.
func NewPlanWith(nodes []inventory.Node, o PlanOptions) *Plan {
	proto := o.Protocol
	p := &Plan{Nodes: nodes, Protocol: proto, Prune: o.Prune, Adopt: o.Adopt, PruneDst: o.PruneDst, Table: o.Table, ProtocolNames: o.ProtocolNames,
		index4: make(map[uint64]int32, len(nodes)), index6: map[v6Key]int32{}}
	p.Metric = [2]uint32{route.IPv4.DefaultMetric(), route.IPv6.DefaultMetric()}
	if o.Metric != nil {
		p.Metric = [2]uint32{*o.Metric, *o.Metric}
	}
	for fi := range p.owners {
		p.owners[fi] = make([]span, len(nodes))
	}
	for i := range nodes {
		n := &nodes[i]
		for fi := range p.owners {
			p.owners[fi][i] = span{len(p.dests[fi]), len(p.dests[fi])}
		}
		for _, c := range n.PodCIDRs {
			fam := route.FamilyOf(c.Addr())
			via, ok := n.InternalIP(fam)
			if !ok {
				continue // Validate refuses this; never route a CIDR nowhere.
			}
			fi := famIndex(fam)
			p.addIndex(c, len(p.dests[fi]))
			d := destination{cidr: c, via: via, owner: i}
			d.spec = d.route(proto, p.Metric[fi], p.Table).AppendSpec(nil)
			p.dests[fi] = append(p.dests[fi], d)
			p.owners[fi][i].end = len(p.dests[fi])
		}
	}
	for fi, dests := range p.dests {
		sorted := make([]int32, len(dests))
		for i := range sorted {
			sorted[i] = int32(i)
		}
		slices.SortFunc(sorted, func(a, b int32) int { return dests[a].cidr.Addr().Compare(dests[b].cidr.Addr()) })
		p.sorted[fi] = sorted
	}
	return p
}

// Host returns the plan of node i.
func (p *Plan) Host(i int) HostPlan {
	h := HostPlan{plan: p, node: i}
	for _, fam := range p.Nodes[i].Families() {
		fi := famIndex(fam)
		own := p.owners[fi][i]
		h.segs = append(h.segs, segment{fam: fam, skip: own, n: len(p.dests[fi]) - (own.end - own.start)})
	}
	return h
}

// HostPlan is the desired routes of one node: every other node's pod CIDRs,
// in the families the node has an internal IP in (a node with no IPv6
// address gets no IPv6 routes), and never a route to its own pod CIDR.
type HostPlan struct {
	plan *Plan
	node int
	segs []segment
}

// segment is one family's routes of a host: the plan's destinations of that
// family minus the node's own.
type segment struct {
	fam  route.Family
	skip span
	n    int
}

// Node returns the node this plan is for.
func (h HostPlan) Node() *inventory.Node { return &h.plan.Nodes[h.node] }

// Len returns the number of routes the node should have.
func (h HostPlan) Len() int {
	n := 0
	for _, s := range h.segs {
		n += s.n
	}
	return n
}

// Families returns the families of the node's routes (the tables to read).
func (h HostPlan) Families() []route.Family {
	fams := make([]route.Family, len(h.segs))
	for i, s := range h.segs {
		fams[i] = s.fam
	}
	return fams
}

// indexOf returns the position in the node's plan of the plan's
// destination pos of family fi; false for the node's own pod CIDR and for a
// family the node gets no routes in.
func (h HostPlan) indexOf(fi, pos int) (int, bool) {
	off := 0
	for _, s := range h.segs {
		if famIndex(s.fam) != fi {
			off += s.n
			continue
		}
		switch {
		case pos < s.skip.start:
			return off + pos, true
		case pos < s.skip.end:
			return 0, false
		default:
			return off + pos - (s.skip.end - s.skip.start), true
		}
	}
	return 0, false
}

// Route returns the k-th route of the node's plan, 0 <= k < Len().
func (h HostPlan) Route(k int) route.Route {
	d, fam := h.dest(k)
	return d.route(h.plan.Protocol, h.plan.Metric[famIndex(fam)], h.plan.Table)
}

// overlapping returns the position in the node's plan of a planned
// destination that dst covers or is covered by, without being equal. Pod
// CIDRs are disjoint, so at most one covers dst, and the ones dst covers
// are adjacent in address order.
func (h HostPlan) overlapping(dst netip.Prefix) (int, bool) {
	if dst.Bits() == 0 {
		return 0, false // a default route covers everything; that is its job
	}
	fi := famIndex(route.FamilyOf(dst.Addr()))
	dests, sorted := h.plan.dests[fi], h.plan.sorted[fi]
	dst = dst.Masked()
	// The first destination at or after dst's start, and the one before it.
	i, _ := slices.BinarySearchFunc(sorted, dst.Addr(), func(pos int32, a netip.Addr) int { return dests[pos].cidr.Addr().Compare(a) })
	if i > 0 {
		if c := dests[sorted[i-1]].cidr; c.Bits() < dst.Bits() && c.Contains(dst.Addr()) {
			return h.indexOf(fi, int(sorted[i-1])) // covers dst
		}
	}
	for ; i < len(sorted); i++ {
		c := dests[sorted[i]].cidr
		if !dst.Contains(c.Addr()) {
			break
		}
		if c == dst {
			continue
		}
		if k, ok := h.indexOf(fi, int(sorted[i])); ok {
			return k, true // dst covers it (or, at dst's start, it covers dst)
		}
	}
	return 0, false
}

// spec returns the k-th route rendered for `ip route replace`.
func (h HostPlan) spec(k int) []byte {
	d, _ := h.dest(k)
	return d.spec
}

func (h HostPlan) dest(k int) (*destination, route.Family) {
	for _, s := range h.segs {
		if k >= s.n {
			k -= s.n
			continue
		}
		if k >= s.skip.start {
			k += s.skip.end - s.skip.start
		}
		return &h.plan.dests[famIndex(s.fam)][k], s.fam
	}
	panic("orchestrator: route index out of range")
}

func (d *destination) route(proto route.Protocol, metric uint32, table string) route.Route {
	return route.Route{Dst: d.cidr, Gateway: d.via, Protocol: proto, Metric: metric, Table: table}
}
