package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

// Defaults of Config.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultResync   = 10 * time.Minute
)

// Config is what a watcher watches and how it reconciles. Zero values are
// defaults, as in orchestrator.Options.
type Config struct {
	// Cluster gives the Node objects, watched with an informer on its
	// selector; nil takes the node table from Inventory alone.
	Cluster *inventory.Cluster
	// Inventory is the inventory file, re-read when it changes: the node
	// table without Cluster, how to reach each node with it.
	Inventory string
	// InventoryOptions say how to read it (an Ansible inventory's
	// variable names). The group_vars/ and host_vars/ beside an Ansible
	// inventory are watched with it, under the same rule: read again
	// once a change has stood still for a poll.
	InventoryOptions inventory.Options
	AllowUnknown     bool          // Cluster: route inventory nodes the API does not know
	FilePoll         time.Duration // how often the inventory is looked at; default 1 s
	// Plan is how routes look and what else the diff deletes; the watcher
	// adds PruneDst for the pod CIDRs of nodes that left.
	Plan orchestrator.PlanOptions
	// Run is every round's options; Limit, Independent and Holder are
	// set per round.
	Run orchestrator.Options
	// NewHolder names each round in the locks and records it leaves (one
	// run ID per round); nil: rounds neither lock nor record.
	NewHolder func() orchestrator.Holder
	Connect   orchestrator.Connector
	// Check vets a node table when it is read (the rails). A table it
	// refuses as inventory.Validate would (a *ValidationError naming
	// nodes) is handled alike: the nodes that changed are held at their
	// last accepted entries; any other error keeps the last table until
	// the next change.
	Check func(nodes []inventory.Node) error
	// Debounce is the pause in node events a round waits for, so that a
	// burst is one round; a stream of events without one starts a round
	// debounceCap debounces after its first. Default 100 ms.
	Debounce time.Duration
	Resync   time.Duration // every node reconciled this often; default 10 min
	Observer Observer
	Logger   *slog.Logger
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Engine keeps the routes of a node table converged. Its state belongs to
// its Run goroutine; rounds run beside it, on disjoint sets of nodes, and
// hand their reports back to it.
type Engine struct {
	cfg   Config
	src   *source
	log   *slog.Logger
	obs   Observer
	nodes []inventory.Node // the table as last read
	in    map[string]bool  // its names
	held  map[string]bool  // nodes whose objects exist but are held out of it
	known map[string]bool  // in or held: the nodes observers keep

	// Per node: when it is due (absent: converged, nothing to do), the
	// oldest event it waits for, how many times in a row it failed,
	// whether it converged once, when the last round that converged it
	// started, and whether a round has it now.
	due       map[string]time.Time
	waiting   map[string]time.Time
	fails     map[string]int
	converged map[string]time.Time
	flying    map[string]bool
	// noSFTP: the nodes whose missing SFTP server was logged (once per
	// node, not per round), until one is found with one again or leaves.
	noSFTP map[string]bool
	// Pod CIDRs no node owns any more, and since when: their routes are
	// deleted wherever found until every node converged after that.
	gone map[netip.Prefix]time.Time
	// lost are the nodes still in the table that lost pod CIDRs (and
	// gained none) in a read not yet confirmed: held at their last
	// entry, as a file read half written would have them lose.
	lost map[string]lostCIDRs

	done     chan *flight  // rounds hand their reports back
	nodeDone chan nodeDone // and each node as soon as it is settled
	flights  int           // rounds running
	retryAt  time.Time     // when the retry timer fires; zero: not set
	now      func() time.Time
}

// flight is one round: what it was started with and what came of it.
type flight struct {
	reason  string
	started time.Time
	nodes   map[string]bool
	oldest  time.Time       // the oldest event its nodes waited for
	settled map[string]bool // its nodes handed back
	results []NodeResult
	rep     *orchestrator.Report
}

// nodeDone is one node of a round, settled and released.
type nodeDone struct {
	f   *flight
	rep orchestrator.NodeReport
}

// New returns an engine for cfg.
func New(cfg Config) *Engine {
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	e := &Engine{cfg: cfg, log: cfg.logger(), obs: cfg.Observer,
		due: map[string]time.Time{}, waiting: map[string]time.Time{}, fails: map[string]int{},
		converged: map[string]time.Time{}, in: map[string]bool{}, flying: map[string]bool{}, noSFTP: map[string]bool{}, gone: map[netip.Prefix]time.Time{}, lost: map[string]lostCIDRs{},
		done: make(chan *flight), nodeDone: make(chan nodeDone), now: time.Now}
	if e.obs == nil {
		e.obs = Observers{}
	}
	e.src = newSource(&e.cfg)
	return e
}

// Run watches until ctx is done: a full reconcile once the informer has
// synced, then a round per coalesced batch of events, retries of failed
// nodes with backoff, and a full resync every Config.Resync. Rounds run
// side by side on disjoint nodes, so a node that takes its connect
// timeout holds back no other. When ctx is done, the rounds in flight
// finish or roll back and release their locks (orchestrator.Run settles
// on its own), and Run returns nil once they all have.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.src.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	nodes, held, err := e.src.table(ctx)
	if err != nil {
		return err
	}
	e.held = held
	e.log.Info("watching", "nodes", len(nodes), "resync", e.cfg.Resync, "debounce", e.cfg.Debounce)
	e.setTable(nodes)
	e.all()
	e.start(ctx, "sync")

	resync := time.NewTicker(e.cfg.Resync)
	defer resync.Stop()
	debounce := stoppedTimer()
	retry := stoppedTimer()
	defer debounce.Stop()
	defer retry.Stop()
	pending := false    // debounce armed
	var burst time.Time // the first event of the pending round
	for {
		e.arm(retry)
		select {
		case <-ctx.Done():
			e.log.Info("stopping: waiting for the rounds in flight", "rounds", e.flights)
			for e.flights > 0 {
				select {
				case f := <-e.done:
					e.finish(ctx, f)
				case d := <-e.nodeDone:
					e.settleNode(ctx, d.f, &d.rep)
				}
			}
			e.log.Info("watch stopped")
			return nil
		case f := <-e.done:
			e.finish(ctx, f)
		case d := <-e.nodeDone:
			e.settleNode(ctx, d.f, &d.rep) // the retry timer takes it if due again
		case <-e.src.kick:
			now := e.now()
			if !pending {
				burst, pending = now, true
			}
			debounce.Reset(min(e.cfg.Debounce, burst.Add(debounceCap*e.cfg.Debounce).Sub(now)))
		case <-debounce.C:
			pending = false
			e.refresh(ctx)
			e.start(ctx, "event")
		case <-resync.C:
			e.src.forgive() // nodes held out as unroutable are tried again
			e.all()
			e.start(ctx, "resync")
		case <-retry.C:
			e.retryAt = time.Time{}
			e.start(ctx, "retry")
		}
	}
}

