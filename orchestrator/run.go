package orchestrator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Run executes a plan: read every node's table and diff it; unless Check,
// apply the differences and verify them; and if any node fails, restore the
// changed nodes from their snapshots. A node that cannot be read stops the
// run before anything is changed anywhere.
//
// It goes through four phases (read, decide, apply, settle), each a method
// of run below; settle runs however the others end.
func Run(ctx context.Context, plan *Plan, connect Connector, opts Options) *Report {
	r := newRun(plan, connect, opts.withDefaults())
	if r.opts.Independent {
		r.independent(ctx)
		return r.rep
	}
	defer r.settle(ctx)
	if r.read(ctx) && r.decide(ctx) {
		r.apply(ctx)
		r.converged = ctx.Err() == nil && !r.rep.nodeFailed()
	}
	if r.opts.Probe != 0 && ctx.Err() == nil && !r.rep.nodeFailed() {
		// After apply: what an interrupt here stops is the probe alone,
		// which changed nothing; settle rolls nothing back for it.
		r.probe(ctx)
	}
	return r.rep
}

// run is one run of a plan, through its phases.
type run struct {
	opts    Options // with defaults
	connect Connector
	rep     *Report
	nodes   []*nodeRun // every node of the plan, in its order
	active  []*nodeRun // the nodes --limit leaves in
	start   time.Time
	// idle counts the nodes that took a place to wait with their
	// connection open (keepOpen), up to MaxIdleConnections. A place is
	// kept until the run ends: the count only grows.
	idle atomic.Int64
	// idleFiles counts the nodes, among those, that also wait with their
	// SFTP session open (keepFiles).
	idleFiles atomic.Int64
	// doomed: a node failed or was refused at its read, or more than
	// --max-unreachable were out of reach, so the run will change
	// nothing (decide).
	doomed      atomic.Bool
	unreachable atomic.Int64
	// converged: apply finished with every node verified and no
	// interrupt. Nothing after it (the probe) is a reason to roll back.
	converged bool
}

// newRun sets up every node's report: skipped until read, or excluded by
// --limit, which leaves it uncontacted.
func newRun(plan *Plan, connect Connector, opts Options) *run {
	r := &run{opts: opts, connect: connect, start: time.Now(),
		rep:   &Report{Check: opts.Check, Plan: plan, Nodes: make([]NodeReport, len(plan.Nodes))},
		nodes: make([]*nodeRun, len(plan.Nodes)),
	}
	// Connections are closed as soon as a node is done with: an SSH
	// connection keeps a buffer the size of the largest packet it ever
	// carried, and a thousand of them idle until the run ends would be
	// most of routepush's memory. Rolling a node back connects again.
	for i := range r.nodes {
		r.rep.Nodes[i] = NodeReport{Name: plan.Nodes[i].Name, Outcome: Skipped}
		r.nodes[i] = &nodeRun{plan: plan.Host(i), rep: &r.rep.Nodes[i], opts: &r.opts, connect: connect,
			lockFirst: opts.Persist || opts.TakeOver != nil || opts.Independent}
		if opts.Limit != nil && !opts.Limit(plan.Nodes[i].Name) {
			r.rep.Nodes[i].Outcome = Excluded
			continue
		}
		r.active = append(r.active, r.nodes[i])
	}
	return r
}

