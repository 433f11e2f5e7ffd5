// Package app is the routepush command line: flags, configuration and
// output. It wires package inventory, orchestrator and remote together;
// Run is what tests call, Main is what the binary calls.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/remote"
)

// Exit codes, documented in README.md.
const (
	ExitOK          = 0   // done, or --check found nothing to change
	ExitError       = 1   // something failed (changed nodes were rolled back)
	ExitChanges     = 2   // --check found changes
	ExitInterrupted = 130 // stopped by SIGINT/SIGTERM (after rolling back)
)

// exitError carries a non-zero exit code out of Run; err, when set, is
// printed once by ExitCode.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// Streams are the command's standard streams, injected so tests can read
// what it prints.
type Streams struct {
	In          io.Reader
	Out, ErrOut io.Writer
}

// gcPercent replaces Go's default GOGC of 100 unless GOGC is set. Most of
// routepush's heap is long-lived: one SSH connection per node, all open
// from the first read to the end of apply so that no node is changed
// before every node has been reached, and up to 200 changed nodes' SFTP
// sessions with them. The garbage is short-lived table text. With
// GOGC=100 the heap grows to twice the connections' size before a
// collection. At 15 the SFTP sessions kept open (about 20 kB a node) cost
// no more memory than closing them did at GOGC 30: 56.8 MB at 200 nodes
// against 54.7 to 56.8 MB, 153 MB at 1,000 against 159 MB, for about 10 %
// more of routepush's own CPU at 1,000 (bench/RESULTS.md, issue 21).
const gcPercent = 15

// Main runs routepush with the process's arguments and exits.
func Main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	// The first SIGINT/SIGTERM cancels the run, which then rolls back the
	// nodes it changed; a second one abandons that and says how to finish
	// it later: the apply records its run in active, which the handler
	// reads.
	ctx, cancel := context.WithCancelCause(context.Background())
	active := &activeRun{}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("%v received", sig))
		// A passphrase prompt open now would otherwise wait for Enter.
		remote.InterruptPrompt()
		<-sigs
		// os.Exit runs no deferred functions: a passphrase prompt still
		// open would leave the terminal without echo.
		remote.RestoreTerminal()
		fmt.Fprintf(os.Stderr, "ERROR: interrupted again: rollback abandoned%s\n", active.finishLater(os.Args[1:]))
		os.Exit(ExitInterrupted)
	}()
	err := execute(ctx, deps{streams: Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, active: active}, os.Args[1:])
	signal.Stop(sigs)
	os.Exit(ExitCode(err, os.Stderr))
}

// ExitCode prints err once, as "ERROR: ...", and returns the exit code for it.
func ExitCode(err error, w io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(w, "ERROR: %s\n", safetext.Text(ee.err.Error()))
		}
		return ee.code
	}
	// The last line of defence: an error may carry a node's text (an SFTP
	// server's status message, a file's content) that no layer below
	// escaped; no control byte but newline and tab reaches the terminal.
	fmt.Fprintf(w, "ERROR: %s\n", safetext.Text(err.Error()))
	return ExitError
}

// Run runs routepush with args (without the program name).
func Run(ctx context.Context, streams Streams, args []string) error {
	return execute(ctx, deps{streams: streams}, args)
}

// execute is Run with everything the commands are built with; Main's
// deps carry the run the signal handler reports.
func execute(ctx context.Context, d deps, args []string) error {
	cmd := newRootCommand(d)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}
