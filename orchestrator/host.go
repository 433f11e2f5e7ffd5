package orchestrator

import (
	"context"
	"net/netip"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// Host is one node's routing table, reached somehow (package remote does it
// over SSH). Errors should name the host.
type Host interface {
	// ReadRoutes reads, for each family, the main table and the plan's own
	// table when --table names another.
	ReadRoutes(ctx context.Context, fams []route.Family) (route.Table, error)
	// Apply feeds a batch to `ip -batch -`, then reads the tables as
	// ReadRoutes does: one round trip, not two, for apply and verify (and
	// for rollback and its check). applyErr is the batch's failure; with
	// force, ip carries on past failing lines (used to roll back, where
	// some lines may not apply). err is a failure to read the tables
	// afterwards.
	//
	// With expect, the tables are read again in the same session right
	// before the batch, which goes only if their digest is expect; if not,
	// err is a *route.ChangedError holding them, and nothing was sent.
	Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (table route.Table, applyErr, err error)
	// SessionSource is the address the node sees routepush's session
	// come from, as far as routepush knows it (the jump host's with one);
	// invalid if unknown. A batch never touches the route back to it.
	SessionSource() netip.Addr
	Close() error
	Journal
	Persister
}

// Connector opens a Host for a node.
type Connector func(ctx context.Context, n *inventory.Node) (Host, error)
