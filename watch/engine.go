package watch

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

// Defaults of Config.
const (
	DefaultDebounce = 200 * time.Millisecond
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
	Inventory    string
	AllowUnknown bool // Cluster: route inventory nodes the API does not know
	FilePoll     time.Duration
	// Plan is how routes look and what else the diff deletes; the watcher
	// adds PruneDst for the pod CIDRs of nodes that left.
	Plan orchestrator.PlanOptions
	// Run is every round's options; Limit, MaxUnreachable and Holder are
	// set per round.
	Run orchestrator.Options
	// NewHolder names each round in the locks and records it leaves (one
	// run ID per round); nil: rounds neither lock nor record.
	NewHolder func() orchestrator.Holder
	Connect   orchestrator.Connector
	// Check vets a node table before it is planned (the rails); a table
	// it refuses is not acted on until the next change.
	Check func(nodes []inventory.Node) error
	// MarkAvailable sets NetworkUnavailable=False on converged nodes.
	MarkAvailable bool
	Debounce      time.Duration // events coalesced within it; default 200 ms
	Resync        time.Duration // every node reconciled this often; default 10 min
	Observer      Observer
	Logger        *slog.Logger
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Engine keeps the routes of a node table converged. Its state is its
// Run goroutine's alone.
type Engine struct {
	cfg   Config
	src   *source
	log   *slog.Logger
	obs   Observer
	nodes []inventory.Node // the table the last round planned

	// Per node: when it is due (absent: converged, nothing to do), how
	// many times in a row it failed, and whether it converged once.
	due       map[string]time.Time
	fails     map[string]int
	converged map[string]bool
	gone      map[netip.Prefix]bool // pod CIDRs no node owns: pruned
	eventAt   time.Time             // the oldest event the due nodes wait for
	now       func() time.Time
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
		due: map[string]time.Time{}, fails: map[string]int{}, converged: map[string]bool{},
		gone: map[netip.Prefix]bool{}, now: time.Now}
	if e.obs == nil {
		e.obs = Observers{}
	}
	e.src = newSource(&e.cfg)
	return e
}

