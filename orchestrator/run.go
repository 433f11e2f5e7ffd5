package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

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
	Apply(ctx context.Context, batch []byte, force bool, fams []route.Family) (table route.Table, applyErr, err error)
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
	// Persist installs each node's routes to be replayed at boot once
	// they verify (Persister); with Check, reports where that differs.
	Persist bool
}

func (o *Options) journaling() bool { return o.Holder.RunID != "" && !o.Check }

// nodeRun is the state of one node during a run.
type nodeRun struct {
	plan    HostPlan
	host    Host     // nil once the node needs nothing more, until a rollback
	before  [32]byte // digest of the table as first read
	touched bool     // a batch was sent: some of it may be in the kernel
	// persisted: the routes file may have been replaced; rollback puts
	// back the one the run found.
	persisted bool
	locked    bool // this run holds the node's lock
	connect   Connector
	// recorded: the node has this run's record (state applying), which
	// must say how it ended.
	recorded bool
	rep      *NodeReport
	opts     *Options
}

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
	defer func() {
		// Nodes skipped or failed still hold their lock and connection.
		uctx := context.WithoutCancel(ctx)
		each(uctx, runs, opts.Concurrency, func(ctx context.Context, r *nodeRun) { r.close(ctx) })
		rep.Duration = time.Since(start)
	}()

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
			r.close(ctx) // nothing to apply, nothing to roll back
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
		r.close(ctx)
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
	if ctx.Err() != nil {
		rep.Err = fmt.Errorf("run interrupted: %w", context.Cause(ctx))
	}
	if !rep.Failed() || opts.Rollback == RollbackNone {
		return rep
	}

	var undo []*nodeRun
	for _, r := range pending {
		if r.rep.Outcome == Unknown {
			continue // out of reach: its error says how to restore it later
		}
		if r.touched && (opts.Rollback == RollbackAll || r.rep.Outcome == Failed) {
			undo = append(undo, r)
		}
	}
	log.Warn("rolling back", "nodes", len(undo))
	// The run's context may be what failed (Ctrl-C); restoring must not be
	// cut short by it.
	rctx := context.WithoutCancel(ctx)
	each(rctx, undo, opts.Concurrency, func(ctx context.Context, r *nodeRun) { r.rollback(ctx, connect) })
	return rep
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

// prepare connects, reads the node's table and computes its diff.
func (r *nodeRun) prepare(ctx context.Context, connect Connector) {
	t0 := time.Now()
	defer func() { r.rep.Duration += time.Since(t0) }()
	node := r.plan.Node()
	host, err := connect(ctx, node)
	if err != nil {
		r.fail(err)
		var u interface{ Unreachable() bool }
		if errors.As(err, &u) && u.Unreachable() {
			r.rep.Outcome = Unreachable // a failure unless within MaxUnreachable
		}
		return
	}
	r.host = host
	if r.opts.journaling() {
		// Locked before the read: no other run changes the node between
		// this snapshot and this batch.
		if err := r.lock(ctx); err != nil {
			r.fail(r.opts.lockError(node.Name, err))
			return
		}
		r.locked = true
	}
	table, err := host.ReadRoutes(ctx, r.plan.Families())
	if err != nil {
		r.fail(err)
		return
	}
	r.before = table.Digest
	r.rep.Diff, err = ComputeDiff(r.plan, table.Routes)
	if err != nil {
		r.fail(fmt.Errorf("%s: %w", node.Name, err))
		return
	}
	if c := r.rep.Diff.Conflicts(); len(c) > 0 {
		r.rep.Outcome = Refused
		r.rep.Err = conflictError(node.Name, c)
		return
	}
	if !r.rep.Diff.Empty() {
		if problems := UnconnectedNextHops(r.plan, table.Routes); len(problems) > 0 {
			r.rep.Outcome = Refused
			r.rep.Err = fmt.Errorf("%s: refusing to change the node: %s; routepush adds no onlink routes: fix the node's addressing or leave it out", node.Name, summarize(problems))
			return
		}
	}
	if r.opts.Persist {
		have, err := host.ReadPersisted(ctx)
		if err != nil {
			r.fail(err)
			return
		}
		r.rep.Persist = persistDrift(have, PersistFile(r.plan))
	}
	if !r.rep.Changes() {
		r.rep.Outcome = InSync
		return
	}
	r.rep.Outcome = WouldChange
	if r.opts.journaling() {
		// The record, batches included, is on the node before anything
		// changes there, written while its snapshot is at hand:
		// `routepush rollback` needs nothing else.
		record := newRecord(r.opts.Holder, r.plan, table, &r.rep.Diff)
		record.Persist = r.rep.Persist.record()
		rec, _ := json.Marshal(record)
		if err := host.WriteRun(ctx, r.opts.Holder.RunID, append(rec, '\n'), r.opts.keep()); err != nil {
			r.fail(err)
			return
		}
		r.recorded = true
		host.RestJournal()
	}
}

