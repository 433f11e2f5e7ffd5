package orchestrator

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
)

// Outcome is what happened to one node.
type Outcome string

// Node outcomes.
const (
	Skipped        Outcome = "skipped"         // not changed: the run stopped before this node
	Unreachable    Outcome = "unreachable"     // could not be connected to; left out within --max-unreachable
	Unknown        Outcome = "unknown"         // the connection was lost mid-batch and not regained: see Err
	Excluded       Outcome = "excluded"        // left out by --limit: not contacted
	InSync         Outcome = "in sync"         // nothing to do
	WouldChange    Outcome = "would change"    // --check found differences
	Changed        Outcome = "changed"         // applied and verified
	Failed         Outcome = "failed"          // see Err
	Refused        Outcome = "refused"         // other owners' routes in the way (see Err); --adopt
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
	// Probe is the pod-to-pod probe's results (Options.Probe), when it
	// ran: after every node had its routes, in a run that did not fail.
	Probe *ProbeReport
}

// NodeReport is the result of a run on one node.
type NodeReport struct {
	Name             string
	Outcome          Outcome
	Duration         time.Duration
	Diff             Diff
	Err, RollbackErr error
	// RecordErr says a state the run reached on the node could not be
	// appended to its record there, or its lock could not be released:
	// the outcome stands, the run fails.
	RecordErr  error
	RolledBack bool
	Persist    *PersistReport // with --persist, once the node was read
	// NoSFTP says the node has no SFTP server: the run went on there
	// without its lock and record (see NoSFTPWarning).
	NoSFTP *host.NoSFTPError
	// Preflight is what preflight found on the node, once read (none
	// with --preflight off).
	Preflight []PreflightFinding
}

// Changes reports whether the node differs from its plan: its routes, or
// with --persist what it would restore at boot.
func (n *NodeReport) Changes() bool { return !n.Diff.Empty() || n.Persist.Changes() }

// Added, Replaced, Removed and Unchanged count the node's routes by what
// the diff found for them: planned routes the node lacks, routes the
// planned ones overwrite (the report's CHANGED column and JSON's
// "changed"), routes the batch deletes, planned routes already there.
func (n *NodeReport) Added() int     { return n.Diff.Add.Len() }
func (n *NodeReport) Replaced() int  { return len(n.Diff.Replace) }
func (n *NodeReport) Removed() int   { return n.Diff.Removed() }
func (n *NodeReport) Unchanged() int { return n.Diff.Unchanged }

// Failed reports whether the run or any node failed (exit code 1),
// a node whose record could not be written included.
func (r *Report) Failed() bool {
	if r.nodeFailed() {
		return true
	}
	for i := range r.Nodes {
		if r.Nodes[i].RecordErr != nil {
			return true
		}
	}
	return false
}

// nodeFailed reports whether the run or a node's outcome failed: what
// decides a rollback (a record that could not be written does not).
func (r *Report) nodeFailed() bool {
	if r.Err != nil {
		return true
	}
	for i := range r.Nodes {
		if o := r.Nodes[i].Outcome; o == Failed || o == RollbackFailed || o == Refused || o == Unknown {
			return true
		}
	}
	return false
}

