package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
)

// takeOver frees a node whose lock (raw, as read from the node) is held
// by a run Options.TakeOver says is gone, and reports whether it did.
// It works on a connection of its own, so the run's is left as it was:
//
//   - the node has no record of that run: records are written before
//     anything changes, so the run changed nothing there (it died while
//     reading, or found the node in sync): its lock is released;
//   - the record ends verified, not-applied or rolled-back: the node is as
//     that run left it on purpose: its lock is released;
//   - the node has restarted since a run that changed only its kernel's
//     tables, or its record was cut short by a crash: nothing of the run
//     is left: its lock is released;
//   - the record ends applying, failed or rollback-failed: the run may
//     have left the node half-changed: it is undone from its record as
//     `routepush rollback --run` does (restoreNode), then released.
//
// An empty lock, which only a crash of the node leaves, is released.
// Anything that cannot be decided (an unreadable record, a connection
// that fails) leaves the lock alone, and the node fails as before, named
// with the run that holds it.
func (r *nodeRun) takeOver(ctx context.Context, raw []byte) bool {
	if empty, err := releaseEmptyLock(ctx, r.host, raw); empty {
		if err != nil {
			r.opts.Logger.Warn("could not release an empty lock (a crash of the node left it)", "node", r.plan.Node().Name, "err", err)
			return false
		}
		r.opts.Logger.Warn("released an empty lock: a crash of the node left it", "node", r.plan.Node().Name)
		return true
	}
	var dead Holder
	if json.Unmarshal(raw, &dead) != nil || !ValidRunID(dead.RunID) || dead.RunID == r.opts.Holder.RunID || !r.opts.TakeOver(dead) {
		return false
	}
	name := r.plan.Node().Name
	log := r.opts.Logger.With("node", name, "run", dead.RunID)
	fail := func(err error) bool {
		log.Warn("could not take over the lock of a run whose process is gone", "err", err)
		return false
	}
	h, err := r.connect(ctx, r.plan.Node())
	if err != nil {
		return fail(err)
	}
	defer h.Close()
	rh, ok := h.(RestoreHost)
	if !ok {
		return fail(fmt.Errorf("%s: cannot read its run records", name))
	}
	n := &RestoreNode{Name: name}
	// The holder is gone: takeOverLock must not ask about its process
	// again (a container restarted in the same pod has the dead one's
	// host name and pid).
	ro := &RestoreOptions{RunID: dead.RunID, Holder: r.opts.Holder, Logger: r.opts.Logger, ProcessAlive: func(int) bool { return false }}
	rec, found := chooseRun(ctx, rh, n, ro)
	if n.Err != nil {
		return fail(n.Err)
	}
	// Released before the undo, which takes the lock under this run's
	// name: restoreNode's takeOverLock would refuse another host's.
	if err := rh.Unlock(ctx, raw); err != nil {
		return fail(err)
	}
	switch {
	case !found:
		log.Warn("took over a node locked by a run whose process is gone; it had changed nothing there", "holder", dead.String())
		return true
	case rec.State == StateRestarted:
		log.Warn("took over a node locked by a run whose process is gone; the node has restarted since, and nothing that run did is left", "holder", dead.String())
		return true
	case !undoable(rec.State) || rec.State == StateVerified:
		log.Warn("took over a node locked by a run whose process is gone; it had finished there", "found", string(rec.State), "holder", dead.String())
		return true
	}
	restoreNode(ctx, rh, n, rec, ro)
	if n.Err != nil {
		// Its lock is gone all the same: this run reads the node afresh
		// and converges it from what it finds.
		log.Warn("took over a node locked by a run whose process is gone; undoing that run failed", "found", string(rec.State), "err", n.Err)
		return true
	}
	log.Warn("took over a node locked by a run whose process is gone, and undid what it had half done", "found", string(rec.State), "now", string(n.Outcome))
	return true
}
