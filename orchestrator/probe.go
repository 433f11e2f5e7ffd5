package orchestrator

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// The pod-to-pod probe (Options.Probe): once every node has its routes,
// each node pings, from its own address in its pod CIDR, the address of
// K other nodes in theirs, over the connections the run holds. Routes
// that verified can still carry nothing (a next hop that answers no ARP,
// a firewall, the fabric); the probe finds out, and names what
// preflight found on either end as the likely cause.
//
// A node's own pod address is local to it: the probe crosses the
// routes, the fabric and both nodes' input and output paths, not their
// forwarding (preflight reads that).

// ProbeAll is Options.Probe for every pair of nodes.
const ProbeAll = -1

// probeCount is how many echo requests go to each address.
const probeCount = 3

// ProbeResult is one probed pair, in one family.
type ProbeResult struct {
	From, To       string // node names
	Family         route.Family
	Src, Dst       netip.Addr
	Sent, Received int
	// Err says why there is no count (the probe could not run, or ping
	// said something else); Cause, for a failed pair, what preflight
	// found on either node that explains it, or where to look.
	Err, Cause string
}

// Passed reports whether the pair answered: a reply came back, so the
// path carries traffic both ways. A reply lost of three is a lossy or
// busy path, not a broken one: counted in Received, not failed.
func (p *ProbeResult) Passed() bool { return p.Err == "" && p.Sent > 0 && p.Received > 0 }

// ProbeReport is the probe's part of a run.
type ProbeReport struct {
	K     int           // targets per node; ProbeAll for every pair
	Nodes []string      // the nodes probed, in the order the pairs were chosen
	Pairs []ProbeResult // by sender, in Nodes' order
	// Skipped says, per node, why it sent and got no probe (no address
	// in its pod CIDR, unreachable).
	Skipped map[string]string
}

// Counts returns how many pairs were probed, passed and failed.
func (p *ProbeReport) Counts() (pairs, passed, failed int) {
	for i := range p.Pairs {
		if p.Pairs[i].Passed() {
			passed++
		} else {
			failed++
		}
	}
	return len(p.Pairs), passed, failed
}

// ProbeFailed reports whether the probe ran and a pair did not answer
// (exit code 1; nothing is rolled back for it).
func (r *Report) ProbeFailed() bool {
	if r.Probe == nil {
		return false
	}
	_, _, failed := r.Probe.Counts()
	return failed > 0
}

// probeOrder is the order the probe rings nodes in: by a hash of their
// names, so that the same cluster is probed the same way every time, and
// a node's targets are not only its neighbours by name (one rack's).
func probeOrder(names []string) []int {
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	key := func(i int) [32]byte { return sha256.Sum256([]byte(names[i])) }
	slices.SortStableFunc(idx, func(a, b int) int {
		ka, kb := key(a), key(b)
		return cmp.Or(slices.Compare(ka[:], kb[:]), strings.Compare(names[a], names[b]))
	})
	return idx
}

// probeTargets are, for each position of order, the positions it probes:
// the next k along the ring (every node is probed by k others), or with
// ProbeAll every other.
func probeTargets(n, k int) [][]int {
	if k == ProbeAll || k > n-1 {
		k = n - 1
	}
	out := make([][]int, n)
	for p := range n {
		for d := 1; d <= k; d++ {
			out[p] = append(out[p], (p+d)%n)
		}
	}
	return out
}

// podAddress is a node's address in its own pod CIDR of a family, as its
// read found it (route.Facts): the first, preferring one on a bridge or
// other interface to loopback's. Invalid if it has none.
func podAddress(h HostPlan, f *route.Facts, fam route.Family) netip.Addr {
	if f == nil {
		return netip.Addr{}
	}
	var best netip.Addr
	for _, cidr := range h.Node().PodCIDRs {
		if famOf(cidr) != fam {
			continue
		}
		for _, a := range f.Addresses {
			if cidr.Contains(a.Prefix.Addr()) && (!best.IsValid() || a.Interface != "lo") {
				best = a.Prefix.Addr()
				if a.Interface != "lo" {
					return best
				}
			}
		}
	}
	return best
}

