package orchestrator

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
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
	// RunID is the run to undo; "" undoes on each node the newest run of
	// its own records that may have changed it and was not undone.
	RunID       string
	Holder      Holder // the rollback's own identity, for the locks it takes
	Concurrency int
	Logger      *slog.Logger
	// ProcessAlive tells whether a process of this host still runs: a
	// lock whose holder is alive is never taken over.
	ProcessAlive func(pid int) bool
	// Force undoes a node whose tables changed since the run changed
	// them, a run older than a later one that changed the node, and takes
	// over a lock held from another host (whose process routepush cannot
	// see). A lock held by a live process of this host is never taken.
	Force bool
}

// RestoreReport is what `routepush rollback` did on each node.
type RestoreReport struct {
	Nodes    []RestoreNode
	Duration time.Duration
}

// RestoreNode is one node's part in a rollback.
type RestoreNode struct {
	Name    string
	RunID   string   // the run undone there; "" if none
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

// RunIDs returns the runs undone, in order.
func (r *RestoreReport) RunIDs() []string {
	var ids []string
	for _, n := range r.Nodes {
		if n.RunID != "" && !slices.Contains(ids, n.RunID) {
			ids = append(ids, n.RunID)
		}
	}
	slices.Sort(ids)
	return ids
}

// WriteSummary prints each node's run and state before and after.
func (r *RestoreReport) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRUN\tFOUND\tNOW")
	restored := 0
	for _, n := range r.Nodes {
		found, run := string(n.Found), n.RunID
		if found == "" {
			found = "no record"
		}
		if run == "" {
			run = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, run, found, n.Outcome)
		if n.Outcome == StateRolledBack && n.Found != StateRolledBack {
			restored++
		}
	}
	tw.Flush()
	runs := "run " + strings.Join(r.RunIDs(), ", run ")
	if len(r.RunIDs()) == 0 {
		runs = "no run"
	}
	fmt.Fprintf(w, "%s: %d nodes restored in %s\n", runs, restored, r.Duration.Round(time.Millisecond))
}

