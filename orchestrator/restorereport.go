package orchestrator

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

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
