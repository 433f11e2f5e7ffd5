package orchestrator

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/routepush/routepush/inventory"
)

// RunReader reads what a node keeps of routepush's runs (package remote,
// over SFTP).
type RunReader interface {
	// Runs lists the run ids the node has records of, oldest first.
	Runs(ctx context.Context) ([]string, error)
	// ReadRun returns a record; an error wrapping fs.ErrNotExist if none.
	ReadRun(ctx context.Context, id string) ([]byte, error)
	// HeldLock returns the node's lock file, nil if it is not locked.
	HeldLock(ctx context.Context) ([]byte, error)
}

// RestoreHost is a node `routepush rollback` can read records from and
// restore.
type RestoreHost interface {
	Host
	RunReader
}

// RestoreConnector opens a RestoreHost for a node.
type RestoreConnector func(ctx context.Context, n *inventory.Node) (RestoreHost, error)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	RunID       string // the run to undo; "" for the newest one not undone
	Holder      Holder // the rollback's own identity, for the locks it takes
	Concurrency int
	Logger      *slog.Logger
}

// RestoreReport is what `routepush rollback` did on each node.
type RestoreReport struct {
	RunID    string
	Nodes    []RestoreNode
	Duration time.Duration
}

// RestoreNode is one node's part in a rollback.
type RestoreNode struct {
	Name    string
	Found   RunState // the run's state on the node; "" if it has no record
	Outcome RunState // the state after: rolled-back, rollback-failed, or as found
	Err     error
}

// Failed reports whether any node could not be read or restored.
func (r *RestoreReport) Failed() bool {
	for _, n := range r.Nodes {
		if n.Err != nil {
			return true
		}
	}
	return false
}

// Errors returns every node's error.
func (r *RestoreReport) Errors() []error {
	var errs []error
	for _, n := range r.Nodes {
		if n.Err != nil {
			errs = append(errs, n.Err)
		}
	}
	return errs
}

// WriteSummary prints each node's state before and after.
func (r *RestoreReport) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tFOUND\tNOW")
	restored := 0
	for _, n := range r.Nodes {
		found := string(n.Found)
		if found == "" {
			found = "no record"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Name, found, n.Outcome)
		if n.Outcome == StateRolledBack && n.Found != StateRolledBack {
			restored++
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "run %s: %d nodes restored in %s\n", r.RunID, restored, r.Duration.Round(time.Millisecond))
}

