// Package remote is routepush's only way onto a node: it opens one SSH
// connection per node (golang.org/x/crypto/ssh, keys from ssh-agent or
// identity files, host keys checked against known_hosts), runs iproute2's
// `ip` there to read the routing table and to apply batches, and keeps the
// node's lock and run records (and --persist's routes file) over SFTP
// (github.com/pkg/sftp).
//
// What it is not: it decides nothing about routes. The commands it runs are
// fixed strings; route changes travel on stdin to `ip -batch -`, rendered by
// package route from parsed values, so no inventory or API data is ever
// spliced into a remote shell command. The one thing a node or the
// inventory may add to a command line is a path (an iproute2 `ip` found
// past a BusyBox one, an sftp-server for become, the boot unit's `ip`),
// only once internal/nodepath has checked it; finding them costs a node
// one session, and only when the defaults fail or --persist asks
// (discover.go).
//
// It is where routepush meets nodes that may be broken, silent or hostile,
// so everything it takes from a node is bounded: what it reads, by limits
// sized from the plan (limits.go); how long it waits, by the command
// timeout on every call that blocks on the node (bounded.go) and by
// keepalives on every connection (keepalive.go).
package remote
