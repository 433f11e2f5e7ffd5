package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

// settle reports a run on stdout, marks the verified nodes' network
// available if asked, and turns the outcome into the exit code.
func settle(ctx context.Context, streams Streams, f *applyFlags, rep *orchestrator.Report, runID string, cluster *inventory.Cluster) error {
	if err := writeReport(streams.Out, f, rep, runID); err != nil {
		return err
	}
	var markErr error
	if f.markAvailable && !f.check && ctx.Err() == nil {
		markStreams := streams
		if f.output == "json" {
			markStreams.Out = streams.ErrOut // stdout holds the JSON alone
		}
		markErr = markNetworkAvailable(ctx, markStreams, cluster, rep, f.reach.concurrency)
	}
	if rep.Failed() || markErr != nil {
		err := errors.Join(append(rep.Errors(), markErr)...)
		if ctx.Err() != nil {
			// Interrupted in any phase, the rollback included.
			return &exitError{code: ExitInterrupted, err: err}
		}
		return &exitError{code: ExitError, err: err}
	}
	if p := rep.Probe; p != nil {
		if pairs, _, failed := p.Counts(); failed > 0 {
			return &exitError{code: ExitError, err: fmt.Errorf("the probe: %d of %d pairs did not answer (routes stay as they are: a probe rolls nothing back)", failed, pairs)}
		}
	}
	if f.check && rep.Changes() && !f.probeVerb {
		return &exitError{code: ExitChanges}
	}
	return nil
}

// writeReport prints the report as -o asks: JSON, or the diff (check)
// and the summary.
func writeReport(out io.Writer, f *applyFlags, rep *orchestrator.Report, runID string) error {
	if f.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep.JSON(runID))
	}
	if f.check && !f.probeVerb {
		rep.WriteDiffColor(out, useColor(out))
	}
	rep.WriteSummary(out)
	rep.WriteProbe(out, isTerminal(out))
	if !f.check {
		fmt.Fprintf(out, "run %s\n", runID)
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// useColor: colours only on a terminal, and never with NO_COLOR set to
// anything but "" (no-color.org).
func useColor(w io.Writer) bool {
	return os.Getenv("NO_COLOR") == "" && isTerminal(w)
}

// markNetworkAvailable sets NetworkUnavailable=False on every node whose
// routes were verified and stayed: a node that failed, or whose changes
// were rolled back, is not touched.
func markNetworkAvailable(ctx context.Context, streams Streams, cluster *inventory.Cluster, rep *orchestrator.Report, concurrency int) error {
	var (
		mu             sync.Mutex
		wrote, already int
		errs           []error
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if n.Outcome != orchestrator.Changed && n.Outcome != orchestrator.InSync {
			continue
		}
		g.Go(func() error {
			changed, err := cluster.MarkNetworkAvailable(gctx, n.Name)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case changed:
				wrote++
			default:
				already++
			}
			return nil
		})
	}
	_ = g.Wait()
	fmt.Fprintf(streams.Out, "NetworkUnavailable=False: %d marked, %d already so", wrote, already)
	if len(errs) > 0 {
		fmt.Fprintf(streams.Out, ", %d failed", len(errs))
	}
	fmt.Fprintln(streams.Out)
	return errors.Join(errs...)
}