// debounceCap bounds how long a stream of events with no pause in it
// holds its round back, in debounces.
const debounceCap = 10

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// arm sets the retry timer to the earliest node due that no round has,
// but no sooner than a debounce from now: nodes handed back one by one
// and due again (an event came while a round had them) make one round,
// not one each. A timer already set soon enough is left alone, so a
// stream of such nodes cannot keep pushing it back.
func (e *Engine) arm(t *time.Timer) {
	var first time.Time
	for n, at := range e.due {
		if !e.flying[n] && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	if first.IsZero() {
		t.Stop()
		e.retryAt = time.Time{}
		return
	}
	first = later(first, e.now().Add(e.cfg.Debounce))
	if !e.retryAt.IsZero() && !e.retryAt.After(first) {
		return
	}
	t.Stop()
	t.Reset(first.Sub(e.now()))
	e.retryAt = first
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// refresh reads the node table again and marks the nodes its change
// affects due now. When the inventory changed, how nodes are reached may
// have: every node waiting out a backoff is due now too.
func (e *Engine) refresh(ctx context.Context) {
	at, fileChanged := e.src.take()
	nodes, held, err := e.src.table(ctx)
	if err != nil {
		e.log.Error("failed to read the node table; waiting for the next change", "err", err)
		return
	}
	nodes = e.holdLost(nodes)
	c := Diff(e.nodes, nodes)
	// A node held out of the table is not gone: its pod CIDR is not
	// pruned anywhere, and the observers keep it.
	heldCIDRs := map[netip.Prefix]bool{}
	for i := range e.nodes {
		if held[e.nodes[i].Name] {
			for _, p := range e.nodes[i].PodCIDRs {
				heldCIDRs[p] = true
			}
		}
	}
	e.held = held
	e.setTable(nodes)
	now := e.now()
	for _, p := range c.Gone {
		if !heldCIDRs[p] {
			e.gone[p] = now
		}
	}
	if fileChanged {
		for n, due := range e.due {
			if due.After(now) {
				e.due[n] = now
				delete(e.fails, n)
			}
		}
	}
	if c.Empty() {
		return
	}
	if at.IsZero() {
		at = now
	}
	changed := map[string]bool{}
	for _, n := range c.Changed {
		changed[n] = true
	}
	for _, n := range c.Affected {
		if !changed[n] && e.fails[n] > 0 && e.due[n].After(now) {
			// Waiting out a backoff for a failure of its own: another
			// node's change (a flapping kubelet's) is no reason to try
			// it sooner. Its retry plans the table as it is then.
			continue
		}
		e.due[n] = now
		delete(e.fails, n) // an event is worth trying at once
		if w, ok := e.waiting[n]; !ok || at.Before(w) {
			e.waiting[n] = at
		}
	}
	e.log.Info("nodes changed", "affected", len(c.Affected), "gone", len(c.Gone))
}

// lostCIDRs is a node seen losing pod CIDRs: when, and at which read of
// the inventory.
type lostCIDRs struct {
	at   time.Time
	read int
}

// confirmAfter is how long after a node is first seen losing pod CIDRs
// a read must still say so before routes to them are deleted: the
// inventory's settle (two polls), and at least a second.
func (e *Engine) confirmAfter() time.Duration {
	poll := e.cfg.FilePoll
	if poll <= 0 {
		poll = time.Second
	}
	return max(2*poll, time.Second)
}

// holdLost keeps a node that is still in the table but lost pod CIDRs
// (gained none) at its last routing entry until a later read, at least
// confirmAfter on, says the same: a host_vars file read while a git pull
// or an editor had it empty would otherwise take the node for one with
// no pods, and every node's routes to them would be deleted. A node that
// really lost its CIDR loses its routes a little later; the log says
// which and why.
func (e *Engine) holdLost(nodes []inventory.Node) []inventory.Node {
	before := make(map[string]*inventory.Node, len(e.nodes))
	for i := range e.nodes {
		before[e.nodes[i].Name] = &e.nodes[i]
	}
	now, reads := e.now(), e.src.readCount()
	// A CIDR another node now has moved: that is no read cut short.
	var owned []netip.Prefix
	for i := range nodes {
		owned = append(owned, nodes[i].PodCIDRs...)
	}
	moved := func(o, n *inventory.Node) bool {
		return slices.ContainsFunc(o.PodCIDRs, func(p netip.Prefix) bool {
			return !slices.Contains(n.PodCIDRs, p) && slices.ContainsFunc(owned, p.Overlaps)
		})
	}
	seen := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		seen[n.Name] = true
		o, ok := before[n.Name]
		if !ok || !lostOnly(o.PodCIDRs, n.PodCIDRs) || moved(o, n) {
			if _, was := e.lost[n.Name]; was {
				delete(e.lost, n.Name)
				e.log.Info("node has its pod CIDRs again; nothing deleted", "node", n.Name)
			}
			continue
		}
		l, was := e.lost[n.Name]
		if was && now.Sub(l.at) >= e.confirmAfter() && (e.cfg.Inventory == "" || reads > l.read) {
			delete(e.lost, n.Name)
			e.log.Warn("node lost pod CIDRs, read again to confirm: deleting the routes to them", "node", n.Name, "pod_cidrs", prefixes(n.PodCIDRs), "were", prefixes(o.PodCIDRs))
			continue
		}
		if !was {
			e.lost[n.Name] = lostCIDRs{at: now, read: reads}
			e.log.Warn("node still in the table lost pod CIDRs: kept as it was until a read confirms it", "node", n.Name, "pod_cidrs", prefixes(n.PodCIDRs), "were", prefixes(o.PodCIDRs), "confirm_in", e.confirmAfter())
			e.src.recheck(e.confirmAfter())
		}
		n.PodCIDRs, n.InternalIPs = slices.Clone(o.PodCIDRs), slices.Clone(o.InternalIPs)
	}
	for n := range e.lost {
		if !seen[n] {
			delete(e.lost, n)
		}
	}
	return nodes
}

// lostOnly reports whether going from old to new loses pod CIDRs and
// gains none.
func lostOnly(old, new []netip.Prefix) bool {
	if len(new) >= len(old) {
		return false
	}
	for _, p := range new {
		if !slices.Contains(old, p) {
			return false
		}
	}
	return true
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// setTable takes a new node table: nodes no longer in it are forgotten,
// the observers told of those whose Node objects are gone (not of those
// held out), and pod CIDRs owned again are no longer pruned.
func (e *Engine) setTable(nodes []inventory.Node) {
	in := make(map[string]bool, len(nodes))
	for i := range nodes {
		in[nodes[i].Name] = true
		for _, c := range nodes[i].PodCIDRs {
			delete(e.gone, c)
		}
	}
	known := maps.Clone(in)
	maps.Copy(known, e.held)
	for n := range e.known {
		if !known[n] {
			if f, ok := e.obs.(Forgetter); ok {
				f.Forget(n)
			}
		}
	}
	for n := range e.in {
		if !in[n] {
			delete(e.due, n)
			delete(e.waiting, n)
			delete(e.fails, n)
			delete(e.converged, n)
			delete(e.noSFTP, n)
		}
	}
	e.nodes, e.in, e.known = nodes, in, known
}

// all marks every node due now.
func (e *Engine) all() {
	now := e.now()
	for i := range e.nodes {
		e.due[e.nodes[i].Name] = now
	}
}

// start starts a round on the nodes due that no round has, with one
// orchestrator run limited to them.
func (e *Engine) start(ctx context.Context, reason string) {
	if ctx.Err() != nil {
		return
	}
	now := e.now()
	limit := map[string]bool{}
	for n, at := range e.due {
		if !at.After(now) && !e.flying[n] {
			limit[n] = true
		}
	}
	if len(limit) == 0 {
		return
	}
	po := e.cfg.Plan
	if len(e.gone) > 0 {
		gone := maps.Clone(e.gone) // the round reads it beside this goroutine
		po.PruneDst = func(dst netip.Prefix) bool { _, ok := gone[dst]; return ok }
	}
	plan := orchestrator.NewPlanWith(e.nodes, po)
	opts := e.cfg.Run
	opts.Limit = func(n string) bool { return limit[n] }
	// Each node on its own: a node that takes its connect timeout, or
	// fails, holds back and stops no other node of the round.
	opts.Independent = true
	opts.CompactRecords = true
	if e.cfg.NewHolder != nil {
		opts.Holder = e.cfg.NewHolder()
	}
	for n := range limit {
		e.flying[n] = true
	}
	f := &flight{reason: reason, started: now, nodes: limit, settled: map[string]bool{}}
	managed := 0
	for i := range plan.Nodes {
		managed += plan.Host(i).Len()
	}
	e.obs.Managed(managed)
	e.log.Info("round", "reason", reason, "nodes", len(limit), "run", opts.Holder.RunID)
	for n := range limit {
		if w, ok := e.waiting[n]; ok && (f.oldest.IsZero() || w.Before(f.oldest)) {
			f.oldest = w
		}
	}
	// Each node is handed back as soon as it is settled: an event for it
	// need not wait for the round's slowest node.
	opts.NodeDone = func(r orchestrator.NodeReport) { e.nodeDone <- nodeDone{f, r} }
	e.flights++
	go func() {
		f.rep = orchestrator.Run(ctx, plan, e.cfg.Connect, opts)
		e.done <- f
	}()
}

// finish takes a round's report once every node of it is settled:
// settles any node not handed back on its own, and reports the round.
func (e *Engine) finish(ctx context.Context, f *flight) {
	e.flights--
	for i := range f.rep.Nodes {
		if n := &f.rep.Nodes[i]; f.nodes[n.Name] && !f.settled[n.Name] && n.Outcome != orchestrator.Excluded {
			e.settleNode(ctx, f, n)
		}
	}
	now := e.now()
	r := Round{Reason: f.reason, Started: f.started, Took: now.Sub(f.started), Nodes: f.results}
	if !f.oldest.IsZero() {
		r.EventAge = now.Sub(f.oldest)
	}
	e.forgetGone()
	e.logRound(r, f.rep)
	e.obs.RoundDone(r)
}

// forgetGone stops pruning a departed node's pod CIDR once every node
// converged in a round started after it left (none holds a route to it),
// or a day after it left: a node that never converges (powered off, its
// Node object kept) must not pin every departure for ever. Until then a
// node that converges prunes it.
func (e *Engine) forgetGone() {
	now := e.now()
	for p, at := range e.gone {
		all := now.Sub(at) > goneFor
		for i := 0; i < len(e.nodes) && !all; i++ {
			if c, ok := e.converged[e.nodes[i].Name]; !ok || !c.After(at) {
				break
			}
			all = i == len(e.nodes)-1
		}
		if all || len(e.nodes) == 0 {
			delete(e.gone, p)
		}
	}
}

// goneFor is how long a departed node's pod CIDR is pruned at most.
const goneFor = 24 * time.Hour

// fail counts a failure of node n and returns how many in a row.
func (e *Engine) fail(n string) int {
	e.fails[n]++
	return e.fails[n]
}

// settleNode sorts one node of a round: converged (no longer due), failed
// or unreachable (due after its backoff), or pending (locked by another
// run, or cut short by a stop). A node an event marked due while the
// round had it stays due for the next round, which starts at once.
func (e *Engine) settleNode(ctx context.Context, f *flight, n *orchestrator.NodeReport) {
	f.settled[n.Name] = true
	delete(e.flying, n.Name)
	if !e.inTable(n.Name) {
		delete(e.due, n.Name) // it left while the round had it
		delete(e.fails, n.Name)
		delete(e.noSFTP, n.Name)
		return
	}
	e.warnNoSFTP(n)
	now := e.now()
	again := e.due[n.Name].After(f.started)
	nr := NodeResult{Name: n.Name, Added: n.Added(), Changed: n.Replaced(), Removed: n.Removed(), Err: n.Err}
	defer func() { f.results = append(f.results, nr) }()
	if ctx.Err() != nil && interrupted(n) {
		// Stopping cut it short, before or after a change undone:
		// nothing is known against it, and nothing to retry.
		nr.State, nr.Err = Pending, nil
		return
	}
	retryAt := func() {
		if !again {
			e.due[n.Name] = now.Add(backoff(e.fail(n.Name)))
		}
	}
	switch n.Outcome {
	case orchestrator.InSync, orchestrator.Changed:
		nr.State = Converged
		_, before := e.converged[n.Name]
		nr.Repaired = f.reason == "resync" && n.Outcome == orchestrator.Changed && before
		delete(e.fails, n.Name)
		e.converged[n.Name] = f.started
		if !again {
			delete(e.due, n.Name)
			delete(e.waiting, n.Name)
		}
	case orchestrator.Skipped:
		nr.State = Pending
		retryAt()
	case orchestrator.Unreachable:
		nr.State = Unreachable
		retryAt()
	case orchestrator.Refused:
		if ue, ok := errors.AsType[*orchestrator.UnconnectedError](n.Err); ok {
			if bad := e.nodesAt(ue.Hops, n.Name); len(bad) > 0 {
				// What is wrong is the nodes this one cannot route to
				// (an InternalIP on another segment, a Node object
				// lying), not this node: they are held out, and this
				// one is taken again without them.
				e.log.Warn("nodes held out: other nodes cannot route to their InternalIPs directly", "nodes", strings.Join(bad, ","), "seen_from", n.Name, "err", n.Err)
				e.src.reject(bad)
				e.src.event()
				nr.State = Pending
				if !again {
					e.due[n.Name] = now.Add(2 * e.cfg.Debounce) // after the table without them
				}
				break
			}
		}
		nr.State = Failed
		retryAt()
	case orchestrator.Failed:
		if _, locked := errors.AsType[*host.LockedError](n.Err); locked {
			// Another run has it (a one-shot routepush, a watcher
			// that lost the lease): nothing was tried, nothing
			// failed. Taken again after the backoff.
			nr.State = Pending
			retryAt()
			break
		}
		fallthrough
	default:
		nr.State = Failed
		if nr.Err == nil && n.RollbackErr != nil {
			nr.Err = n.RollbackErr
		}
		if nr.Err == nil {
			nr.Err = fmt.Errorf("%s: %s", n.Name, n.Outcome)
		}
		retryAt()
	}
}

// warnNoSFTP logs, once per node and not once per round, that a node has
// no SFTP server and so neither lock nor run record (or with --persist,
// is refused: that is its error, retried as any). A node found with one
// again (locked, and converged) is warned of anew if it loses it.
func (e *Engine) warnNoSFTP(n *orchestrator.NodeReport) {
	switch warn := n.NoSFTPWarning(); {
	case warn != "" && !e.noSFTP[n.Name]:
		e.noSFTP[n.Name] = true
		e.log.Warn(warn, "node", n.Name)
	case n.NoSFTP == nil && (n.Outcome == orchestrator.InSync || n.Outcome == orchestrator.Changed):
		delete(e.noSFTP, n.Name)
	}
}

// nodesAt names the nodes of the table with an internal IP among addrs,
// but self.
func (e *Engine) nodesAt(addrs []netip.Addr, self string) []string {
	var names []string
	for i := range e.nodes {
		n := &e.nodes[i]
		if n.Name != self && slices.ContainsFunc(n.InternalIPs, func(a netip.Addr) bool { return slices.Contains(addrs, a) }) {
			names = append(names, n.Name)
		}
	}
	return names
}

// interrupted reports whether a node a stopping round cut short is as it
// was before the round, or converged: not a failure to report.
func interrupted(n *orchestrator.NodeReport) bool {
	switch n.Outcome {
	case orchestrator.InSync, orchestrator.Changed, orchestrator.RollbackFailed, orchestrator.Unknown:
		return false
	}
	return n.RollbackErr == nil
}

// inTable reports whether node n is in the table as last read.
func (e *Engine) inTable(n string) bool { return e.in[n] }

// logRound logs a round's outcome, and each node that did not converge.
func (e *Engine) logRound(r Round, rep *orchestrator.Report) {
	counts := map[NodeState]int{}
	repaired, added, removed := 0, 0, 0
	for _, n := range r.Nodes {
		counts[n.State]++
		added += n.Added + n.Changed
		removed += n.Removed
		if n.Repaired {
			repaired++
		}
		if n.State == Failed || n.State == Unreachable || n.State == Pending && n.Err != nil {
			e.log.Warn("node not converged; retrying", "node", n.Name, "state", n.State, "retry_in", e.due[n.Name].Sub(e.now()).Round(time.Millisecond), "err", n.Err)
		}
	}
	args := []any{"reason", r.Reason, "nodes", len(r.Nodes), "converged", counts[Converged],
		"failed", counts[Failed], "unreachable", counts[Unreachable], "pending", counts[Pending],
		"routes_added", added, "routes_removed", removed, "repaired", repaired, "took", r.Took.Round(time.Millisecond)}
	if r.EventAge > 0 {
		args = append(args, "event_age", r.EventAge.Round(time.Millisecond))
	}
	if rep.Err != nil {
		args = append(args, "err", rep.Err)
	}
	e.log.Info("round done", args...)
}
