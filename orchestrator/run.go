package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// Host is one node's routing table, reached somehow (package remote does it
// over SSH). Errors should name the host.
type Host interface {
	// ReadRoutes reads the main table of each family.
	ReadRoutes(ctx context.Context, fams []route.Family) (route.Table, error)
	// Apply feeds a batch to `ip -batch -`, then reads the main table of
	// each family: one round trip, not two, for apply and verify (and for
	// rollback and its check). applyErr is the batch's failure; with force,
	// ip carries on past failing lines (used to roll back, where some lines
	// may not apply). err is a failure to read the tables afterwards.
	//
	// With expect, the tables are read again in the same session right
	// before the batch, which goes only if their digest is expect; if not,
	// err is a *route.ChangedError holding them, and nothing was sent.
	Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (table route.Table, applyErr, err error)
	// SessionSource is the address the node sees routepush's session
	// come from, as far as routepush knows it (the jump host's with one);
	// invalid if unknown. A batch never touches the route back to it.
	SessionSource() netip.Addr
	Close() error
	Journal
	Persister
}

// Connector opens a Host for a node.
type Connector func(ctx context.Context, n *inventory.Node) (Host, error)

// RollbackMode says which nodes to restore when a run fails.
type RollbackMode string

// Rollback modes, as given to --rollback.
const (
	RollbackAll  RollbackMode = "all"  // every node the run changed
	RollbackHost RollbackMode = "host" // only the nodes that failed
	RollbackNone RollbackMode = "none" // leave everything as it is
)

// ParseRollbackMode checks a --rollback value.
func ParseRollbackMode(s string) (RollbackMode, error) {
	switch m := RollbackMode(s); m {
	case RollbackAll, RollbackHost, RollbackNone:
		return m, nil
	}
	return "", fmt.Errorf("unknown rollback mode %q (want all, host or none)", s)
}

// Options tune a run. Zero values are sensible defaults.
type Options struct {
	Concurrency int          // nodes worked on at once; default 50
	Check       bool         // only read and diff, change nothing
	Rollback    RollbackMode // default RollbackAll
	Logger      *slog.Logger // status messages; default discards
	// Holder, when its RunID is set, makes the run lock every node before
	// reading it and record the run on the node before changing it
	// (Journal), so that it can be undone after a crash.
	Holder Holder
	Keep   int // run records kept per node; default 10
	// ProcessAlive tells whether a process of this host still runs: a lock
	// whose holder is gone says so.
	ProcessAlive func(pid int) bool
	// Progress, when set, is kept up to date for a display.
	Progress *Progress
	// Limit, when set, says which nodes the run acts on (--limit); the
	// others are not contacted, and stay destinations of the plan.
	Limit func(node string) bool
	// Canary, like Ansible's serial: apply and verify this many nodes
	// first, and the rest only if they all succeed. 0: all at once.
	Canary int
	// WaitLock is how long to wait for a node another run has locked,
	// instead of failing at once.
	WaitLock time.Duration
	// MaxUnreachable is how many nodes may be unreachable at connect time
	// (no connection at all) and be left out; past it the run changes
	// nothing. Default 0.
	MaxUnreachable int
	// restJournal: nodes wait for others between their read and their
	// apply (more of them than Concurrency), so their SFTP sessions rest
	// meanwhile. Otherwise the session stays open: starting sftp-server
	// again is most of what the journal costs a small cluster.
	restJournal bool
	// Persist installs each node's routes to be replayed at boot once
	// they verify (Persister); with Check, reports where that differs.
	Persist bool
	// SettleTimeout bounds what a run does once its outcome is known:
	// rolling back, recording states, releasing locks. It runs on a
	// context of its own, so an interrupt never cuts it short. Default 5
	// minutes.
	SettleTimeout time.Duration
}

func (o *Options) journaling() bool { return o.Holder.RunID != "" && !o.Check }

