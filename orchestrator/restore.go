package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// RunID is the run to undo; "" undoes on each node the newest run of
	// its own records that may have changed it and was not undone.
	RunID       string
	Holder      Holder       // the rollback's own identity, for the locks it takes
	Concurrency int          // nodes worked on at once; default 50
	Logger      *slog.Logger // status messages; default discards
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

// withDefaults returns the options with their defaults set, as
// Options.withDefaults does for a run.
func (o RestoreOptions) withDefaults() RestoreOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = defaultConcurrency
	}
	o.Logger = orDiscard(o.Logger)
	return o
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
//
// Like Run it goes in phases: every node chooses the run it would undo,
// the nodes must agree on one, and each then undoes it.
func Restore(ctx context.Context, nodes []inventory.Node, connect RestoreConnector, opts RestoreOptions) (*RestoreReport, error) {
	r := &restore{opts: opts.withDefaults(), start: time.Now(),
		rep:   &RestoreReport{Nodes: make([]RestoreNode, len(nodes))},
		hosts: make([]RestoreHost, len(nodes)), records: make([]RunRecord, len(nodes)),
	}
	defer r.close()
	r.choose(ctx, nodes, connect)
	if err := r.agree(); err != nil {
		return nil, err
	}
	r.opts.Logger.Info("rolling back", "run", r.opts.RunID, "nodes", len(nodes))
	r.undo(ctx)
	r.rep.Duration = time.Since(r.start)
	return r.rep, nil
}

// restore is one `routepush rollback`, through its phases.
type restore struct {
	opts    RestoreOptions // with defaults
	rep     *RestoreReport
	hosts   []RestoreHost // nil where the node could not be reached
	records []RunRecord   // the run each node undoes, if any
	start   time.Time
}

// choose connects to every node and has it say, from its own records,
// which run it would undo.
func (r *restore) choose(ctx context.Context, nodes []inventory.Node, connect RestoreConnector) {
	each(ctx, indices(len(nodes)), r.opts.Concurrency, func(ctx context.Context, i int) {
		n := &r.rep.Nodes[i]
		n.Name = nodes[i].Name
		h, err := connect(ctx, &nodes[i])
		if err != nil {
			n.Err = err
			return
		}
		r.hosts[i] = h
		if rec, ok := chooseRun(ctx, h, n, &r.opts); ok {
			r.records[i] = rec
			n.RunID, n.Found, n.Outcome = rec.RunID, rec.State, rec.State
		}
	})
}

// agree refuses to go on without --run when the nodes would undo
// different runs, or when none has a run to undo.
func (r *restore) agree() error {
	if r.opts.RunID != "" {
		return nil
	}
	ids := r.rep.RunIDs()
	if len(ids) > 1 {
		// Undoing each node's newest run would roll nodes back to
		// different points (an older, successful run where a newer one
		// never got): the operator says which.
		var which []string
		for _, n := range r.rep.Nodes {
			if n.RunID != "" {
				which = append(which, n.Name+": "+n.RunID)
			}
		}
		return fmt.Errorf("the nodes' newest runs not rolled back differ (%s); say which to undo with --run", summarize(which))
	}
	if len(ids) == 0 && !r.rep.Failed() {
		return errors.New("no node has a run to roll back")
	}
	return nil
}

// undo restores every node that has a run to undo.
func (r *restore) undo(ctx context.Context) {
	each(ctx, indices(len(r.hosts)), r.opts.Concurrency, func(ctx context.Context, i int) {
		if r.hosts[i] == nil || r.rep.Nodes[i].RunID == "" || r.rep.Nodes[i].Err != nil {
			return
		}
		// Once a node is reached, its restore runs to the end (each step
		// bounded by the command timeout): an interrupt cutting it short
		// would leave the node locked by this rollback. A second one ends
		// the process.
		restoreNode(context.WithoutCancel(ctx), r.hosts[i], &r.rep.Nodes[i], r.records[i], &r.opts)
	})
}

// close disconnects from every node.
func (r *restore) close() {
	for _, h := range r.hosts {
		if h != nil {
			h.Close()
		}
	}
}

func indices(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
