// Package host is what a node's host reports to package orchestrator when
// it reads or changes the node's tables: the result of a batch, and the
// errors the orchestrator decides on. Package remote produces them over
// SSH; tests' fakes produce them in memory. Each error kind below is one
// decision the orchestrator takes (see orchestrator.Host), found with
// errors.As; any other error fails the node.
package host

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// ApplyResult is what applying a batch left on a node.
type ApplyResult struct {
	// Table is the node's tables as read right after the batch, in the
	// same session.
	Table route.Table
	// BatchErr is ip's refusal of a line of the batch (with force, the
	// first of those it carried on past): the node's own message. The
	// lines before it are in the kernel. nil when every line applied.
	BatchErr error
	// FailedLine is the 1-based batch line ip refused, when it said
	// which; 0 otherwise.
	FailedLine int
}

// UnreachableError is a node that could not be connected to at all (no
// TCP connection), as opposed to one that refused the login or showed
// another host key: --max-unreachable may leave the first kind out,
// never the second.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// LostError is a batch whose session or connection failed before ip said
// how it went: the batch may or may not be in the kernel, so the
// orchestrator reaches the node again to find out.
type LostError struct{ Err error }

func (e *LostError) Error() string { return e.Err.Error() }
func (e *LostError) Unwrap() error { return e.Err }

// NotSentError is a batch not sent at all: what failed came before its
// first line (starting ip, reading the tables again to compare), so the
// node is as it was and there is nothing to undo there.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return "nothing was sent: " + e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }

// ChangedError is a node whose tables were not what they had been read as
// when a batch was about to go: someone else changed them in between, so
// the batch was not sent. Table is the tables as found then.
type ChangedError struct {
	Host  string // node name
	Table route.Table
}

func (e *ChangedError) Error() string {
	return e.Host + ": the route table changed since it was read; nothing was sent"
}

// LockedError says another run holds a node's lock: the orchestrator waits
// (--wait-lock), and names the holder, from Holder, when it gives up.
type LockedError struct {
	Host   string // node name
	Holder []byte // the lock file's content, as its holder wrote it
}

func (e *LockedError) Error() string {
	// The holder's text is the node's: escaped.
	return fmt.Sprintf("%s: locked by another routepush run: %s", e.Host, safetext.Line(strings.TrimSpace(string(e.Holder))))
}

// NoSFTPError is a node without an SFTP server (a Dropbear node without
// /usr/lib/sftp-server, an sshd_config without a Subsystem sftp): the
// files routepush keeps there (the lock, run records, the --persist
// routes file) cannot be read or written. Its routes can still be read,
// changed, verified and restored within a run: that all goes through ip.
// What the run does without those files is the orchestrator's decision.
type NoSFTPError struct {
	Host string // node name
	// Why is what the node did when asked for SFTP (its shell's message,
	// the exit status), already escaped.
	Why string
	// Fix is what to install or configure there.
	Fix string
}

func (e *NoSFTPError) Error() string {
	return fmt.Sprintf("%s: no SFTP server (%s): %s", e.Host, e.Why, e.Fix)
}

// Without says what a node without SFTP goes without (what), and what to
// install: the same node, said the same way, whatever needs SFTP.
func (e *NoSFTPError) Without(what string) string {
	return fmt.Sprintf("%s: no SFTP server (%s): %s; %s", e.Host, e.Why, what, e.Fix)
}

// ProbeResult is what a node's probe of one address said: how many echo
// requests went from the source and how many replies came back. Err says
// why there is no count (the node's words, escaped); "" when there is.
type ProbeResult struct {
	Dst            netip.Addr
	Sent, Received int
	Err            string
}
