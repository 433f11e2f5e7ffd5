package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"github.com/routepush/routepush/route"
)

// undoTarget is what undoing a run on a node needs: the lines that put its
// tables back, the digest they had before the run, and the digest of the
// tables as the run left them (nil when they were never read, or when the
// operator forces the undo).
type undoTarget struct {
	node, runID string
	lines       []byte
	fams        []route.Family
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
// a failing run and for `routepush rollback` alike: it sends the undo
// lines with -force (some are for changes the run never got to make) only
// while the tables are still as the run left them (after), and then checks
// that they read back byte for byte as before the run.
func undoNode(ctx context.Context, h Host, t undoTarget) error {
	table, applyErr, err := h.Apply(ctx, t.lines, true, t.fams, t.after)
	var changed *route.ChangedError
	switch {
	case errors.As(err, &changed):
		return &ChangedSinceError{Node: t.node, RunID: t.runID}
	case err != nil:
		return fmt.Errorf("rollback: %w", err)
	case table.Digest != t.before:
		err := fmt.Errorf("%s: rollback: route table differs from before run %s", t.node, t.runID)
		if applyErr != nil {
			err = fmt.Errorf("%w (%v)", err, applyErr)
		}
		return err
	}
	return nil
}
