package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/routepush/routepush/internal/persist"
	"github.com/routepush/routepush/route"
)

// nodeRun is the state of one node during a run.
type nodeRun struct {
	plan   HostPlan
	host   Host     // nil once the node needs nothing more, until a rollback
	before [32]byte // digest of the table as first read
	// after is the digest of the tables the batch left, once read: a
	// rollback undoes the batch only while the node is still so.
	after   *[32]byte
	touched bool // a batch was sent: some of it may be in the kernel
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
		r.rep.Outcome = Refused
		r.rep.Err = fmt.Errorf("%s: refusing to change the node: %w", node.Name, err)
		return
	}
	if c := r.rep.Diff.Conflicts(); len(c) > 0 {
		r.rep.Outcome = Refused
		r.rep.Err = conflictError(r.plan, c)
		return
	}
	if problems := untouchable(r.plan, &r.rep.Diff, table.Routes, host.SessionSource()); len(problems) > 0 {
		r.rep.Outcome = Refused
		r.rep.Err = fmt.Errorf("%s: refusing to change the node: %s; routepush never changes these, whatever --protocol, --prune or --adopt say", node.Name, summarize(problems))
		return
	}
	if !r.rep.Diff.Empty() {
		if problems := UnconnectedNextHops(r.plan, table.Routes); len(problems) > 0 {
			r.rep.Outcome = Refused
			r.rep.Err = fmt.Errorf("%s: refusing to change the node: %s; routepush adds no onlink routes: fix the node's addressing or leave it out", node.Name, summarize(problems))
			return
		}
	}
	// The routes file as found goes into the run's record, not into
	// memory: a thousand nodes' files would be most of routepush's heap.
	var have persist.State
	if r.opts.Persist {
		if have, err = host.ReadPersisted(ctx); err != nil {
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
		if r.rep.Persist.Changes() {
			record.Persist = &PersistRecord{Path: have.Path, Exists: have.Exists, Routes: string(have.Routes)}
		}
		rec, _ := json.Marshal(record)
		if err := host.WriteRun(ctx, r.opts.Holder.RunID, append(rec, '\n'), r.opts.keep(), settledRecord); err != nil {
			r.fail(err)
			return
		}
		r.recorded = true
		if r.opts.restJournal {
			host.RestJournal()
		}
	}
}

// conflictError refuses a node's plan because of other owners' routes.
func conflictError(h HostPlan, conflicts []Finding) error {
	whys := make([]string, len(conflicts))
	for i, f := range conflicts {
		whys[i] = f.Why(h)
	}
	return fmt.Errorf("%s: refusing to change the node: %s; --adopt replaces them with routepush's routes", h.Node().Name, summarize(whys))
}