// read is the first phase: connect to every active node, lock it when the
// run journals, read its tables and diff them. It returns false when a
// node locked alone (see below) could not be.
func (r *run) read(ctx context.Context) bool {
	log, pr := r.opts.Logger, r.opts.Progress // pr is nil-safe: a run without a display
	log.Info("reading route tables", "nodes", len(r.active), "concurrency", r.opts.Concurrency)
	if pr != nil {
		pr.total.Store(int64(len(r.active)))
	}
	rest := r.active
	if r.opts.journaling() && len(r.active) > 1 {
		// Two runs started at once would each lock half of the nodes and
		// both give up. So nodes are locked alone, in name order, until
		// one is: whichever run gets it goes on, the other stops there.
		// A node that takes no lock (no SFTP server, or unreachable)
		// stops no other run, so the next by name is locked alone too;
		// locking only the first by name let two runs both pass a first
		// node without SFTP and deadlock each other on the rest.
		byName := slices.Clone(r.active)
		slices.SortStableFunc(byName, func(a, b *nodeRun) int { return strings.Compare(a.rep.Name, b.rep.Name) })
		alone := map[*nodeRun]bool{}
		for _, n := range byName {
			alone[n] = true
			n.lockFirst = true
			r.readNode(ctx, n)
			if n.rep.Outcome == Failed {
				log.Warn("not changing anything: a node locked alone, first, could not be locked or read", "node", n.rep.Name)
				return false
			}
			if n.rep.NoSFTP == nil && n.rep.Outcome != Unreachable {
				break // it took this run's lock
			}
		}
		rest = slices.DeleteFunc(slices.Clone(r.active), func(n *nodeRun) bool { return alone[n] })
	}
	each(ctx, rest, r.opts.Concurrency, r.readNode)
	return true
}

// readNode reads one node (nodeRun.prepare), and lets go of it at once
// when there is nothing to apply there, and so nothing to roll back.
func (r *run) readNode(ctx context.Context, n *nodeRun) {
	pr := r.opts.Progress
	pr.begin(n.rep.Name)
	n.prepare(ctx)
	switch n.rep.Outcome {
	case Failed, Refused:
		pr.end(n.rep.Name, stepFailed)
	case Unreachable:
		pr.end(n.rep.Name, stepLeft)
	default:
		pr.end(n.rep.Name, stepRead)
	}
	switch o := n.rep.Outcome; {
	case o == Failed || o == Refused:
		// The run will change nothing (decide): let go of the node now,
		// as settle would, rather than hold its connection until then.
		r.doomed.Store(true)
		r.settling(context.WithoutCancel(ctx), n.release)
	case o == Unreachable:
		if r.unreachable.Add(1) > int64(r.opts.MaxUnreachable) {
			r.doomed.Store(true)
		}
	case (r.opts.Check || o == InSync) && r.opts.Probe != 0 && !r.doomed.Load() && r.keepOpen():
		// Its connection is held for the probe, which runs over it
		// (settle closes it); not its lock: nothing will change there.
		n.unlock(ctx)
	case r.opts.Check || o == InSync:
		n.release(ctx)
	case o != WouldChange || r.opts.Independent:
	case ctx.Err() != nil || r.doomed.Load():
		// Nothing will be applied anywhere (decide): let go of the node
		// while its connection is open, rather than park it and connect
		// again only to release it.
		r.settling(context.WithoutCancel(ctx), n.release)
	case !r.keepOpen():
		n.unkept = true
		n.park() // until its apply
	case n.rep.NoSFTP == nil && !r.keepFiles():
		n.filesUnkept = true
		n.closeFiles() // until its apply
	}
}

// keepOpen takes one of the MaxIdleConnections places for a node to wait
// with its connection open, and says whether there was one left.
func (r *run) keepOpen() bool { return takePlace(&r.idle, r.opts.MaxIdleConnections) }

// takePlace takes one of limit places, taken is how many are, and says
// whether there was one left.
func takePlace(taken *atomic.Int64, limit int) bool {
	if taken.Add(1) <= int64(limit) {
		return true
	}
	taken.Add(-1)
	return false
}

// idleFilesShare: one in this many of the nodes that wait for others with
// their connection open (MaxIdleConnections) also keep their SFTP session
// open (keepFiles), 200 with the default. Each saves its node two
// sftp-server starts (after its record and after its verify) and costs
// routepush about 20 kB (three goroutines) on top of its connection's
// 95 kB. On the lab, keeping every session at 200 nodes took 15-25 % off
// an apply for no more peak memory (GOGC 15); at 1,000 nodes it made the
// peak 16 MB larger than closing them did (bench/RESULTS.md, issue 21).
// Past its place a node closes its session whenever it waits.
const idleFilesShare = 5

// keepFiles takes one of the places for a node to wait with its SFTP
// session open (idleFilesShare), and says whether there was one left.
// Like a connection's place, it is kept until the run ends.
func (r *run) keepFiles() bool {
	return takePlace(&r.idleFiles, r.opts.MaxIdleConnections/idleFilesShare)
}