// conflictError refuses a node's plan because of other owners' routes.
func conflictError(node string, conflicts []Finding) error {
	whys := make([]string, len(conflicts))
	for i, f := range conflicts {
		whys[i] = f.Why()
	}
	return fmt.Errorf("%s: refusing to change the node: %s; --adopt replaces them with routepush's routes", node, summarize(whys))
}

// apply sends the node's batch and verifies the result. It returns false
// when the node failed.
func (r *nodeRun) apply(ctx context.Context) (ok bool) {
	t0 := time.Now()
	defer func() {
		r.rep.Duration += time.Since(t0)
		if !ok {
			// An interrupt may be why: the record must still say so.
			r.record(context.WithoutCancel(ctx), StateFailed, r.rep.Err)
		}
	}()
	name := r.plan.Node().Name
	r.touched = true
	if r.rep.Diff.Empty() {
		return r.persistVerified(ctx) // only the routes file differs
	}
	// The batch is not kept for the error message: it is rendered again
	// if ip rejects a line, so the 50 nodes in flight hold theirs only
	// until it is sent.
	table, applyErr, err := r.host.Apply(ctx, r.rep.Diff.ApplyBatch(r.plan).Bytes(), false, r.plan.Families())
	var lost interface{ Lost() bool }
	if errors.As(err, &lost) && ctx.Err() == nil {
		// The connection went mid-batch: whether the batch is in the
		// kernel is unknown until the node is reached again.
		if table, err = r.reconnectAndRead(ctx, err); err != nil {
			r.rep.Outcome, r.rep.Err = Unknown, err
			return false
		}
		applyErr = nil
	}
	if applyErr != nil {
		r.fail(explainBatchError(applyErr, r.rep.Diff.ApplyBatch(r.plan).Bytes()))
		return false
	}
	if err != nil {
		r.fail(fmt.Errorf("verify: %w", err))
		return false
	}
	if problems := Verify(r.plan, table.Routes); len(problems) > 0 {
		r.fail(fmt.Errorf("%s: verify failed: %s", name, summarize(problems)))
		return false
	}
	return r.persistVerified(ctx)
}

// persistVerified installs the routes file of a node whose routes verified,
// if --persist wants it, and records the node as verified.
func (r *nodeRun) persistVerified(ctx context.Context) bool {
	if r.rep.Persist.Changes() {
		r.persisted = true
		if err := r.persist(ctx); err != nil {
			r.fail(fmt.Errorf("persist: %w", err))
			return false
		}
	}
	r.rep.Outcome = Applied
	r.record(ctx, StateVerified, nil)
	return true
}

// reconnectAndRead reaches a node whose connection was lost mid-batch
// again (three tries, a second, then two, then four apart) and reads its
// tables, for verify to decide. If it stays out of reach its state is
// unknown: `routepush rollback` restores it once it is back.
func (r *nodeRun) reconnectAndRead(ctx context.Context, lost error) (route.Table, error) {
	name := r.plan.Node().Name
	r.host.Close()
	r.host = nil
	wait := time.Second
	var err error
	for try := 1; try <= 3; try++ {
		select {
		case <-ctx.Done():
			return route.Table{}, fmt.Errorf("%s: connection lost mid-batch (%v), then %w", name, lost, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait *= 2
		var host Host
		if host, err = r.connect(ctx, r.plan.Node()); err != nil {
			r.opts.logger().Warn("reconnecting after a lost connection", "node", name, "try", try, "err", err)
			continue
		}
		r.host = host
		if r.opts.journaling() {
			// The lock of the lost connection is still there, and still
			// this run's.
			r.locked = true
		}
		var t route.Table
		if t, err = host.ReadRoutes(ctx, r.plan.Families()); err == nil {
			return t, nil
		}
	}
	return route.Table{}, fmt.Errorf("%s: connection lost mid-batch (%v) and not regained: whether its routes changed is unknown; once it is reachable, `routepush rollback --run %s` restores it (%w)", name, lost, r.opts.Holder.RunID, err)
}

// lock takes the node's lock, waiting up to WaitLock while another run
// holds it.
func (r *nodeRun) lock(ctx context.Context) error {
	deadline := time.Now().Add(r.opts.WaitLock)
	for {
		err := r.host.Lock(ctx, r.opts.Holder.lockText())
		var held interface{ LockHolder() []byte }
		if err == nil || !errors.As(err, &held) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(500*time.Millisecond, time.Until(deadline)+time.Millisecond)):
		}
	}
}

