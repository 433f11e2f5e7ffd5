package orchestrator

import (
	"context"
	"net/netip"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// Host is one node's routing table, reached somehow (package remote does it
// over SSH; tests use fakes). Every error names the node. The errors the
// run decides on are the types of package host, found with errors.As:
//
//   - *host.UnreachableError from a Connector: no connection at all; the
//     node may be left out under --max-unreachable.
//   - *host.LockedError from Lock: another run holds the node; the run
//     waits (--wait-lock), then names the holder.
//   - *host.NotSentError from Apply: nothing of the batch was sent; the
//     node is as it was, nothing to undo.
//   - *host.ChangedError from Apply with expect: the tables changed since
//     they were read; nothing was sent, the node is refused.
//   - *host.LostError from Apply: the connection went mid-batch; whether
//     the batch is in is unknown until the node is reached again.
//   - *host.NoSFTPError from any Journal or Persister call: the node has
//     no SFTP server; the run goes on there without lock and record, and
//     refuses --persist (nosftp.go).
//
// Any other error fails the node.
type Host interface {
	// ReadRoutes reads, for each family, the main table and the plan's own
	// table when --table names another.
	ReadRoutes(ctx context.Context, fams []route.Family) (route.Table, error)
	// Apply feeds a batch to `ip -batch -`, then reads the tables as
	// ReadRoutes does: one round trip, not two, for apply and verify (and
	// for rollback and its check). The result holds the tables read after
	// the batch and ip's refusal of a line, if any (with force, ip carries
	// on past failing lines: used to roll back, where some lines may not
	// apply). err is anything else: the batch not sent, the tables not
	// read afterwards, the connection lost.
	//
	// With expect, the tables are read again in the same session right
	// before the batch, which goes only if their digest is expect; if not,
	// err is a *host.ChangedError holding them, and nothing was sent.
	Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error)
	// SessionSource is the address the node sees routepush's session
	// come from, as far as routepush knows it (the jump host's with one);
	// invalid if unknown. A batch never touches the route back to it.
	SessionSource() netip.Addr
	// Unlocked says whether the last ReadRoutes found no routepush lock
	// on the node, having looked: false if there was one, or the read
	// could not look. A run locks a node it leaves as it is only if not.
	Unlocked() bool
	// Probe sends count ICMP echo requests from src, an address of the
	// node, to each of dsts at once, and says what came back for each,
	// in dsts' order; bounded in time whatever the node does. err is a
	// probe that could not run at all.
	Probe(ctx context.Context, src netip.Addr, dsts []netip.Addr, count int) ([]host.ProbeResult, error)
	Close() error
	Journal
	Persister
}

// Connector opens a Host for a node.
type Connector func(ctx context.Context, n *inventory.Node) (Host, error)