// Changes reports whether any node differs from its plan (--check's exit
// code is then 2).
func (r *Report) Changes() bool {
	for i := range r.Nodes {
		if r.Nodes[i].Changes() {
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
		if err := r.Nodes[i].RecordErr; err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// WriteDiff prints, node by node, what --check found: routes to add (+),
// to change (~, old -> new) and to delete (-), stale routes kept without
// --prune (-, marked kept), other owners' routes in the way (!) and routes
// that overlap a planned destination (?), which routepush never touches.
func (r *Report) WriteDiff(w io.Writer) { r.WriteDiffColor(w, false) }

// Colours of the diff's markers, on a terminal only (the caller decides,
// and never with NO_COLOR).
var markColors = map[string]string{"+": "32", "-": "31", "~": "33", "!": "1;31", "?": "36"}

// WriteDiffColor is WriteDiff, with each line's marker and route coloured
// when color is set.
func (r *Report) WriteDiffColor(w io.Writer, color bool) {
	line := func(mark, format string, args ...any) {
		text := mark + " " + safetext.Line(fmt.Sprintf(format, args...))
		if color {
			text = "\x1b[" + markColors[mark] + "m" + text + "\x1b[0m"
		}
		fmt.Fprintf(w, "  %s\n", text)
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if n.Outcome != WouldChange && n.Outcome != InSync && n.Outcome != Refused {
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", n.Name, r.diffHeading(n))
		writeNodeDiff(n, r.Plan.Host(i), line)
	}
}

// diffHeading is the line that opens a node's part of the diff.
func (r *Report) diffHeading(n *NodeReport) string {
	table := inTable(r.Plan.Table)
	_, noPersist := errors.AsType[noPersistError](n.Err)
	switch {
	case n.Outcome == Refused && errors.As(n.Err, new(*PreflightError)):
		return fmt.Sprintf("refused by --preflight strict; %d to add, %d to change, %d to delete, %d in sync%s", n.Added(), n.Replaced(), n.Removed(), n.Unchanged(), table)
	case n.Outcome == Refused && noPersist:
		return fmt.Sprintf("refused: no SFTP server for --persist's routes file; %d to add, %d to change, %d to delete, %d in sync%s", n.Added(), n.Replaced(), n.Removed(), n.Unchanged(), table)
	case n.Outcome == Refused:
		return fmt.Sprintf("refused: %d routes of other owners in the way (--adopt replaces them)", len(n.Diff.Conflicts()))
	case n.Diff.Empty() && n.Persist.Changes():
		return fmt.Sprintf("%d routes in sync%s; the routes file to write", n.Unchanged(), table)
	case n.Diff.Empty():
		return fmt.Sprintf("in sync (%d routes%s)", n.Unchanged(), table)
	}
	return fmt.Sprintf("%d to add, %d to change, %d to delete, %d in sync%s", n.Added(), n.Replaced(), n.Removed(), n.Unchanged(), table)
}

// writeNodeDiff writes a node's diff lines, one per route and one per
// --persist drift.
func writeNodeDiff(n *NodeReport, h HostPlan, line func(mark, format string, args ...any)) {
	for _, f := range n.Diff.Remove {
		line("-", "%s (%s)", f.Route(), f.Kind)
	}
	for k := range n.Diff.Add.All() {
		line("+", "%s", h.Route(k))
	}
	for _, c := range n.Diff.Replace {
		line("~", "%s -> %s", c.Old(), h.Route(int(c.Index)))
	}
	for _, f := range n.Diff.Kept {
		mark, text := f.keptLine(h)
		line(mark, "%s", text)
	}
	if p := n.Persist; p != nil {
		// Its warnings are the summary's notes: a cluster has the same on
		// every node.
		for _, d := range p.Drift {
			switch d.Kind {
			case DriftFileMissing:
				line("+", "%s (%s; %d routes)", p.Path, d, h.Len())
			case DriftFileDiffers:
				line("~", "%s (%s)", p.Path, d)
			default:
				line("~", "%s", d)
			}
		}
	}
}

// inTable names a table other than main in the diff's node lines.
func inTable(table string) string {
	if table == "" {
		return ""
	}
	return " in table " + table
}

// WriteSummary prints a table of every node's outcome, the nodes that are no
// destination, and a summary line.
func (r *Report) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tOUTCOME\tADDED\tCHANGED\tREMOVED\tUNCHANGED\tTIME")
	counts := map[Outcome]int{}
	added, replaced, removed := 0, 0, 0
	for i := range r.Nodes {
		n := &r.Nodes[i]
		counts[n.Outcome]++
		if n.Outcome == Excluded {
			continue // the summary line counts them
		}
		if n.Outcome == Changed {
			added += n.Added()
			replaced += n.Replaced()
			removed += n.Removed()
		}
		outcome := string(n.Outcome)
		if n.Outcome == Failed && n.RolledBack {
			outcome = "failed, rolled back"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", n.Name, outcome, n.Added(), n.Replaced(), n.Removed(), n.Unchanged(), n.Duration.Round(time.Millisecond))
	}
	tw.Flush()
	for i := range r.Nodes {
		if n := &r.Nodes[i]; n.Outcome == Unreachable {
			fmt.Fprintf(w, "note: %s was left out, unreachable (--max-unreachable): %s\n", n.Name, safetext.Line(n.Err.Error()))
		}
	}
	for i := range r.Nodes {
		if warn := r.Nodes[i].NoSFTPWarning(); warn != "" {
			fmt.Fprintf(w, "note: %s\n", safetext.Line(warn))
		}
	}
	r.writePersistNotes(w)
	problems, problemNodes, unread := r.writePreflight(w)
	for i := range r.Plan.Nodes {
		if len(r.Plan.Nodes[i].PodCIDRs) == 0 {
			fmt.Fprintf(w, "note: %s has no pod CIDR: it receives routes but no node routes to it\n", r.Plan.Nodes[i].Name)
		}
	}
	var parts []string
	for _, o := range []Outcome{Changed, WouldChange, InSync, Refused, Failed, Unknown, RolledBack, RollbackFailed, Unreachable, Skipped, Excluded} {
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
		fmt.Fprintf(w, "; %d routes added, %d changed, %d removed", added, replaced, removed)
	}
	if p := r.Probe; p != nil {
		pairs, passed, failed := p.Counts()
		fmt.Fprintf(w, "; probe: %d pairs, %d answered, %d did not", pairs, passed, failed)
	}
	if problems > 0 || unread > 0 {
		fmt.Fprintf(w, "; preflight: %s on %s", plural(problems, "problem"), plural(problemNodes, "node"))
		if unread > 0 {
			fmt.Fprintf(w, ", %d not read", unread)
		}
	}
	fmt.Fprintln(w)
}

// writePreflight prints what preflight found, each finding once with the
// nodes it was found on (a cluster set up alike has the same on many),
// and counts the problems, the nodes they are on and what was not read.
func (r *Report) writePreflight(w io.Writer) (problems, problemNodes, unread int) {
	type key struct {
		why, fix string
		notRead  bool
	}
	var order []key
	nodes := map[key][]string{}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		has := false
		for _, f := range n.Preflight {
			if f.Problem() {
				problems++
				has = true
			} else {
				unread++
			}
			k := key{f.Why, f.Fix, !f.Problem()}
			if nodes[k] == nil {
				order = append(order, k)
			}
			nodes[k] = append(nodes[k], n.Name)
		}
		if has {
			problemNodes++
		}
	}
	for _, k := range order {
		list := nodeList(nodes[k])
		if k.notRead {
			fmt.Fprintf(w, "preflight: %s: not read: %s\n", list, oneLine(k.why))
			continue
		}
		fmt.Fprintf(w, "preflight: %s: %s\n  fix: %s\n", list, oneLine(k.why), oneLine(k.fix))
	}
	return problems, problemNodes, unread
}

// writePersistNotes prints each --persist warning once, with the nodes it
// applies to: on a large cluster it is usually all of them.
func (r *Report) writePersistNotes(w io.Writer) {
	var warnings []string
	nodes := map[string][]string{}
	for i := range r.Nodes {
		if p := r.Nodes[i].Persist; p != nil {
			for _, warn := range p.Warnings {
				if nodes[warn] == nil {
					warnings = append(warnings, warn)
				}
				nodes[warn] = append(nodes[warn], r.Nodes[i].Name)
			}
		}
	}
	for _, warn := range warnings {
		fmt.Fprintf(w, "note: %s: %s\n", nodeList(nodes[warn]), safetext.Line(warn))
	}
}

// nodeList names the nodes a note is about, the first three and how many
// more: on a large cluster it is usually all of them.
func nodeList(names []string) string {
	if len(names) > 3 {
		return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
	}
	return strings.Join(names, ", ")
}

// plural is n things, or 1 thing.
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// oneLine is text already escaped where it holds a node's words (a
// finding's, a probe's), for one line of output: safetext's last line of
// defence, which leaves its escapes as they are, and no line or tab
// breaks.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(safetext.Text(s))
}
