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
// before every node has been reached. The garbage is short-lived table
// text. With GOGC=100 the heap grows to twice the connections' size
// before a collection; at 30 a 1,000-node run peaks near 90 MB instead of
// 125 MB, for about 1 s more CPU (bench/RESULTS.md).
const gcPercent = 30

// Main runs routepush with the process's arguments and exits.
func Main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
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
			fmt.Fprintf(w, "ERROR: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(w, "ERROR: %v\n", err)
	return ExitError
}

// Run runs routepush with args (without the program name).
func Run(ctx context.Context, streams Streams, args []string) error {
	cmd := newRootCommand(ctx, streams)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}
