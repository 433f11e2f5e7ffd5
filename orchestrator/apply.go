package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// apply is a node's part of the apply phase: it sends the node's batch
// and verifies the result. It returns false when the node failed or was
// refused. A verified node keeps its connection and its lock until the
// run's outcome is final (settle).
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
	if r.host == nil {
		// Parked while it waited: nothing goes unless the node is
		// reached again, still as the run left it.
		if err := r.resumeToApply(ctx); err != nil {
			var notHeld *notHeldError
			if ctx.Err() != nil && !errors.As(err, &notHeld) {
				r.rep.Outcome = Skipped // interrupted connecting: nothing was sent
				return false
			}
			r.fail(fmt.Errorf("connecting again to apply: %w", err))
			return false
		}
	}
	r.touched = true
	if r.rep.Diff.Empty() {
		return r.persistVerified(ctx) // only the routes file differs
	}
	table, ok := r.send(ctx)
	if !ok {
		return false
	}
	if problems := Verify(r.plan, table.Routes); len(problems) > 0 {
		r.fail(fmt.Errorf("%s: verify failed: %s", r.plan.Node().Name, summarize(problems)))
		return false
	}
	return r.persistVerified(ctx)
}

// send sends the node's batch and returns the tables it left. The batch
// is not kept for the error message: it is rendered again if ip rejects a
// line, so the 50 nodes in flight hold theirs only until it is sent. It
// goes only if the node's tables are still as read (compare before swap):
// Apply shows them again first.
func (r *nodeRun) send(ctx context.Context) (route.Table, bool) {
	name := r.plan.Node().Name
	boot, _ := r.host.BootID(ctx) // read with the record: cached
	res, err := r.host.Apply(ctx, r.rep.Diff.ApplyBatch(r.plan).Bytes(), false, r.plan.Families(), &r.before)
	r.noteSent(boot, err)
	var notSent *host.NotSentError
	var changed *host.ChangedError
	var lost *host.LostError
	switch {
	case errors.As(err, &notSent):
		r.touched = false // the node is as it was: nothing to undo there
		r.fail(fmt.Errorf("%s: %w", name, err))
		return res.Table, false
	case errors.As(err, &changed):
		r.touched = false
		r.refuse(fmt.Errorf("its table changed since it was read: %s; nothing was sent", describeChange(r.plan, &r.rep.Diff, changed.Table.Routes)))
		return res.Table, false
	case errors.As(err, &lost) && ctx.Err() == nil:
		// The connection went mid-batch: whether the batch is in the
		// kernel is unknown until the node is reached again.
		var table route.Table
		if table, err = r.reconnectAndRead(ctx, err); err != nil {
			r.rep.Outcome, r.rep.Err = Unknown, err
			return table, false
		}
		res = host.ApplyResult{Table: table}
	case errors.As(err, &lost):
		// Lost while the run is interrupted: not reached again; the
		// node failed for the lost connection, not a verify, and its
		// rollback says what is in the kernel.
		r.fail(err)
		return res.Table, false
	}
	if err == nil {
		r.after = digestOf(res.Table)
	}
	switch {
	case res.BatchErr != nil:
		r.fail(explainBatchError(res, r.rep.Diff.ApplyBatch(r.plan).Bytes()))
		r.readAfter(ctx)
		return res.Table, false
	case err != nil:
		r.fail(fmt.Errorf("verify: %w", err))
		return res.Table, false
	}
	return res.Table, true
}

