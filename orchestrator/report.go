package orchestrator

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Outcome is what happened to one node.
type Outcome string

// Node outcomes.
const (
	Skipped        Outcome = "skipped"         // not changed: the run stopped before this node
	InSync         Outcome = "in sync"         // nothing to do
	WouldChange    Outcome = "would change"    // --check found differences
	Applied        Outcome = "changed"         // applied and verified
	Failed         Outcome = "failed"          // see Err
	RolledBack     Outcome = "rolled back"     // changed, then restored exactly
	RollbackFailed Outcome = "rollback failed" // see RollbackErr: inspect by hand
)

// Report is the result of a run.
type Report struct {
	Check    bool
	Plan     *Plan
	Nodes    []NodeReport // in inventory order
	Duration time.Duration
	Err      error // what stopped the run as a whole (e.g. an interrupt)
}

// NodeReport is the result of a run on one node.
type NodeReport struct {
	Name             string
	Outcome          Outcome
	Duration         time.Duration
	Diff             Diff
	Err, RollbackErr error
	RolledBack       bool
}

// Added, Changed and Unchanged count the node's routes by what the diff
// found for them.
func (n *NodeReport) Added() int     { return n.Diff.Add.Len() }
func (n *NodeReport) Changed() int   { return len(n.Diff.Replace) }
func (n *NodeReport) Unchanged() int { return n.Diff.Unchanged }

// Failed reports whether the run or any node failed (exit code 1).
func (r *Report) Failed() bool {
	if r.Err != nil {
		return true
	}
	for i := range r.Nodes {
		if r.Nodes[i].Outcome == Failed || r.Nodes[i].Outcome == RollbackFailed {
			return true
		}
	}
	return false
}

// Changes reports whether any node differs from its plan (--check's exit
// code is then 2).
func (r *Report) Changes() bool {
	for i := range r.Nodes {
		if !r.Nodes[i].Diff.Empty() {
			return true
		}
	}
	return false
}

// Errors returns every node's error, in node order, for printing once.
func (r *Report) Errors() []error {
	var errs []error
	if r.Err != nil {
		errs = append(errs, r.Err)
	}
	for i := range r.Nodes {
		if err := r.Nodes[i].Err; err != nil {
			errs = append(errs, err)
		}
		if err := r.Nodes[i].RollbackErr; err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// WriteDiff prints, node by node, the routes --check would add (+) or
// change (~, old -> new).
func (r *Report) WriteDiff(w io.Writer) {
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if n.Outcome != WouldChange && n.Outcome != InSync {
			continue
		}
		h := r.Plan.Host(i)
		if n.Diff.Empty() {
			fmt.Fprintf(w, "%s: in sync (%d routes)\n", n.Name, n.Unchanged())
			continue
		}
		fmt.Fprintf(w, "%s: %d to add, %d to change, %d in sync\n", n.Name, n.Added(), n.Changed(), n.Unchanged())
		for k := range n.Diff.Add.All() {
			fmt.Fprintf(w, "  + %s\n", h.Route(k))
		}
		for _, c := range n.Diff.Replace {
			fmt.Fprintf(w, "  ~ %s -> %s\n", c.Old, h.Route(int(c.Index)))
		}
	}
}

// WriteSummary prints a table of every node's outcome, the nodes that are no
// destination, and a summary line.
func (r *Report) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tOUTCOME\tADDED\tCHANGED\tUNCHANGED\tTIME")
	counts := map[Outcome]int{}
	added, changed := 0, 0
	for i := range r.Nodes {
		n := &r.Nodes[i]
		counts[n.Outcome]++
		if n.Outcome == Applied {
			added += n.Added()
			changed += n.Changed()
		}
		outcome := string(n.Outcome)
		if n.Outcome == Failed && n.RolledBack {
			outcome = "failed, rolled back"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", n.Name, outcome, n.Added(), n.Changed(), n.Unchanged(), n.Duration.Round(time.Millisecond))
	}
	tw.Flush()
	for i := range r.Plan.Nodes {
		if len(r.Plan.Nodes[i].PodCIDRs) == 0 {
			fmt.Fprintf(w, "note: %s has no pod CIDR: it receives routes but no node routes to it\n", r.Plan.Nodes[i].Name)
		}
	}
	var parts []string
	for _, o := range []Outcome{Applied, WouldChange, InSync, Failed, RolledBack, RollbackFailed, Skipped} {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
		}
	}
	verb := "done"
	if r.Check {
		verb = "checked"
	}
	fmt.Fprintf(w, "%d nodes %s in %s: %s", len(r.Nodes), verb, r.Duration.Round(time.Millisecond), strings.Join(parts, ", "))
	if !r.Check {
		fmt.Fprintf(w, "; %d routes added, %d changed", added, changed)
	}
	fmt.Fprintln(w)
}