// decide is the second phase: it applies the --max-unreachable policy and
// says whether the run may change anything: not after an interrupt, not if
// any node failed or was refused, never with --check.
func (r *run) decide(ctx context.Context) bool {
	log := r.opts.Logger
	var unreachable []string
	for _, n := range r.nodes {
		if n.rep.Outcome == Unreachable {
			unreachable = append(unreachable, n.rep.Name)
		}
	}
	if len(unreachable) > r.opts.MaxUnreachable {
		for _, n := range r.nodes {
			if n.rep.Outcome == Unreachable {
				n.rep.Outcome = Failed
			}
		}
	} else if len(unreachable) > 0 {
		log.Warn("leaving out unreachable nodes (--max-unreachable)", "nodes", strings.Join(unreachable, ","), "max", r.opts.MaxUnreachable)
	}
	switch {
	case ctx.Err() != nil:
		log.Warn("not changing anything: the run was interrupted while reading")
		return false
	case r.rep.Failed():
		log.Warn("not changing anything: some nodes could not be read or were refused")
		return false
	}
	return !r.opts.Check
}

// apply is the third phase: apply and verify every node that differs from
// its plan, the --canary nodes first; the first failure stops the nodes
// not yet begun.
func (r *run) apply(ctx context.Context) {
	var pending []*nodeRun
	for _, n := range r.nodes {
		if n.rep.Changes() {
			pending = append(pending, n)
		}
	}
	log := r.opts.Logger
	log.Info("applying routes", "nodes", len(pending))
	var stop atomic.Bool
	apply := func(ctx context.Context, n *nodeRun) { r.applyNode(ctx, n, &stop) }
	canary := min(r.opts.Canary, len(pending))
	if canary <= 0 || canary == len(pending) {
		each(ctx, pending, r.opts.Concurrency, apply)
		return
	}
	log.Info("canary nodes first", "nodes", canary)
	each(ctx, pending[:canary], r.opts.Concurrency, apply)
	if !stop.Load() {
		log.Info("canary nodes verified; applying the rest", "nodes", len(pending)-canary)
	}
	each(ctx, pending[canary:], r.opts.Concurrency, apply) // skipped if a canary failed
}

// applyNode applies one node's batch unless the run is stopping, and
// stops it if the node fails.
func (r *run) applyNode(ctx context.Context, n *nodeRun, stop *atomic.Bool) {
	if stop.Load() || ctx.Err() != nil {
		n.rep.Outcome = Skipped
		return
	}
	pr := r.opts.Progress
	pr.begin(n.rep.Name)
	if !n.apply(ctx) {
		pr.end(n.rep.Name, stepFailed)
		stop.Store(true)
		return
	}
	pr.end(n.rep.Name, stepVerified)
	switch { // until the run's outcome is final
	case n.unkept:
		n.park()
	case n.filesUnkept:
		n.closeFiles()
	}
}

// settle is the last phase, however the others ended: roll back what
// --rollback asks for if anything failed, then record how the run ended
// on each node still held and release it. It runs on a context of its
// own: an interrupt is often why there is anything to settle.
//
// Each node is rolled back and released in one turn, the nodes to roll
// back first: a node parked while it waited connects again for both,
// and is let go before the next, so that a failure at 5,000 nodes does
// not hold every parked node's connection at once.
func (r *run) settle(ctx context.Context) {
	sctx := context.WithoutCancel(ctx)
	if ctx.Err() != nil && r.rep.Err == nil {
		r.rep.Err = fmt.Errorf("run interrupted: %w", context.Cause(ctx))
	}
	undo := map[*nodeRun]bool{}
	if r.rep.nodeFailed() && !r.converged && r.opts.Rollback != RollbackNone && !r.opts.Check {
		undo = r.toRollBack()
	}
	// Every node still connected holds its lock until here, verified ones
	// included: the run's outcome is final only now.
	order := slices.Clone(r.nodes)
	slices.SortStableFunc(order, func(a, b *nodeRun) int {
		switch {
		case undo[a] == undo[b]:
			return 0
		case undo[a]:
			return -1
		}
		return 1
	})
	each(sctx, order, r.opts.Concurrency, func(ctx context.Context, n *nodeRun) {
		if undo[n] {
			r.settling(ctx, n.rollback)
		}
		r.settling(ctx, n.release)
	})
	r.rep.Duration = time.Since(r.start)
}