// record appends the state the run reached on the node to its record.
// Failing to is reported but changes nothing already done.
func (r *nodeRun) record(ctx context.Context, state RunState, cause error) {
	if !r.recorded || r.host == nil {
		return
	}
	if err := r.host.AppendRun(ctx, r.opts.Holder.RunID, marshalState(state, time.Now(), cause)); err != nil {
		r.opts.logger().Warn("could not record the run's state on the node", "node", r.plan.Node().Name, "state", state, "err", err)
	}
}

// rollback restores the node to the table it had before the run and checks
// that the table reads back byte-identical. A node that applied and
// verified was disconnected: it is connected to again.
func (r *nodeRun) rollback(ctx context.Context, connect Connector) {
	name := r.plan.Node().Name
	if r.host == nil {
		host, err := connect(ctx, r.plan.Node())
		if err == nil && r.opts.journaling() {
			// Verified nodes were released; nobody else may have taken
			// the node since.
			if err = host.Lock(ctx, r.opts.Holder.lockText()); err != nil {
				err = r.opts.lockError(name, err)
				host.Close()
			}
		}
		if err != nil {
			r.rep.RollbackErr = fmt.Errorf("rollback: %w", err)
			r.rep.Outcome = RollbackFailed
			return
		}
		r.host = host
		r.locked = r.opts.journaling()
	}
	defer func() {
		if r.rep.RollbackErr != nil {
			r.record(ctx, StateRollbackFailed, r.rep.RollbackErr)
		} else {
			r.record(ctx, StateRolledBack, nil)
		}
	}()
	undo := r.rep.Diff.UndoBatch(r.plan)
	// With -force, ip goes on past lines that fail because the run never
	// got that far; the digest below is what decides success.
	table, applyErr, err := r.host.Apply(ctx, undo.Bytes(), true, r.plan.Families())
	switch {
	case err != nil:
		r.rep.RollbackErr = fmt.Errorf("rollback: %w", err)
	case table.Digest != r.before:
		r.rep.RollbackErr = fmt.Errorf("%s: rollback: route table differs from before the run", name)
		if applyErr != nil {
			r.rep.RollbackErr = fmt.Errorf("%w (%v)", r.rep.RollbackErr, applyErr)
		}
	}
	if r.persisted && r.rep.RollbackErr == nil {
		if err := r.host.RestorePersisted(ctx, r.rep.Persist.before); err != nil {
			r.rep.RollbackErr = fmt.Errorf("rollback: %w", err)
		}
	}
	if r.rep.RollbackErr != nil {
		r.rep.Outcome = RollbackFailed
		return
	}
	if r.rep.Outcome != Failed {
		r.rep.Outcome = RolledBack
	}
	r.rep.RolledBack = true
}

// close releases the node's lock, if this run holds it, and disconnects;
// errors change nothing that was done.
func (r *nodeRun) close(ctx context.Context) {
	if r.host == nil {
		return
	}
	if r.recorded && !r.touched {
		r.record(ctx, StateNotApplied, nil) // the run stopped before this node
	}
	if r.locked {
		if err := r.host.Unlock(ctx, r.opts.Holder.lockText()); err != nil {
			r.opts.logger().Warn("could not release the node's lock", "node", r.plan.Node().Name, "err", err)
		}
		r.locked = false
	}
	r.host.Close()
	r.host = nil
}

func (r *nodeRun) fail(err error) {
	r.rep.Outcome = Failed
	r.rep.Err = err
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
	if json.Unmarshal(le.LockHolder(), &h) != nil || h.RunID == "" {
		return fmt.Errorf("%s: locked by something that is not a routepush run: %q", node, le.LockHolder())
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
	return fmt.Errorf("%w (batch line %d: %s)", err, n, lines[n-1])
}

// summarize keeps a long list of problems readable.
func summarize(problems []string) string {
	const show = 3
	if len(problems) <= show {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:show], "; "), len(problems)-show)
}