// resumeToApply connects again to a parked node for its batch. A failed
// connection is tried twice more, a second then two apart: nothing has
// been sent. The batch then goes only if nothing happened there that the
// run could not undo (stillHeld).
func (r *nodeRun) resumeToApply(ctx context.Context) error {
	wait := time.Second
	for try := 1; ; try++ {
		h, err := r.connect(ctx, r.plan.Node())
		if err == nil {
			r.host = h
			break
		}
		if try == 3 {
			return err
		}
		r.opts.Logger.Warn("connecting again to apply", "node", r.plan.Node().Name, "try", try, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
	if err := r.stillHeld(ctx); err != nil {
		r.host.Close()
		r.host = nil
		return err
	}
	r.parked = false
	return nil
}

// stillHeld checks a parked node connected again: the run's lock is there
// as the run wrote it, and the node has not restarted since its read. A
// restart loses the lock (it is not synced to the node's disk: it is gone,
// or empty) and may lose the record (synced only with --persist), without
// which a crash of routepush would leave the batch with nothing to undo
// it from. The rollback's and settle's reconnects (relock) take a lost
// lock again instead: by then the node has nothing more to receive. Its
// errors are *notHeldError.
func (r *nodeRun) stillHeld(ctx context.Context) error {
	name := r.plan.Node().Name
	restarted := func(why string) error {
		return &notHeldError{fmt.Errorf("%s: %s: the node may have restarted since its read, and lost its record; nothing was sent", name, why)}
	}
	if r.locked {
		ours := r.opts.Holder.lockText()
		err := r.host.Lock(ctx, ours)
		var held *host.LockedError
		switch {
		case err == nil:
			// Taken now: said and let go of at once, while connected.
			r.record(ctx, StateNotApplied, nil, nil)
			if err := r.host.Unlock(ctx, ours); err == nil {
				r.locked = false
			}
			return restarted("the run's lock was gone")
		case !errors.As(err, &held):
			return err
		case len(held.Holder) == 0:
			// Left by a crash of the node: settle's relock removes it.
			return restarted("the run's lock was left empty")
		case string(held.Holder) != string(ours):
			r.locked = false
			return &notHeldError{fmt.Errorf("%s: the node's lock is no longer this run's, and the node is left as it is: %w", name, r.opts.lockError(name, err))}
		}
	}
	if r.readBoot != "" {
		boot, err := r.host.BootID(ctx)
		switch {
		case err != nil:
			return &notHeldError{fmt.Errorf("%s: could not read its boot id again, to tell whether it restarted since its read; nothing was sent: %w", name, err)}
		case boot != r.readBoot:
			return restarted("its boot id changed")
		}
	}
	return nil
}

// notHeldError is a parked node found no longer as the run left it.
type notHeldError struct{ err error }

func (e *notHeldError) Error() string { return e.err.Error() }
func (e *notHeldError) Unwrap() error { return e.err }

// digestOf is a copy of a table's digest. A pointer into the table would
// keep its routes alive for the rest of the run: at 1,000 nodes, 216 MB
// of verified tables nobody reads again.
func digestOf(t route.Table) *[32]byte {
	d := t.Digest
	return &d
}

// readAfter reads the tables a failed batch left, when Apply could not:
// the rollback undoes the run only while the node is still so.
func (r *nodeRun) readAfter(ctx context.Context) {
	if r.after != nil || ctx.Err() != nil {
		return
	}
	if t, err := r.host.ReadRoutes(ctx, r.plan.Families()); err == nil {
		r.after = digestOf(t)
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
		var h Host
		if h, err = r.connect(ctx, r.plan.Node()); err != nil {
			r.opts.Logger.Warn("reconnecting after a lost connection", "node", name, "try", try, "err", err)
			continue
		}
		r.host = h
		if err := r.relock(ctx); err != nil {
			h.Close()
			r.host = nil
			return route.Table{}, err
		}
		var t route.Table
		if t, err = h.ReadRoutes(ctx, r.plan.Families()); err == nil {
			return t, nil
		}
		h.Close()
		r.host = nil
	}
	return route.Table{}, fmt.Errorf("%s: connection lost mid-batch (%v) and not regained: whether its routes changed is unknown; once it is reachable, `routepush rollback --run %s` restores it (%w)", name, lost, r.opts.Holder.RunID, err)
}

// explainBatchError adds the batch line ip rejected to its error.
func explainBatchError(res host.ApplyResult, batch []byte) error {
	n := res.FailedLine
	lines := strings.Split(string(batch), "\n")
	if n < 1 || n > len(lines) {
		return res.BatchErr
	}
	return fmt.Errorf("%w (batch line %d: %s)", res.BatchErr, n, safetext.Line(lines[n-1]))
}