// probe is the run's probe phase: every node read and not failed sends
// its probes, all of them at once (a probe is a session and a few pings:
// the nodes do the work), over the connection the run holds, or a new
// one where the node waited without (parked, or let go of).
func (r *run) probe(ctx context.Context) {
	var senders []*nodeRun
	var names []string
	rep := &ProbeReport{K: r.opts.Probe, Skipped: map[string]string{}}
	for _, n := range r.active {
		switch n.rep.Outcome {
		case Changed, InSync, WouldChange:
		default:
			rep.Skipped[n.rep.Name] = string(n.rep.Outcome)
			continue
		}
		if !n.podAddrs[0].IsValid() && !n.podAddrs[1].IsValid() {
			rep.Skipped[n.rep.Name] = "no address in its pod CIDR"
			continue
		}
		senders = append(senders, n)
		names = append(names, n.rep.Name)
	}
	order := probeOrder(names)
	for _, i := range order {
		rep.Nodes = append(rep.Nodes, names[i])
	}
	targets := probeTargets(len(order), r.opts.Probe)
	results := make([][]ProbeResult, len(order))
	r.opts.Logger.Info("probing pod to pod", "nodes", len(order), "per node", r.opts.Probe)
	// Every node at once: over the connections the run holds, a probe
	// costs the control host a session, and the nodes do the rest.
	connects := make(chan struct{}, r.opts.Concurrency)
	positions := make([]int, len(order))
	for p := range positions {
		positions[p] = p
	}
	each(ctx, positions, max(len(order), 1), func(ctx context.Context, p int) {
		var to []*nodeRun
		for _, t := range targets[p] {
			to = append(to, senders[order[t]])
		}
		results[p] = senders[order[p]].probe(ctx, to, connects)
	})
	for _, rs := range results {
		rep.Pairs = append(rep.Pairs, rs...)
	}
	byName := map[string]*NodeReport{}
	for _, n := range senders {
		byName[n.rep.Name] = n.rep
	}
	for i := range rep.Pairs {
		if !rep.Pairs[i].Passed() {
			rep.Pairs[i].Cause = probeCause(&rep.Pairs[i], byName)
		}
	}
	r.rep.Probe = rep
}

// probe sends this node's probes to each of to, per family both hold a
// pod address in.
func (n *nodeRun) probe(ctx context.Context, to []*nodeRun, connects chan struct{}) []ProbeResult {
	var out []ProbeResult
	for fi, fam := range []route.Family{route.IPv4, route.IPv6} {
		src := n.podAddrs[fi]
		if !src.IsValid() {
			continue
		}
		var dsts []netip.Addr
		var peers []*nodeRun
		for _, t := range to {
			if t.podAddrs[fi].IsValid() {
				dsts, peers = append(dsts, t.podAddrs[fi]), append(peers, t)
			}
		}
		if len(dsts) == 0 {
			continue
		}
		res := make([]ProbeResult, len(dsts))
		for k := range res {
			res[k] = ProbeResult{From: n.rep.Name, To: peers[k].rep.Name, Family: fam, Src: src, Dst: dsts[k]}
		}
		h, done, err := n.probeHost(ctx, connects)
		if err == nil {
			var got []host.ProbeResult
			got, err = h.Probe(ctx, src, dsts, probeCount)
			done()
			if err == nil && len(got) != len(dsts) {
				err = fmt.Errorf("%s: %d probe results for %d addresses", n.rep.Name, len(got), len(dsts))
			}
			for k := range got {
				res[k].Sent, res[k].Received, res[k].Err = got[k].Sent, got[k].Received, got[k].Err
			}
		}
		if err != nil {
			for k := range res {
				res[k].Err = err.Error() // its node's words escaped where they are
			}
		}
		out = append(out, res...)
	}
	return out
}