// Run watches until ctx is done: a full reconcile once the informer has
// synced, then a round per coalesced batch of events, retries of failed
// nodes with backoff, and a full resync every Config.Resync. A round in
// flight when ctx is done finishes or rolls back and releases its locks
// (orchestrator.Run settles on its own context); Run then returns nil.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.src.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	nodes, err := e.src.table(ctx)
	if err != nil {
		return err
	}
	e.log.Info("watching", "nodes", len(nodes), "resync", e.cfg.Resync, "debounce", e.cfg.Debounce)
	e.setTable(nodes)
	e.all()
	e.round(ctx, "sync")

	resync := time.NewTicker(e.cfg.Resync)
	defer resync.Stop()
	debounce := stoppedTimer()
	retry := stoppedTimer()
	defer debounce.Stop()
	defer retry.Stop()
	pending := false // debounce armed
	for {
		e.arm(retry)
		select {
		case <-ctx.Done():
			e.log.Info("watch stopped")
			return nil
		case <-e.src.kick:
			if !pending {
				debounce.Reset(e.cfg.Debounce)
				pending = true
			}
			continue
		case <-debounce.C:
			pending = false
			e.refresh(ctx, e.src.take())
			e.round(ctx, "event")
		case <-resync.C:
			e.all()
			e.round(ctx, "resync")
		case <-retry.C:
			e.round(ctx, "retry")
		}
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// arm sets the retry timer to the earliest node due.
func (e *Engine) arm(t *time.Timer) {
	t.Stop()
	var first time.Time
	for _, at := range e.due {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	if !first.IsZero() {
		t.Reset(max(first.Sub(e.now()), time.Millisecond))
	}
}

// refresh reads the node table again and marks the nodes its change
// affects due now; at is when the oldest event behind it came.
func (e *Engine) refresh(ctx context.Context, at time.Time) {
	nodes, err := e.src.table(ctx)
	if err != nil {
		e.log.Error("failed to read the node table; waiting for the next change", "err", err)
		return
	}
	c := Diff(e.nodes, nodes)
	e.setTable(nodes)
	for _, p := range c.Gone {
		e.gone[p] = true
	}
	now := e.now()
	for _, n := range c.Affected {
		e.due[n] = now
		delete(e.fails, n) // an event is worth trying at once
	}
	if c.Empty() {
		return
	}
	e.log.Info("nodes changed", "affected", len(c.Affected), "gone", len(c.Gone))
	if e.eventAt.IsZero() || (!at.IsZero() && at.Before(e.eventAt)) {
		e.eventAt = at
	}
}

// setTable takes a new node table: nodes no longer in it are forgotten,
// and pod CIDRs owned again are no longer pruned.
func (e *Engine) setTable(nodes []inventory.Node) {
	in := make(map[string]bool, len(nodes))
	for i := range nodes {
		in[nodes[i].Name] = true
		for _, c := range nodes[i].PodCIDRs {
			delete(e.gone, c)
		}
	}
	for _, m := range []map[string]time.Time{e.due} {
		for n := range m {
			if !in[n] {
				delete(m, n)
			}
		}
	}
	for n := range e.fails {
		if !in[n] {
			delete(e.fails, n)
		}
	}
	for n := range e.converged {
		if !in[n] {
			delete(e.converged, n)
		}
	}
	e.nodes = nodes
}

// all marks every node due now.
func (e *Engine) all() {
	now := e.now()
	for i := range e.nodes {
		e.due[e.nodes[i].Name] = now
	}
}

// round reconciles the nodes due, with one orchestrator run limited to
// them, and reports it.
func (e *Engine) round(ctx context.Context, reason string) {
	if ctx.Err() != nil {
		return
	}
	now := e.now()
	limit := map[string]bool{}
	for n, at := range e.due {
		if !at.After(now) {
			limit[n] = true
		}
	}
	if len(limit) == 0 {
		return
	}
	if e.cfg.Check != nil {
		if err := e.cfg.Check(e.nodes); err != nil {
			e.log.Error("node table refused; waiting for the next change", "err", err)
			for n := range limit {
				e.due[n] = now.Add(backoff(e.fail(n)))
			}
			return
		}
	}
	po := e.cfg.Plan
	gone := e.gone
	if len(gone) > 0 {
		po.PruneDst = func(dst netip.Prefix) bool { return gone[dst] }
	}
	plan := orchestrator.NewPlanWith(e.nodes, po)
	opts := e.cfg.Run
	opts.Limit = func(n string) bool { return limit[n] }
	opts.MaxUnreachable = len(limit)
	if e.cfg.NewHolder != nil {
		opts.Holder = e.cfg.NewHolder()
	}
	e.log.Info("round", "reason", reason, "nodes", len(limit), "run", opts.Holder.RunID)
	rep := orchestrator.Run(ctx, plan, e.cfg.Connect, opts)
	r := Round{Reason: reason, Started: now, Took: e.now().Sub(now)}
	r.Nodes = e.settle(ctx, rep, reason)
	if reason == "event" || reason == "retry" {
		if !e.eventAt.IsZero() {
			r.EventAge = e.now().Sub(e.eventAt)
		}
	}
	if len(e.due) == 0 {
		e.eventAt = time.Time{}
	}
	e.logRound(r, rep)
	e.obs.RoundDone(r)
	managed := 0
	for i := range plan.Nodes {
		managed += plan.Host(i).Len()
	}
	e.obs.Managed(managed)
}

// fail counts a failure of node n and returns how many in a row.
func (e *Engine) fail(n string) int {
	e.fails[n]++
	return e.fails[n]
}

// settle sorts a run's nodes into converged (no longer due), failed or
// unreachable (due after their backoff), and skipped: left out because
// another node stopped the run, due again at once.
func (e *Engine) settle(ctx context.Context, rep *orchestrator.Report, reason string) []NodeResult {
	now := e.now()
	var res []NodeResult
	someDone := false
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if n.Outcome != orchestrator.Skipped && n.Outcome != orchestrator.Excluded {
			someDone = true
		}
	}
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if n.Outcome == orchestrator.Excluded {
			continue
		}
		nr := NodeResult{Name: n.Name, Added: n.Added(), Changed: n.Replaced(), Removed: n.Removed(), Err: n.Err}
		switch n.Outcome {
		case orchestrator.InSync, orchestrator.Changed:
			nr.State = Converged
			nr.Repaired = reason == "resync" && n.Outcome == orchestrator.Changed && e.converged[n.Name]
			delete(e.due, n.Name)
			delete(e.fails, n.Name)
			e.converged[n.Name] = true
			if e.cfg.MarkAvailable && e.cfg.Cluster != nil && ctx.Err() == nil {
				if _, err := e.cfg.Cluster.MarkNetworkAvailable(ctx, n.Name); err != nil {
					e.log.Warn("failed to mark the network available", "node", n.Name, "err", err)
				}
			}
		case orchestrator.Skipped:
			nr.State = Pending
			if someDone && rep.Err == nil {
				e.due[n.Name] = now // another node stopped the run: go on without it
			} else {
				e.due[n.Name] = now.Add(backoff(e.fail(n.Name)))
			}
		case orchestrator.Unreachable:
			nr.State = Unreachable
			e.due[n.Name] = now.Add(backoff(e.fail(n.Name)))
		default:
			nr.State = Failed
			if nr.Err == nil && n.RollbackErr != nil {
				nr.Err = n.RollbackErr
			}
			if nr.Err == nil {
				nr.Err = fmt.Errorf("%s: %s", n.Name, n.Outcome)
			}
			e.due[n.Name] = now.Add(backoff(e.fail(n.Name)))
		}
		res = append(res, nr)
	}
	return res
}

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
		if n.State == Failed || n.State == Unreachable {
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
