package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
)

// lockText is what a run writes into the locks it holds.
func (h Holder) lockText() []byte {
	b, _ := json.Marshal(h)
	return append(b, '\n')
}

// lock takes the node's lock, waiting up to WaitLock while another run
// holds it; a holder that Options.TakeOver says is gone is taken over
// once.
func (r *nodeRun) lock(ctx context.Context) error {
	deadline := time.Now().Add(r.opts.WaitLock)
	triedTakeOver := false
	for {
		err := r.host.Lock(ctx, r.opts.Holder.lockText())
		var held *host.LockedError
		if err == nil || !errors.As(err, &held) {
			return err
		}
		if !triedTakeOver && r.opts.TakeOver != nil {
			triedTakeOver = true
			if r.takeOver(ctx, held.Holder) {
				continue
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(500*time.Millisecond, time.Until(deadline)+time.Millisecond)):
		}
	}
}

// lockError names the run in a node's way, and says when its process is
// gone (killed, or its bastion rebooted) and what to do about it.
func (o *Options) lockError(node string, err error) error {
	var le *host.LockedError
	if !errors.As(err, &le) {
		return err
	}
	if len(le.Holder) == 0 {
		return &heldError{msg: fmt.Sprintf("%s: locked by an empty lock, which only a crash of the node leaves (a run writes its lock whole before it takes it): no run holds it; remove %s there", node, "/var/lib/routepush/lock"), err: le}
	}
	var h Holder
	if json.Unmarshal(le.Holder, &h) != nil || !ValidRunID(h.RunID) {
		// Not ours, or a run id that is no run id: shown escaped, and
		// never pasted into a command to run.
		return &heldError{msg: fmt.Sprintf("%s: locked by something that is not a routepush run: %s", node, safetext.Quote(string(le.Holder))), err: le}
	}
	msg := fmt.Sprintf("%s: locked by %s", node, h)
	if h.Host == o.Holder.Host && o.ProcessAlive != nil && !o.ProcessAlive(h.PID) {
		msg += fmt.Sprintf("; that process is gone: `routepush rollback --run %s` undoes what it changed and releases the lock", h.RunID)
	}
	return &heldError{msg: msg, err: le}
}

// heldError is a node locked by another routepush run, said in full; it
// is still a *host.LockedError to errors.As.
type heldError struct {
	msg string
	err *host.LockedError
}

func (e *heldError) Error() string { return e.msg }
func (e *heldError) Unwrap() error { return e.err }

// relock makes sure a journaling run still holds the node's lock once it
// has reconnected to it: the node may have restarted meanwhile, and a
// lock is not synced to its disk, so it may be gone or left empty (then
// taken again: this run held it), or another run may have taken it since
// (then the node is left alone, and its lock with it).
func (r *nodeRun) relock(ctx context.Context) error {
	if !r.opts.journaling() || r.rep.NoSFTP != nil {
		return nil // a node without SFTP never had a lock of this run
	}
	ours := r.opts.Holder.lockText()
	name := r.plan.Node().Name
	for try := 0; ; try++ {
		err := r.host.Lock(ctx, ours)
		var held *host.LockedError
		switch {
		case err == nil:
			r.locked = true
			return nil
		case !errors.As(err, &held):
			return err
		case string(held.Holder) == string(ours):
			r.locked = true
			return nil
		case try == 0 && len(held.Holder) == 0:
			if _, err := releaseEmptyLock(ctx, r.host, held.Holder); err != nil {
				return err
			}
		default:
			r.locked = false
			return fmt.Errorf("%s: reconnected, the node's lock is no longer this run's, and the node is left as it is: %w", name, r.opts.lockError(name, err))
		}
	}
}

// releaseEmptyLock removes a node's lock if held (as read) is empty, and
// says whether it did. Only a crash of the node leaves a lock empty: a run
// writes its lock whole before linking it into place, and the lock is not
// synced to the node's disk, so no run holds an empty one.
func releaseEmptyLock(ctx context.Context, j Journal, held []byte) (bool, error) {
	if len(held) != 0 {
		return false, nil
	}
	return true, j.Unlock(ctx, held)
}