// apply sends the node's batch and verifies the result. It returns false
// when the node failed or was refused. A verified node keeps its
// connection and its lock until the run's outcome is final (settle).
func (r *nodeRun) apply(ctx context.Context) (ok bool) {
	t0 := time.Now()
	defer func() {
		r.rep.Duration += time.Since(t0)
		if !ok {
			// An interrupt may be why: the record must still say so.
			state := StateFailed
			if !r.touched {
				state = StateNotApplied
			}
			r.record(context.WithoutCancel(ctx), state, r.rep.Err, r.after)
		}
	}()
	name := r.plan.Node().Name
	if r.rep.Diff.Empty() {
		r.touched = true
		return r.persistVerified(ctx) // only the routes file differs
	}
	// The batch is not kept for the error message: it is rendered again
	// if ip rejects a line, so the 50 nodes in flight hold theirs only
	// until it is sent. It goes only if the node's tables are still as
	// read (compare before swap): Apply shows them again first.
	r.touched = true
	table, applyErr, err := r.host.Apply(ctx, r.rep.Diff.ApplyBatch(r.plan).Bytes(), false, r.plan.Families(), &r.before)
	var notSent *route.NotSentError
	if errors.As(err, &notSent) {
		r.touched = false // the node is as it was: nothing to undo there
		r.fail(fmt.Errorf("%s: %w", name, err))
		return false
	}
	var changed *route.ChangedError
	if errors.As(err, &changed) {
		r.touched = false
		r.rep.Outcome = Refused
		r.rep.Err = fmt.Errorf("%s: refusing to change the node: its table changed since it was read: %s; nothing was sent", name, describeChange(r.plan, &r.rep.Diff, changed.Table.Routes))
		return false
	}
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
	if err == nil {
		r.after = &table.Digest
	}
	if applyErr != nil {
		r.fail(explainBatchError(applyErr, r.rep.Diff.ApplyBatch(r.plan).Bytes()))
		r.readAfter(ctx)
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

// readAfter reads the tables a failed batch left, when Apply could not:
// the rollback undoes the run only while the node is still so.
func (r *nodeRun) readAfter(ctx context.Context) {
	if r.after != nil || ctx.Err() != nil {
		return
	}
	if t, err := r.host.ReadRoutes(ctx, r.plan.Families()); err == nil {
		r.after = &t.Digest
	}
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
		host.Close()
		r.host = nil
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

// record appends the state the run reached on the node to its record,
// with the digest of the tables it left when they were read. Failing to
// is reported (RecordErr: the node's error, exit code 1) but changes
// nothing already done: no rollback follows from it.
func (r *nodeRun) record(ctx context.Context, state RunState, cause error, digest *[32]byte) {
	if !r.recorded || r.host == nil {
		return
	}
	if err := r.host.AppendRun(ctx, r.opts.Holder.RunID, marshalState(state, time.Now(), cause, digest)); err != nil {
		// What was done stays as the outcome says; the report and the
		// exit code say the node's record does not show it.
		r.rep.RecordErr = errors.Join(r.rep.RecordErr, fmt.Errorf("%s: could not record state %s: %w", r.plan.Node().Name, state, err))
	}
}

// rollback restores the node to the tables it had before the run, if they
// are still as the run left them, and checks that they read back
// byte-identical. Its lock is still this run's: a node whose connection
// was lost is reached again under it.
func (r *nodeRun) rollback(ctx context.Context, connect Connector) {
	name := r.plan.Node().Name
	if r.host == nil {
		host, err := connect(ctx, r.plan.Node())
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
			r.record(ctx, StateRollbackFailed, r.rep.RollbackErr, nil)
		} else {
			r.record(ctx, StateRolledBack, nil, &r.before)
		}
	}()
	target := undoTarget{
		node: name, runID: r.opts.Holder.RunID, lines: r.rep.Diff.UndoBatch(r.plan).Bytes(),
		fams: r.plan.Families(), before: r.before, after: r.after,
	}
	r.rep.RollbackErr = undoNode(ctx, r.host, target)
	var notSent *route.NotSentError
	if errors.As(r.rep.RollbackErr, &notSent) {
		// The connection kept since the node verified may have died
		// meanwhile (the node was out of reach for a while): nothing was
		// sent, so one new connection, under the run's lock, may try
		// again.
		r.host.Close()
		r.host = nil
		host, err := connect(ctx, r.plan.Node())
		if err != nil {
			r.rep.RollbackErr = fmt.Errorf("rollback: %w (and reconnecting: %v)", r.rep.RollbackErr, err)
			r.rep.Outcome = RollbackFailed
			return
		}
		r.host = host
		r.locked = r.opts.journaling()
		r.rep.RollbackErr = undoNode(ctx, r.host, target)
	}
	if r.persisted && r.rep.RollbackErr == nil {
		if err := r.host.UndoPersisted(ctx, r.rep.Persist.found); err != nil {
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

// release records how the run ended on the node if nothing else has,
// releases the node's lock and disconnects; errors change nothing that
// was done, but a lock left behind refuses the next run at that node, so
// it fails this one (RecordErr, exit 1) and says which node.
func (r *nodeRun) release(ctx context.Context) {
	if r.host == nil {
		return
	}
	if r.recorded && !r.touched {
		r.record(ctx, StateNotApplied, nil, nil) // the run stopped before this node
	}
	if r.locked {
		if err := r.host.Unlock(ctx, r.opts.Holder.lockText()); err != nil {
			r.opts.logger().Warn("could not release the node's lock", "node", r.plan.Node().Name, "err", err)
			r.rep.RecordErr = errors.Join(r.rep.RecordErr, fmt.Errorf("%s: could not release its lock, which refuses the next run there until removed (the node's routes are as its outcome says): %w", r.plan.Node().Name, err))
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
