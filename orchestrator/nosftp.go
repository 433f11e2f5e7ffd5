package orchestrator

import (
	"errors"

	"github.com/routepush/routepush/host"
)

// A node without an SFTP server (a Dropbear node without
// /usr/lib/sftp-server; host.NoSFTPError) can have its routes read,
// changed, verified and, within the run, restored: all of that goes
// through ip, and the restore works from the snapshot this run read, not
// from a record. What it cannot have is what lives in files on the node:
//
//   - the lock: the run goes on without it. A concurrent run can then
//     reach the node too; the compare before swap (Apply with expect)
//     still refuses a batch to tables changed since they were read, and
//     the lock of any other node the run takes still stops a second run
//     over the same cluster: nodes are locked alone, in name order, until
//     one with SFTP is (run.go read), so two runs started at once do not
//     both pass a first node without SFTP and deadlock on the rest.
//   - the run record: the run goes on without it. If routepush itself
//     dies mid-run, `routepush rollback` has nothing to undo there; the
//     next run converges the node again, as it would any node.
//   - the --persist routes file and unit: the node is refused, before
//     anything changes anywhere, naming what to install: routes that
//     vanish at the next boot are not what --persist promises.
//
// The first two are said once per node (NodeReport.NoSFTPWarning), with
// what to install: the issue asked for nodes converged, or said so once,
// and a missing lock and record weaken the guarantees only where
// routepush itself is killed or two runs race, both rare, where refusing
// would leave the node never converged.

// noSFTPCost is what a node without SFTP goes without in a run.
const noSFTPCost = "no lock or run record on this node: it is restored if the run fails, but no lock keeps a concurrent run off it, and `routepush rollback` cannot undo the run there if routepush dies mid-run"

// NoSFTPWarning is the note a run gives once for a node without an SFTP
// server that it went on with: "" for any other node, and for one
// refused for it (--persist), whose error says so already.
func (n *NodeReport) NoSFTPWarning() string {
	if n.NoSFTP == nil {
		return ""
	}
	if _, refused := errors.AsType[noPersistError](n.Err); refused {
		return ""
	}
	return n.NoSFTP.Without(noSFTPCost)
}

// noPersistError refuses --persist on a node without an SFTP server.
type noPersistError struct{ none *host.NoSFTPError }

func (e noPersistError) Error() string {
	return "--persist writes the routes file and boot unit over SFTP, and the node has no SFTP server (" + e.none.Why + "); " + e.none.Fix
}

func (e noPersistError) Unwrap() error { return e.none }
