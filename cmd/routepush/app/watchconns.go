package app

import (
	"log/slog"
	"time"

	"github.com/routepush/routepush/remote"
)

// watchKeptConnections is how many node connections a watcher keeps open
// between rounds, each with its SFTP session. A round of one route per
// node was mostly logins (the key exchange, the public key login, the
// node's sshd forking and re-executing itself) and sftp-server starts:
// kept, a node's next round starts one ip and nothing else (at 200 nodes
// a join went from 10.3-11.7 s to 4.0-4.9 s on the lab, bench/RESULTS.md).
// At rest each costs the watcher about 20 kB and seven goroutines (200
// kept took an idle watcher from 50 to 54 MB on the lab), and its node an
// sshd process and an sftp-server; past this many nodes the rest connect
// each round, as apply does.
const watchKeptConnections = 1000

// watchKeptMaxAge is how long a node's connection is kept at most.
const watchKeptMaxAge = 30 * time.Minute

// newWatchDialer is the watcher's Dialer: apply's, and it keeps the nodes'
// connections between rounds. A kept connection is closed when it has
// not been used for a resync and a minute (every node is dialed at least
// once a resync: one unused that long is a node that left), when its
// keepalives go unanswered, and when the watcher stops.
func newWatchDialer(f *watchFlags, log *slog.Logger) (*remote.Dialer, error) {
	cfg, err := dialerConfig(&f.reach, &f.table, log, false, watchPlannedRoutes)
	if err != nil {
		return nil, err
	}
	cfg.KeepConnections = watchKeptConnections
	cfg.KeepIdle = f.resync + time.Minute
	// A login every half hour at least: a revoked key, sshd's settings
	// and what a node's name resolves to take effect within it.
	cfg.KeepMaxAge = watchKeptMaxAge
	return remote.NewDialer(cfg)
}