// Run executes a plan: read every node's table and diff it; unless Check,
// apply the differences and verify them; and if any node fails, restore the
// changed nodes from their snapshots. A node that cannot be read stops the
// run before anything is changed anywhere.
func Run(ctx context.Context, plan *Plan, connect Connector, opts Options) *Report {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 50
	}
	if opts.Rollback == "" {
		opts.Rollback = RollbackAll
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	rep := &Report{Check: opts.Check, Plan: plan, Nodes: make([]NodeReport, len(plan.Nodes))}
	runs := make([]*nodeRun, len(plan.Nodes))
	// Connections are closed as soon as a node is done with: an SSH
	// connection keeps a buffer the size of the largest packet it ever
	// carried, and a thousand of them idle until the run ends would be
	// most of routepush's memory. Rolling a node back connects again.
	var active []*nodeRun // the nodes --limit leaves in
	for i := range runs {
		rep.Nodes[i] = NodeReport{Name: plan.Nodes[i].Name, Outcome: Skipped}
		runs[i] = &nodeRun{plan: plan.Host(i), rep: &rep.Nodes[i], opts: &opts, connect: connect}
		if opts.Limit != nil && !opts.Limit(plan.Nodes[i].Name) {
			rep.Nodes[i].Outcome = Excluded
			continue
		}
		active = append(active, runs[i])
	}
	// Settling (rolling back, recording, releasing locks) runs on a context
	// of its own: an interrupt is often why there is anything to settle.
	settleTimeout := opts.SettleTimeout
	if settleTimeout <= 0 {
		settleTimeout = 5 * time.Minute
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		if ctx.Err() != nil && rep.Err == nil {
			rep.Err = fmt.Errorf("run interrupted: %w", context.Cause(ctx))
		}
		if rep.nodeFailed() && opts.Rollback != RollbackNone && !opts.Check {
			rollBack(sctx, runs, connect, &opts, log)
		}
		// Every node still connected holds its lock until here, verified
		// ones included: the run's outcome is final only now.
		each(sctx, runs, opts.Concurrency, func(ctx context.Context, r *nodeRun) { r.release(ctx) })
		rep.Duration = time.Since(start)
	}()

	opts.restJournal = len(active) > opts.Concurrency
	log.Info("reading route tables", "nodes", len(active), "concurrency", opts.Concurrency)
	pr := opts.Progress // nil-safe: a run without a display
	if pr != nil {
		pr.total.Store(int64(len(active)))
	}
	prepare := func(ctx context.Context, r *nodeRun) {
		pr.begin(r.rep.Name)
		r.prepare(ctx, connect)
		switch r.rep.Outcome {
		case Failed, Refused:
			pr.end(r.rep.Name, stepFailed)
		case Unreachable:
			pr.end(r.rep.Name, stepLeft)
		default:
			pr.end(r.rep.Name, stepRead)
		}
		if opts.Check || (r.rep.Outcome == InSync) {
			r.release(ctx) // nothing to apply, nothing to roll back
		}
	}
	rest := active
	if opts.journaling() && len(active) > 1 {
		// Two runs started at once would each lock half of the nodes and
		// both give up. The node first by name is locked first, alone:
		// whichever run gets it goes on, the other stops there.
		first := 0
		for i, r := range active {
			if r.rep.Name < active[first].rep.Name {
				first = i
			}
		}
		prepare(ctx, active[first])
		if active[first].rep.Outcome == Failed {
			log.Warn("not changing anything: the first node could not be locked or read")
			return rep
		}
		rest = append(append([]*nodeRun{}, active[:first]...), active[first+1:]...)
	}
	each(ctx, rest, opts.Concurrency, prepare)
	var unreachable []string
	for _, r := range runs {
		if r.rep.Outcome == Unreachable {
			unreachable = append(unreachable, r.rep.Name)
		}
	}
	if len(unreachable) > opts.MaxUnreachable {
		for _, r := range runs {
			if r.rep.Outcome == Unreachable {
				r.rep.Outcome = Failed
			}
		}
	} else if len(unreachable) > 0 {
		log.Warn("leaving out unreachable nodes (--max-unreachable)", "nodes", strings.Join(unreachable, ","), "max", opts.MaxUnreachable)
	}
	if ctx.Err() != nil {
		log.Warn("not changing anything: the run was interrupted while reading")
		return rep
	}
	if rep.Failed() {
		log.Warn("not changing anything: some nodes could not be read or were refused")
		return rep
	}
	if opts.Check {
		return rep
	}

	var stop atomic.Bool
	var pending []*nodeRun
	for _, r := range runs {
		if r.rep.Changes() {
			pending = append(pending, r)
		}
	}
	log.Info("applying routes", "nodes", len(pending))
	apply := func(ctx context.Context, r *nodeRun) {
		if stop.Load() || ctx.Err() != nil {
			r.rep.Outcome = Skipped
			return
		}
		pr.begin(r.rep.Name)
		if !r.apply(ctx) {
			pr.end(r.rep.Name, stepFailed)
			stop.Store(true)
			return
		}
		pr.end(r.rep.Name, stepVerified)
		if opts.restJournal {
			r.host.RestJournal() // until the run's outcome is final
		}
	}
	if n := min(opts.Canary, len(pending)); n > 0 && n < len(pending) {
		log.Info("canary nodes first", "nodes", n)
		each(ctx, pending[:n], opts.Concurrency, apply)
		if !stop.Load() {
			log.Info("canary nodes verified; applying the rest", "nodes", len(pending)-n)
		}
		each(ctx, pending[n:], opts.Concurrency, apply) // skipped if a canary failed
	} else {
		each(ctx, pending, opts.Concurrency, apply)
	}
	return rep
}