// Restore undoes a run from the records its nodes keep, with the same
// undo as a failing run (undoNode): on every node where the run may have
// changed something (applying, verified, failed, rollback-failed) it sends
// the recorded undo lines while the tables are still as the run left them,
// checks that they read back byte for byte as the run's snapshot, and
// records that. It needs nothing from the bastion that started the run.
// Without a run id each node undoes the newest run of its own records that
// may have changed it. A lock the run left is taken over only when its
// process is provably gone (this host, pid not running) or with Force from
// another host; a lock of any other run refuses that node.
func Restore(ctx context.Context, nodes []inventory.Node, connect RestoreConnector, opts RestoreOptions) (*RestoreReport, error) {
	start := time.Now()
	if opts.Concurrency <= 0 {
		opts.Concurrency = 50
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &RestoreReport{Nodes: make([]RestoreNode, len(nodes))}
	hosts := make([]RestoreHost, len(nodes))
	records := make([]RunRecord, len(nodes))
	defer func() {
		for _, h := range hosts {
			if h != nil {
				h.Close()
			}
		}
	}()
	// First every node says which run it would undo, from its own records.
	each(ctx, indices(len(nodes)), opts.Concurrency, func(ctx context.Context, i int) {
		n := &rep.Nodes[i]
		n.Name = nodes[i].Name
		h, err := connect(ctx, &nodes[i])
		if err != nil {
			n.Err = err
			return
		}
		hosts[i] = h
		if rec, ok := chooseRun(ctx, h, n, &opts); ok {
			records[i] = rec
			n.RunID, n.Found, n.Outcome = rec.RunID, rec.State, rec.State
		}
	})
	if ids := rep.RunIDs(); opts.RunID == "" && len(ids) > 1 {
		// Undoing each node's newest run would roll nodes back to
		// different points (an older, successful run where a newer one
		// never got): the operator says which.
		var which []string
		for _, n := range rep.Nodes {
			if n.RunID != "" {
				which = append(which, n.Name+": "+n.RunID)
			}
		}
		return nil, fmt.Errorf("the nodes' newest runs not rolled back differ (%s); say which to undo with --run", summarize(which))
	}
	if opts.RunID == "" && len(rep.RunIDs()) == 0 && !rep.Failed() {
		return nil, errors.New("no node has a run to roll back")
	}
	log.Info("rolling back", "run", opts.RunID, "nodes", len(nodes))
	each(ctx, indices(len(nodes)), opts.Concurrency, func(ctx context.Context, i int) {
		if hosts[i] == nil || rep.Nodes[i].RunID == "" || rep.Nodes[i].Err != nil {
			return
		}
		// Once a node is reached, its restore runs to the end (each step
		// bounded by the command timeout): an interrupt cutting it short
		// would leave the node locked by this rollback. A second one ends
		// the process.
		restoreNode(context.WithoutCancel(ctx), hosts[i], &rep.Nodes[i], records[i], &opts)
	})
	rep.Duration = time.Since(start)
	return rep, nil
}

// undoable reports whether a run in this state may have changed the node.
func undoable(s RunState) bool {
	return s == StateApplying || s == StateVerified || s == StateFailed || s == StateRollbackFailed
}

// chooseRun picks the run to undo on a node: the one asked for, unless a
// later run changed the node since (then only with Force), or else the
// newest run of the node's records that may have changed it.
func chooseRun(ctx context.Context, h RestoreHost, n *RestoreNode, opts *RestoreOptions) (RunRecord, bool) {
	ids, err := h.Runs(ctx)
	if err != nil {
		n.Err = err
		return RunRecord{}, false
	}
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
		rec, err := ParseRunRecord(b)
		if err == nil && rec.RunID != ids[k] {
			err = fmt.Errorf("run record %s.json is of run %s", ids[k], rec.RunID)
		}
		if err != nil {
			n.Err = fmt.Errorf("%s: %w", n.Name, err)
			return RunRecord{}, false
		}
		switch {
		case opts.RunID == "" && undoable(rec.State):
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

func restoreNode(ctx context.Context, h RestoreHost, n *RestoreNode, rec RunRecord, opts *RestoreOptions) {
	if !takeOverLock(ctx, h, n, rec.RunID, opts) || !undoable(rec.State) {
		return // planned (nothing sent) or already rolled back
	}
	if err := h.Lock(ctx, opts.Holder.lockText()); err != nil {
		n.Err = fmt.Errorf("%s: %w", n.Name, err)
		return
	}
	defer func() { _ = h.Unlock(ctx, opts.Holder.lockText()) }()
	t := undoTarget{node: n.Name, runID: rec.RunID}
	var err error
	if rec.Node != n.Name {
		err = fmt.Errorf("it is node %q's, not this node's", rec.Node)
	}
	if err == nil {
		t.lines, err = checkUndo(rec.Undo)
	}
	if err == nil {
		t.fams, err = rec.Fams()
	}
	if err == nil {
		t.before, err = decodeDigest(rec.Digest)
	}
	if err == nil && rec.After != "" && !opts.Force {
		var after [32]byte
		after, err = decodeDigest(rec.After)
		t.after = &after
	}
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
	if err := h.AppendRun(ctx, rec.RunID, marshalState(n.Outcome, time.Now(), n.Err, digest)); err != nil && n.Err == nil {
		n.Err = err
	}
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

func indices(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// checkUndo reads the undo lines of a run record, which comes from the node
// and is sent back to it as root: every line must be a `route add` or an
// exact `route del` that routepush itself renders the same, and none may
// touch a connected or default route. Anything else (`netns exec`, a
// stray option, a second command on a line) refuses the record.
func checkUndo(text string) ([]byte, error) {
	var b route.Batch
	// Walked line by line, not split: a record's undo is the node's text,
	// and a slice of its lines would cost 16 bytes a newline.
	rest := strings.TrimSuffix(text, "\n")
	for n := 0; rest != ""; n++ {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if line == "" {
			continue
		}
		verb, spec, ok := strings.Cut(line, " ")
		var words string
		if ok {
			words, spec, ok = strings.Cut(spec, " ")
		}
		if !ok || verb != "route" || (words != "add" && words != "del") {
			return nil, fmt.Errorf("undo line %d is not a route add or del: %q", n+1, line)
		}
		dst, _, _ := strings.Cut(spec, " ")
		fam := route.IPv4
		if strings.Contains(dst, ":") {
			fam = route.IPv6
		}
		r, err := route.ParseSpec(spec, fam)
		if err != nil {
			return nil, fmt.Errorf("undo line %d: %w: %q", n+1, err, line)
		}
		if r.Dst.Bits() == 0 || connected(&r) {
			return nil, fmt.Errorf("undo line %d touches a default or connected route: %q", n+1, line)
		}
		var one route.Batch
		if words == "add" {
			one.Add(r)
		} else {
			one.Delete(r)
		}
		if string(one.Bytes()) != line+"\n" {
			return nil, fmt.Errorf("undo line %d is not as routepush writes it: %q", n+1, line)
		}
		if words == "add" {
			b.Add(r)
		} else {
			b.Delete(r)
		}
	}
	return b.Bytes(), nil
}