// probeHost is the node's connection for its probes: the one the run
// holds, or a new one, closed by done. New ones are made no more than
// connects' capacity at once, as reads are.
func (n *nodeRun) probeHost(ctx context.Context, connects chan struct{}) (Host, func(), error) {
	if n.host != nil {
		return n.host, func() {}, nil
	}
	select {
	case connects <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%s: %w", n.rep.Name, context.Cause(ctx))
	}
	h, err := n.connect(ctx, n.plan.Node())
	if err != nil {
		<-connects
		return nil, nil, err
	}
	return h, func() { h.Close(); <-connects }, nil
}

// probeCause names, for a failed pair, what preflight found on either
// end in its family, or where to look when it found nothing.
func probeCause(p *ProbeResult, nodes map[string]*NodeReport) string {
	var whys []string
	for _, name := range []string{p.From, p.To} {
		for _, f := range nodes[name].Preflight {
			if f.Problem() && f.Family == p.Family {
				whys = append(whys, name+": "+string(f.Kind))
			}
		}
	}
	if len(whys) > 0 {
		return strings.Join(whys, ", ")
	}
	if p.Err != "" {
		return "the probe did not run"
	}
	return "nothing preflight reads: look at the path between them (the next hop's ARP, INPUT or OUTPUT rules, the fabric)"
}

// WriteProbe prints the probe's failed pairs, with their likely cause, and
// with matrix (a terminal, up to MatrixNodes nodes) every pair's result.
func (r *Report) WriteProbe(w io.Writer, matrix bool) {
	p := r.Probe
	if p == nil {
		return
	}
	_, _, failed := p.Counts()
	if failed > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROBE FAILED\tTO\tFAMILY\tREPLIES\tLIKELY CAUSE")
		for i := range p.Pairs {
			q := &p.Pairs[i]
			if q.Passed() {
				continue
			}
			replies := fmt.Sprintf("%d/%d", q.Received, q.Sent)
			if q.Err != "" {
				replies = oneLine(q.Err)
			}
			fmt.Fprintf(tw, "%s (%s)\t%s (%s)\t%s\t%s\t%s\n", q.From, q.Src, q.To, q.Dst, q.Family, replies, oneLine(q.Cause))
		}
		tw.Flush()
	}
	for _, name := range slices.Sorted(maps.Keys(p.Skipped)) {
		fmt.Fprintf(w, "note: %s was not probed: %s\n", name, oneLine(p.Skipped[name]))
	}
	if matrix && len(p.Nodes) > 1 && len(p.Nodes) <= MatrixNodes {
		writeProbeMatrix(w, p)
	}
}

// MatrixNodes is the most nodes the probe's matrix is printed for.
const MatrixNodes = 30

// writeProbeMatrix prints a row per sender and a column per target:
// "." every reply came, "X" not, blank not probed.
func writeProbeMatrix(w io.Writer, p *ProbeReport) {
	at := map[string]int{}
	for i, n := range p.Nodes {
		at[n] = i
	}
	cell := make([][]byte, len(p.Nodes))
	for i := range cell {
		cell[i] = []byte(strings.Repeat(" ", len(p.Nodes)))
		cell[i][i] = '-'
	}
	for i := range p.Pairs {
		q := &p.Pairs[i]
		f, t := at[q.From], at[q.To]
		switch {
		case !q.Passed():
			cell[f][t] = 'X'
		case cell[f][t] != 'X':
			cell[f][t] = '.'
		}
	}
	width := 0
	for _, n := range p.Nodes {
		width = max(width, len(n))
	}
	fmt.Fprintf(w, "probe matrix (row: from, column: to; . answered, X did not, blank not probed):\n")
	var head strings.Builder
	for i := range p.Nodes {
		fmt.Fprintf(&head, "%d", (i+1)%10)
	}
	fmt.Fprintf(w, "  %*s  %s\n", width+3, "", head.String())
	for i, n := range p.Nodes {
		fmt.Fprintf(w, "  %2d %-*s  %s\n", i+1, width, n, cell[i])
	}
}