// rollBack restores, after a failure, the nodes --rollback asks for: every
// node the run may have changed, or only the failed ones.
func rollBack(ctx context.Context, runs []*nodeRun, connect Connector, opts *Options, log *slog.Logger) {
	var undo []*nodeRun
	for _, r := range runs {
		if r.rep.Outcome == Unknown {
			continue // out of reach: its error says how to restore it later
		}
		if r.touched && (opts.Rollback == RollbackAll || r.rep.Outcome == Failed) {
			undo = append(undo, r)
		}
	}
	if len(undo) == 0 {
		return
	}
	log.Warn("rolling back", "nodes", len(undo))
	each(ctx, undo, opts.Concurrency, func(ctx context.Context, r *nodeRun) { r.rollback(ctx, connect) })
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

func (o *Options) keep() int {
	if o.Keep <= 0 {
		return 10
	}
	return o.Keep
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// lockText is what a run writes into the locks it holds.
func (h Holder) lockText() []byte {
	b, _ := json.Marshal(h)
	return append(b, '\n')
}

// lockError names the run in a node's way, and says when its process is
// gone (killed, or its bastion rebooted) and what to do about it.
func (o *Options) lockError(node string, err error) error {
	var le interface{ LockHolder() []byte }
	if !errors.As(err, &le) {
		return err
	}
	var h Holder
	if json.Unmarshal(le.LockHolder(), &h) != nil || !ValidRunID(h.RunID) {
		// Not ours, or a run id that is no run id: shown escaped, and
		// never pasted into a command to run.
		return fmt.Errorf("%s: locked by something that is not a routepush run: %s", node, safetext.Quote(string(le.LockHolder())))
	}
	msg := fmt.Sprintf("%s: locked by %s", node, h)
	if h.Host == o.Holder.Host && o.ProcessAlive != nil && !o.ProcessAlive(h.PID) {
		msg += fmt.Sprintf("; that process is gone: `routepush rollback --run %s` undoes what it changed and releases the lock", h.RunID)
	}
	return errors.New(msg)
}

// explainBatchError adds the batch line ip rejected to its error.
func explainBatchError(err error, batch []byte) error {
	var se interface{ StderrText() string }
	if !errors.As(err, &se) {
		return err
	}
	n := route.FailedBatchLine(se.StderrText())
	lines := strings.Split(string(batch), "\n")
	if n < 1 || n > len(lines) {
		return err
	}
	return fmt.Errorf("%w (batch line %d: %s)", err, n, safetext.Line(lines[n-1]))
}

// summarize keeps a long list of problems readable.
func summarize(problems []string) string {
	const show = 3
	if len(problems) <= show {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:show], "; "), len(problems)-show)
}
