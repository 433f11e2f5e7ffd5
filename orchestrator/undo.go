package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// undoTarget is what undoing a run on a node needs: the lines that put its
// tables back, the digest they had before the run, and the digest of the
// tables as the run left them (nil when they were never read, or when the
// operator forces the undo).
type undoTarget struct {
	node, runID string
	lines       []byte
	families    []route.Family
	before      [32]byte
	after       *[32]byte
}

// ChangedSinceError is a node left as it is by a rollback: its tables are
// no longer what the run left, so someone else (a person, another run) has
// changed them since, and undoing the run now would undo that too.
type ChangedSinceError struct {
	Node, RunID string
}

func (e *ChangedSinceError) Error() string {
	return fmt.Sprintf("%s: rollback: left as it is: its route table changed since run %s changed it, and undoing the run now could undo that change too; inspect it, then `routepush rollback --run %s --force` undoes the run's own routes anyway", e.Node, e.RunID, e.RunID)
}

// undoNode puts a node back as a run found it. It is the one rollback, for
// a failing run (nodeRun.rollback) and for `routepush rollback`
// (restoreNode) alike: it sends the undo lines with -force (some are for
// changes the run never got to make) only while the tables are still as
// the run left them (after), and then checks that they read back byte for
// byte as before the run.
func undoNode(ctx context.Context, h Host, t undoTarget) error {
	res, err := h.Apply(ctx, t.lines, true, t.families, t.after)
	var changed *host.ChangedError
	switch {
	case errors.As(err, &changed):
		return &ChangedSinceError{Node: t.node, RunID: t.runID}
	case err != nil:
		return fmt.Errorf("rollback: %w", err)
	case res.Table.Digest != t.before:
		err := fmt.Errorf("%s: rollback: route table differs from before run %s", t.node, t.runID)
		if res.BatchErr != nil {
			err = fmt.Errorf("%w (%v)", err, res.BatchErr)
		}
		return err
	}
	return nil
}

// rollback is a node's part of a failing run's rollback: it restores the
// node to the tables it had before the run with undoNode, as `routepush
// rollback` would from the node's record, then puts back its routes file,
// and records the result. Its lock is still this run's: a node whose
// connection was lost is reached again under it.
func (r *nodeRun) rollback(ctx context.Context) {
	if r.host == nil && !r.reconnect(ctx, nil) {
		return
	}
	defer func() {
		if r.rep.RollbackErr != nil {
			r.record(ctx, StateRollbackFailed, r.rep.RollbackErr, nil)
		} else {
			r.record(ctx, StateRolledBack, nil, &r.before)
		}
	}()
	target := undoTarget{
		node: r.plan.Node().Name, runID: r.opts.Holder.RunID, lines: r.rep.Diff.UndoBatch(r.plan).Bytes(),
		families: r.plan.Families(), before: r.before, after: r.after,
	}
	r.rep.RollbackErr = r.undo(ctx, target)
	var notSent *host.NotSentError
	if errors.As(r.rep.RollbackErr, &notSent) {
		// The connection kept since the node verified may have died
		// meanwhile (the node was out of reach for a while): nothing was
		// sent, so one new connection, under the run's lock, may try
		// again.
		r.host.Close()
		r.host = nil
		if !r.reconnect(ctx, r.rep.RollbackErr) {
			return
		}
		r.rep.RollbackErr = r.undo(ctx, target)
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

// undo sends the run's undo to the node (undoNode), noting the boot it
// went to.
func (r *nodeRun) undo(ctx context.Context, t undoTarget) error {
	boot, _ := r.host.BootID(ctx)
	err := undoNode(ctx, r.host, t)
	r.noteSent(boot, err)
	return err
}

// noteSent notes boot as the one the run's last batch went to, unless err
// says the batch was not sent (the connection was gone, or the tables
// were not as expected: compared before the batch).
func (r *nodeRun) noteSent(boot string, err error) {
	var notSent *host.NotSentError
	var changed *host.ChangedError
	var changedSince *ChangedSinceError
	if !errors.As(err, &notSent) && !errors.As(err, &changed) && !errors.As(err, &changedSince) {
		r.sentBoot = boot
	}
}

// reconnect connects to the node again for its rollback, under the run's
// lock; prev is the rollback's error that made it necessary, if any. On
// failure the rollback failed.
func (r *nodeRun) reconnect(ctx context.Context, prev error) bool {
	// Tried once: a node this fails on keeps its lock, as a node whose
	// kept connection died does, for `routepush rollback` to finish.
	r.parked = false
	if err := r.resume(ctx); err != nil {
		if prev != nil {
			err = fmt.Errorf("%w (after: %v)", err, prev)
		}
		r.rep.RollbackErr = fmt.Errorf("rollback: %w", err)
		r.rep.Outcome = RollbackFailed
		return false
	}
	return true
}
