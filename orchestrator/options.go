package orchestrator

import (
	"fmt"
	"log/slog"
	"time"
)

// RollbackMode says which nodes to restore when a run fails.
type RollbackMode string

// Rollback modes, as given to --rollback.
const (
	RollbackAll  RollbackMode = "all"  // every node the run changed
	RollbackHost RollbackMode = "host" // only the nodes that failed
	RollbackNone RollbackMode = "none" // leave everything as it is
)

// ParseRollbackMode checks a --rollback value.
func ParseRollbackMode(s string) (RollbackMode, error) {
	switch m := RollbackMode(s); m {
	case RollbackAll, RollbackHost, RollbackNone:
		return m, nil
	}
	return "", fmt.Errorf("unknown rollback mode %q (want all, host or none)", s)
}

// Defaults of Options and RestoreOptions, set by their withDefaults.
const (
	defaultConcurrency   = 50
	defaultKeep          = 10
	defaultSettleTimeout = 5 * time.Minute
)

// DefaultMaxIdleConnections keeps every connection of a run of up to
// 1,000 nodes open while it waits: about 95 MB of routepush's memory, as
// measured at 1,000 nodes (bench/RESULTS.md). A larger run parks the
// rest, for two more connections each.
const DefaultMaxIdleConnections = 1000

// Options tune a run. Zero values are sensible defaults.
type Options struct {
	Concurrency int          // nodes worked on at once; default 50
	Check       bool         // only read and diff, change nothing
	Rollback    RollbackMode // default RollbackAll
	Logger      *slog.Logger // status messages; default discards
	// Holder, when its RunID is set, makes the run lock every node before
	// reading it and record the run on the node before changing it
	// (Journal), so that it can be undone after a crash.
	Holder Holder
	Keep   int // run records kept per node; default 10
	// ProcessAlive tells whether a process of this host still runs: a lock
	// whose holder is gone says so.
	ProcessAlive func(pid int) bool
	// TakeOver, when set, says whether the run holding a node's lock is
	// provably gone (its process no longer runs). This run then takes the
	// node over instead of failing it (takeover.go): what the dead run
	// may have half done there is undone from its record, as `routepush
	// rollback --run` would, and its lock released. routepush watch sets
	// it, so that a watcher killed mid-round does not block the next
	// leader; apply leaves that decision to the operator.
	TakeOver func(Holder) bool
	// Progress, when set, is kept up to date for a display.
	Progress *Progress
	// Limit, when set, says which nodes the run acts on (--limit); the
	// others are not contacted, and stay destinations of the plan.
	Limit func(node string) bool
	// Canary, like Ansible's serial: apply and verify this many nodes
	// first, and the rest only if they all succeed. 0: all at once.
	Canary int
	// WaitLock is how long to wait for a node another run has locked,
	// instead of failing at once.
	WaitLock time.Duration
	// MaxUnreachable is how many nodes may be unreachable at connect time
	// (no connection at all) and be left out; past it the run changes
	// nothing. Default 0.
	MaxUnreachable int
	// Independent runs each node on its own, as the watcher's rounds do:
	// read, apply, verify and settle one node without waiting for any
	// other, so a node that takes its connect timeout holds back none;
	// a node that fails is rolled back alone (whatever Rollback says,
	// unless RollbackNone) and stops nothing else. Canary and
	// MaxUnreachable do not apply; unreachable nodes are only reported.
	// An interrupt lets a node whose batch is on its way finish.
	Independent bool
	// CompactRecords leaves the tables as read (the snapshot, for people)
	// out of the run records: they keep the digests and the batches that
	// apply and undo the run, which is all a rollback uses. The watcher's
	// rounds write a record on every node they change, round after round,
	// and the table was most of each.
	CompactRecords bool
	// NodeDone, in an Independent run, is told of each node once it is
	// settled and released (from that node's goroutine), so the caller
	// need not wait for the run's slowest node to act on the others.
	NodeDone func(NodeReport)
	// Persist installs each node's routes to be replayed at boot once
	// they verify (Persister); with Check, reports where that differs.
	Persist bool
	// SettleTimeout bounds what a run does on each node once its outcome
	// is known: rolling back, recording states, releasing the lock, from
	// when that node's turn comes. It runs on a context of its own, so an
	// interrupt never cuts it short (a second one abandons it). Default 5
	// minutes.
	SettleTimeout time.Duration
	// MaxIdleConnections bounds the nodes that wait for others with their
	// connection open: from their read to their apply, and once verified
	// until the run's outcome is final. The first to wait keep theirs;
	// past the bound a waiting node is parked (nodeRun.park): its
	// connection is closed and opened again when its turn comes, under
	// the same lock, and its batch still goes only if its tables are as
	// read. An open connection costs routepush about 95 KB (x/crypto/ssh
	// keeps a buffer the size of the largest packet it carried, a table
	// read's 32 KB, and a few goroutines) and the node a session; a
	// reconnect costs a handshake, the node's share mostly. A fifth of
	// the nodes kept open also keep their SFTP session (about 20 KB
	// more, run.keepFiles); the others close it while they wait. Default
	// 1000; negative: none stays open.
	MaxIdleConnections int
	// Preflight is what the run does with what pods need beyond routes
	// (preflight.go): report it (the default), refuse the nodes that
	// lack it, or not look (the Host then reads no facts).
	Preflight PreflightMode
	// Probe, once every node has its routes, makes each node ping this
	// many others' pod addresses from its own (probe.go); ProbeAll every
	// other; 0 none. The Hosts must read facts (preflight not off): the
	// addresses come from there.
	Probe int
}

// PreflightMode is --preflight.
type PreflightMode string

// Preflight modes.
const (
	PreflightReport PreflightMode = "report"
	PreflightStrict PreflightMode = "strict"
	PreflightOff    PreflightMode = "off"
)

// ParsePreflightMode checks a --preflight value.
func ParsePreflightMode(s string) (PreflightMode, error) {
	switch m := PreflightMode(s); m {
	case PreflightReport, PreflightStrict, PreflightOff:
		return m, nil
	case "":
		return PreflightReport, nil
	}
	return "", fmt.Errorf("--preflight %q: give report, strict or off", s)
}

// withDefaults returns the options with every zero value that stands for
// a default replaced by it: the one place Run's defaults are set.
func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = defaultConcurrency
	}
	if o.Rollback == "" {
		o.Rollback = RollbackAll
	}
	o.Logger = orDiscard(o.Logger)
	if o.Keep <= 0 {
		o.Keep = defaultKeep
	}
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = defaultSettleTimeout
	}
	if o.MaxIdleConnections == 0 {
		o.MaxIdleConnections = DefaultMaxIdleConnections
	}
	if o.Preflight == "" {
		o.Preflight = PreflightReport
	}
	return o
}

// journaling reports whether the run locks and records every node.
func (o *Options) journaling() bool { return o.Holder.RunID != "" && !o.Check }

// orDiscard is log, or a logger that discards everything if it is nil.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
