package orchestrator

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
)

// undoable reports whether a run in this state may have changed the node.
func undoable(s RunState) bool {
	return s == StateApplying || s == StateVerified || s == StateFailed || s == StateRollbackFailed
}

// chooseRun picks the run to undo on a node: the one asked for, unless a
// later run changed the node since (then only with Force), or else the
// newest run of the node's records that may have changed it.
//
// A record of a run that left nothing on the node (cut short by a crash,
// or, unless forced, restarted since) is found restarted: nothing is sent,
// only the lock the run left is released. Without --run it is the node's
// answer all the same: the node restarted since its newest run, and the
// runs before are no more to undo than it is.
func chooseRun(ctx context.Context, h RestoreHost, n *RestoreNode, opts *RestoreOptions) (RunRecord, bool) {
	ids, err := h.Runs(ctx)
	if none, ok := errors.AsType[*host.NoSFTPError](err); ok {
		// Its records cannot be read now. That says nothing of the runs
		// before: the node may have had SFTP then (the server removed
		// since), and a run may have changed it and recorded so.
		n.Err = errors.New(none.Without("cannot read its run records (no SFTP server now), so it is not rolled back and is left as it is"))
		return RunRecord{}, false
	}
	if err != nil {
		n.Err = err
		return RunRecord{}, false
	}
	// Unknown (""), a node restarted since is not told from one that
	// did not: its runs are undone as before, their tables checked.
	boot, _ := h.BootID(ctx)
	for k := len(ids) - 1; k >= 0; k-- {
		if !ValidRunID(ids[k]) {
			// A file routepush never wrote: its name is not a run id, so
			// it is used in no path, suggestion or --run.
			continue
		}
		b, err := h.ReadRun(ctx, ids[k])
		if err != nil {
			n.Err = err
			return RunRecord{}, false
		}
		if cutShort(b) {
			if opts.RunID == "" || ids[k] == opts.RunID {
				return RunRecord{RunID: ids[k], Node: n.Name, State: StateRestarted}, true
			}
			continue
		}
		rec, err := ParseRunRecord(b)
		if err == nil && rec.RunID != ids[k] {
			err = fmt.Errorf("run record %s.json is of run %s", ids[k], rec.RunID)
		}
		if err != nil {
			n.Err = fmt.Errorf("%s: %w", n.Name, err)
			return RunRecord{}, false
		}
		if !opts.Force && undoable(rec.State) && rec.restartedSince(boot) {
			rec.State = StateRestarted
		}
		switch {
		case opts.RunID == "" && (undoable(rec.State) || rec.State == StateRestarted):
			return rec, true
		case opts.RunID == "":
		case rec.RunID == opts.RunID:
			return rec, true
		case undoable(rec.State) && !opts.Force:
			// Written after the run asked for (the node's clock says so):
			// undoing the older run would undo this one's changes too.
			n.Err = fmt.Errorf("%s: run %s changed the node after run %s and is not undone (%s): undo it first, or add --force", n.Name, rec.RunID, opts.RunID, rec.State)
			return RunRecord{}, false
		}
	}
	return RunRecord{}, false // the run never got to this node
}

// takeOverLock releases the lock the run being undone left, when its
// holder is provably gone, and refuses any other lock.
func takeOverLock(ctx context.Context, h RestoreHost, n *RestoreNode, runID string, opts *RestoreOptions) bool {
	held, err := h.HeldLock(ctx)
	if err != nil {
		n.Err = err
		return false
	}
	if held == nil {
		return true
	}
	if empty, err := releaseEmptyLock(ctx, h, held); empty {
		n.Err = err
		return err == nil
	}
	var other Holder
	if json.Unmarshal(held, &other) != nil || !ValidRunID(other.RunID) {
		n.Err = fmt.Errorf("%s: locked by something that is not a routepush run: %s", n.Name, safetext.Quote(string(held)))
		return false
	}
	switch {
	case other.RunID != runID:
		n.Err = fmt.Errorf("%s: locked by another run: %s", n.Name, other)
		return false
	case other.Host == opts.Holder.Host && opts.ProcessAlive != nil && opts.ProcessAlive(other.PID):
		n.Err = fmt.Errorf("%s: locked by %s, which is still running: it rolls back by itself if it fails; interrupt it (Ctrl-C) rather than undo it under its feet", n.Name, other)
		return false
	case other.Host != opts.Holder.Host && !opts.Force:
		n.Err = fmt.Errorf("%s: locked by %s, on another host: routepush cannot tell from here whether it still runs; once you know it is gone, add --force", n.Name, other)
		return false
	}
	if err := h.Unlock(ctx, held); err != nil {
		n.Err = err
		return false
	}
	return true
}

// restoreNode is a node's part of `routepush rollback`: it takes over
// the lock the run left, undoes the run with undoNode, as a failing run
// does, puts back the routes file the run found, and records the result.
func restoreNode(ctx context.Context, h RestoreHost, n *RestoreNode, rec RunRecord, opts *RestoreOptions) {
	if !takeOverLock(ctx, h, n, rec.RunID, opts) || !undoable(rec.State) {
		return // planned (nothing sent) or already rolled back
	}
	if err := h.Lock(ctx, opts.Holder.lockText()); err != nil {
		n.Err = fmt.Errorf("%s: %w", n.Name, err)
		return
	}
	defer func() { _ = h.Unlock(ctx, opts.Holder.lockText()) }()
	t, err := recordedUndo(n.Name, rec, opts.Force)
	if err != nil {
		n.Err = fmt.Errorf("%s: run record: %w", n.Name, err)
		return
	}
	n.Err = undoNode(ctx, h, t)
	if n.Err == nil && rec.Persist != nil {
		// The run may have replaced the routes file: put back the one it
		// found (idempotent if it never got that far).
		if err := h.RestorePersisted(ctx, rec.Persist.persisted()); err != nil {
			n.Err = fmt.Errorf("rollback: %w", err)
		}
	}
	n.Outcome = StateRolledBack
	var digest *[32]byte
	if n.Err != nil {
		n.Outcome = StateRollbackFailed
	} else {
		digest = &t.before
	}
	var changed *ChangedSinceError
	if errors.As(n.Err, &changed) {
		return // left as it is, and its record too: it still says what the run did
	}
	boot, _ := h.BootID(ctx) // read by chooseRun through this connection
	if err := h.AppendRun(ctx, rec.RunID, marshalState(n.Outcome, time.Now(), n.Err, digest, boot), rec.Persist != nil); err != nil && n.Err == nil {
		n.Err = err
	}
}

// recordedUndo reads what undoNode needs from a node's run record, which
// is the node's text: every part is checked. With force the tables need
// not be as the run left them.
func recordedUndo(node string, rec RunRecord, force bool) (undoTarget, error) {
	t := undoTarget{node: node, runID: rec.RunID}
	if rec.Node != node {
		return t, fmt.Errorf("it is node %q's, not this node's", rec.Node)
	}
	var err error
	if t.lines, err = checkUndo(rec.Undo); err != nil {
		return t, err
	}
	if t.families, err = rec.RouteFamilies(); err != nil {
		return t, err
	}
	if t.before, err = decodeDigest(rec.Digest); err != nil {
		return t, err
	}
	if rec.After != "" && !force {
		after, err := decodeDigest(rec.After)
		t.after = &after
		return t, err
	}
	return t, nil
}

// decodeDigest reads a digest as a record keeps it.
func decodeDigest(s string) ([32]byte, error) {
	var d [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("bad digest %q", s)
	}
	copy(d[:], b)
	return d, nil
}
