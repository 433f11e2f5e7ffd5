// Package remote is routepush's only way onto a node: it opens one SSH
// connection per node (golang.org/x/crypto/ssh, keys from ssh-agent or
// identity files, host keys checked against known_hosts) and runs iproute2's
// `ip` there to read the routing table and to apply batches.
//
// What it is not: it decides nothing about routes. The commands it runs are
// fixed strings; route changes travel on stdin to `ip -batch -`, rendered by
// package route from parsed values, so no inventory or API data is ever
// spliced into a remote shell command.
package remote