// Restore undoes a run from the records its nodes keep: on every node where
// the run may have changed something (applying, verified, failed,
// rollback-failed) it sends the recorded undo lines, checks that the
// tables read back byte for byte as the run's snapshot, and records that.
// It needs nothing from the bastion that started the run. A lock the run
// left behind is taken over; a lock of any other run refuses that node.
func Restore(ctx context.Context, nodes []inventory.Node, connect RestoreConnector, opts RestoreOptions) (*RestoreReport, error) {
	start := time.Now()
	if opts.Concurrency <= 0 {
		opts.Concurrency = 50
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &RestoreReport{RunID: opts.RunID, Nodes: make([]RestoreNode, len(nodes))}
	hosts := make([]RestoreHost, len(nodes))
	defer func() {
		for _, h := range hosts {
			if h != nil {
				h.Close()
			}
		}
	}()
	// Connect everywhere, and find the run: the newest one some node has
	// not rolled back.
	latest := make([]string, len(nodes))
	each(ctx, indices(len(nodes)), opts.Concurrency, func(ctx context.Context, i int) {
		n := &rep.Nodes[i]
		n.Name = nodes[i].Name
		h, err := connect(ctx, &nodes[i])
		if err != nil {
			n.Err = err
			return
		}
		hosts[i] = h
		if opts.RunID != "" {
			return
		}
		ids, err := h.Runs(ctx)
		if err != nil {
			n.Err = err
			return
		}
		for k := len(ids) - 1; k >= 0; k-- {
			b, err := h.ReadRun(ctx, ids[k])
			if err != nil {
				n.Err = err
				return
			}
			if rec, err := ParseRunRecord(b); err == nil && undoable(rec.State) {
				latest[i] = rec.RunID
				return
			}
		}
	})
	if opts.RunID == "" {
		for _, id := range latest {
			rep.RunID = max(rep.RunID, id)
		}
		if rep.RunID == "" {
			for _, n := range rep.Nodes {
				if n.Err != nil {
					return rep, nil // the unreadable nodes say why
				}
			}
			return nil, errors.New("no node has a run to roll back")
		}
	}
	log.Info("rolling back", "run", rep.RunID, "nodes", len(nodes))
	each(ctx, indices(len(nodes)), opts.Concurrency, func(ctx context.Context, i int) {
		if hosts[i] != nil && rep.Nodes[i].Err == nil {
			restoreNode(ctx, hosts[i], &rep.Nodes[i], rep.RunID, opts.Holder)
		}
	})
	rep.Duration = time.Since(start)
	return rep, nil
}

// undoable reports whether a run in this state may have changed the node.
func undoable(s RunState) bool {
	return s == StateApplying || s == StateVerified || s == StateFailed || s == StateRollbackFailed
}

func restoreNode(ctx context.Context, h RestoreHost, n *RestoreNode, runID string, self Holder) {
	b, err := h.ReadRun(ctx, runID)
	if errors.Is(err, fs.ErrNotExist) {
		return // the run never got to this node
	}
	if err != nil {
		n.Err = err
		return
	}
	rec, err := ParseRunRecord(b)
	if err != nil {
		n.Err = fmt.Errorf("%s: %w", n.Name, err)
		return
	}
	n.Found, n.Outcome = rec.State, rec.State
	// The run's own lock, left by a process that died, is taken over.
	held, err := h.HeldLock(ctx)
	if err != nil {
		n.Err = err
		return
	}
	if held != nil {
		var other Holder
		if jsonErr := json.Unmarshal(held, &other); jsonErr != nil || other.RunID != runID {
			n.Err = fmt.Errorf("%s: locked by another run: %s", n.Name, held)
			return
		}
		if err := h.Unlock(ctx, held); err != nil {
			n.Err = err
			return
		}
	}
	if !undoable(rec.State) {
		return // planned (nothing sent) or already rolled back
	}
	if err := h.Lock(ctx, self.lockText()); err != nil {
		n.Err = fmt.Errorf("%s: %w", n.Name, err)
		return
	}
	defer func() { _ = h.Unlock(ctx, self.lockText()) }()
	fams, err := rec.Fams()
	if err != nil {
		n.Err = fmt.Errorf("%s: %w", n.Name, err)
		return
	}
	table, applyErr, err := h.Apply(ctx, []byte(rec.Undo), true, fams)
	switch {
	case err != nil:
		n.Err = fmt.Errorf("rollback: %w", err)
	case hex.EncodeToString(table.Digest[:]) != rec.Digest:
		n.Err = fmt.Errorf("%s: rollback: route table differs from before run %s", n.Name, runID)
		if applyErr != nil {
			n.Err = fmt.Errorf("%w (%v)", n.Err, applyErr)
		}
	}
	if n.Err == nil && rec.Persist != nil {
		// The run may have replaced the routes file: put back the one it
		// found (idempotent if it never got that far).
		if err := h.RestorePersisted(ctx, rec.Persist.persisted()); err != nil {
			n.Err = fmt.Errorf("rollback: %w", err)
		}
	}
	n.Outcome = StateRolledBack
	if n.Err != nil {
		n.Outcome = StateRollbackFailed
	}
	if err := h.AppendRun(ctx, runID, marshalState(n.Outcome, time.Now(), n.Err)); err != nil && n.Err == nil {
		n.Err = err
	}
}

func indices(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