// settling runs part of a node's settle (its rollback, its release)
// within SettleTimeout from when it begins, rather than from when settle
// began: settle goes Concurrency nodes at a time, and one bound for all
// of them would run out on a large cluster (5,000 nodes, 50 at a time, on
// slow links) with the last nodes still locked; nor may a rollback that
// took most of its bound leave the release too little to unlock. All of
// settle is so bounded by twice SettleTimeout per Concurrency nodes; a
// second interrupt abandons it sooner.
func (r *run) settling(ctx context.Context, fn func(context.Context)) {
	sctx, cancel := context.WithTimeout(ctx, r.opts.SettleTimeout)
	defer cancel()
	fn(sctx)
}

// toRollBack is the set of nodes --rollback asks to restore after a
// failure: every node the run may have changed, or only the failed ones.
// Each goes through nodeRun.rollback, which undoes it as `routepush
// rollback` does (undoNode).
func (r *run) toRollBack() map[*nodeRun]bool {
	undo := map[*nodeRun]bool{}
	for _, n := range r.nodes {
		if n.rep.Outcome == Unknown {
			continue // out of reach: its error says how to restore it later
		}
		if n.touched && (r.opts.Rollback == RollbackAll || n.rep.Outcome == Failed) {
			undo[n] = true
		}
	}
	if len(undo) > 0 {
		r.opts.Logger.Warn("rolling back", "nodes", len(undo))
	}
	return undo
}

// independent runs every active node through all its phases on its own
// (Options.Independent): each holds a concurrency slot, its connection
// and its lock from its read to its release, and nothing it does
// changes what happens to another. An interrupt lets the nodes already
// applying finish (converged or rolled back), and starts no other.
func (r *run) independent(ctx context.Context) {
	r.opts.Logger.Info("reconciling nodes independently", "nodes", len(r.active), "concurrency", r.opts.Concurrency)
	each(ctx, r.active, r.opts.Concurrency, func(ctx context.Context, n *nodeRun) {
		r.readNode(ctx, n)
		// Only a node read, diffed and recorded with nothing against it:
		// a refused or failed one has changes too, and must get none.
		if n.rep.Outcome == WouldChange && ctx.Err() == nil && !r.opts.Check {
			// Once its batch is on its way, a node is let finish:
			// apply and verify are bounded per command, and a batch
			// abandoned mid-way may still reach ip after the rollback
			// read the table. An interrupt stops only what has not
			// begun.
			var stop atomic.Bool
			r.applyNode(context.WithoutCancel(ctx), n, &stop)
		}
		// Settling one node, on a context of its own as settle's.
		sctx := context.WithoutCancel(ctx)
		switch o := n.rep.Outcome; {
		case o == Unknown || r.opts.Rollback == RollbackNone || r.opts.Check:
		case o == Failed && n.touched:
			r.settling(sctx, n.rollback)
		}
		r.settling(sctx, n.release)
		if r.opts.NodeDone != nil {
			r.opts.NodeDone(*n.rep)
		}
	})
	if ctx.Err() != nil {
		r.rep.Err = fmt.Errorf("run interrupted: %w", context.Cause(ctx))
	}
	r.rep.Duration = time.Since(r.start)
}

// each runs fn for every node run, at most limit at a time. fn records its
// outcome in the node's report; one node's failure never cancels the others
// mid-flight, because a half-sent batch is worse than a finished one.
func each[T any](ctx context.Context, runs []T, limit int, fn func(context.Context, T)) {
	var g errgroup.Group
	g.SetLimit(limit)
	for _, r := range runs {
		g.Go(func() error {
			fn(ctx, r)
			return nil
		})
	}
	_ = g.Wait()
}

// summarize keeps a long list of problems readable.
func summarize(problems []string) string {
	const show = 3
	if len(problems) <= show {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:show], "; "), len(problems)-show)
}
